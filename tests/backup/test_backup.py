"""Backup and restore, run as an operator runs them: a round trip brings back every row of every table,
a target holding rows is replaced only with --force, old backups need --allow-unverified, an older schema
is upgraded on the way in. On SQLite and MariaDB."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from crm_admin.backup import BackupError, backup, code_revisions, restore, verify
from crm_admin.backup.mysql import MANIFEST_PREFIX, RowCounter
from crm_admin.core.audit import seal_pending, verify_chain
from tests.backup.conftest import leftovers, snapshot
from tests.cli.runner import cli_env, run_cli
from tests.conftest import IS_MYSQL, TEST_DB_URL

SUFFIX = ".sql" if IS_MYSQL else ".sqlite3"


def _on(url: str) -> dict[str, str]:
    return cli_env(CRM_DATABASE_URL=url)


@pytest.mark.cli_command("backup")
@pytest.mark.cli_command("restore")
@pytest.mark.usefixtures("demo_data")
def test_round_trip_restores_every_row(engine: Engine, tmp_path: Path,
                                       make_database: Callable[[str], str]) -> None:
    # One demo load serves the whole story (it is the slow part): backup → verify → restore into an
    # empty database → identical; then a refused and a forced restore over changed data.
    target = make_database("target")
    with engine.connect() as conn:
        seal_pending(conn)  # as the sealing job does within seconds: the restored chain is checked whole
    before = snapshot(engine)
    assert len(before["customer"]) == 60 and before["audit_log"]
    file = tmp_path / f"crm{SUFFIX}"
    made = run_cli("backup", "-o", str(file))
    assert made.exit_code == 0, made.output
    assert "备份完成并已校验" in made.output and f"{len(before)} 张表" in made.output
    assert file.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.partial*"))

    checked = run_cli("backup", "--verify", str(file))
    assert checked.exit_code == 0, checked.output
    head, _ = code_revisions()
    assert "备份文件完整" in checked.output and f"数据库版本:{head}" in checked.output
    assert re.search(r"customer\s+60\n", checked.output)
    assert f"{len(before)} 张表,共 {sum(map(len, before.values())):,} 行" in checked.output

    restored = run_cli("restore", str(file), env=_on(target))
    assert restored.exit_code == 0, restored.output
    assert "已从" in restored.output and not leftovers(target)
    engine_after = create_engine(target)
    try:
        after = snapshot(engine_after)
        assert sorted(after) == sorted(before)
        for name in before:
            assert after[name] == before[name], f"table {name} differs"
        with engine_after.connect() as conn:
            chain = verify_chain(conn)
        assert chain.intact and chain.checked == len(before["audit_log"]) == chain.head_seq
        assert chain.unsealed == 0

        # The target now holds rows: refused without --force, and nothing is changed.
        with engine_after.begin() as conn:
            conn.execute(text("UPDATE customer SET name = '被改动的名称'"))
            conn.execute(text("CREATE TABLE stray_table (id INTEGER PRIMARY KEY)"))
        changed = snapshot(engine_after)
        gz = tmp_path / f"crm{SUFFIX}.gz"
        assert run_cli("backup", "-o", str(gz)).exit_code == 0  # the compressed variant
        refused = run_cli("restore", str(gz), env=_on(target))
        assert refused.exit_code == 1 and "--force" in refused.output
        assert snapshot(engine_after) == changed
        engine_after.dispose()
        forced = run_cli("restore", str(gz), "--force", env=_on(target))
        assert forced.exit_code == 0, forced.output
        assert snapshot(engine_after) == before  # identical again, the stray table gone too
        assert not leftovers(target)
    finally:
        engine_after.dispose()


def test_restore_rejects_wrong_or_missing_files(tmp_path: Path, make_database: Callable[[str], str]) -> None:
    target = make_database("target")
    junk = tmp_path / "junk.sql"
    junk.write_text("hello", encoding="utf-8")
    with pytest.raises(BackupError, match="无法识别"):
        restore(target, junk)
    with pytest.raises(BackupError, match="不存在"):
        restore(target, tmp_path / "missing.sql")
    wrong = tmp_path / "wrong"
    if IS_MYSQL:
        wrong.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
        with pytest.raises(BackupError, match="SQLite 备份"):
            restore(target, wrong)
    else:
        wrong.write_text("-- MariaDB dump 10.19\nCREATE TABLE x (id int);\n", encoding="utf-8")
        with pytest.raises(BackupError, match="不是 SQLite"):
            restore(target, wrong)
    assert not leftovers(target)


@pytest.mark.cli_command("backup")
def test_backup_to_the_default_folder_prunes_old_ones(engine: Engine, tmp_path: Path) -> None:
    import os
    import time

    folder = tmp_path / "backups"
    folder.mkdir()
    old = folder / f"crm-20000101-020000{SUFFIX}"
    old.write_bytes(b"old")
    bad = folder / f"crm-20000101-030000{SUFFIX}.gz.bad"
    bad.write_bytes(b"bad")
    other = folder / "notes.txt"
    other.write_text("不是备份", encoding="utf-8")
    long_ago = time.time() - 30 * 86400
    for path in (old, bad, other):
        os.utime(path, (long_ago, long_ago))
    result = run_cli("backup", env=cli_env(CRM_BACKUP_DIR=str(folder), CRM_BACKUP_KEEP_DAYS="7"))
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in folder.glob(f"crm-*{SUFFIX}"))
    assert len(made) == 1 and made[0] != old.name
    assert not old.exists() and not bad.exists() and other.exists()
    assert verify(folder / made[0]).manifest is not None


@pytest.mark.cli_command("restore")
def test_an_older_schema_is_upgraded_in_staging(tmp_path: Path, make_database: Callable[[str], str]) -> None:
    """A backup from the previous release restores, and the target ends on this release's schema."""
    from crm_admin.migrate import ensure_database, upgrade

    head, known = code_revisions()
    previous = known[1]
    source_url = make_database("old")
    ensure_database(source_url)
    source = create_engine(source_url)
    try:
        upgrade(source, previous)
    finally:
        source.dispose()
    file = tmp_path / f"old{SUFFIX}"
    assert backup(source_url, file).revision == previous

    checked = run_cli("backup", "--verify", str(file))
    assert checked.exit_code == 0, checked.output
    assert f"比当前程序的 {head} 旧" in checked.output

    target = make_database("target")
    result = run_cli("restore", str(file), env=_on(target))
    assert result.exit_code == 0, result.output
    assert f"升级到 {head}" in result.output
    with create_engine(target).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    assert not leftovers(target)


@pytest.mark.cli_command("restore")
@pytest.mark.usefixtures("demo_data")
def test_a_backup_without_manifest_needs_allow_unverified(engine: Engine, tmp_path: Path,
                                                         make_database: Callable[[str], str]) -> None:
    """Backups made before manifests existed: refused by default, restored (through staging) on request;
    a cut one is refused even then."""
    before = snapshot(engine)
    old = tmp_path / f"old{SUFFIX}"
    if IS_MYSQL:
        backup(TEST_DB_URL, tmp_path / "new.sql")
        body = _body(tmp_path / "new.sql")
        old.write_bytes(body)
        cut = tmp_path / "old-cut.sql"
        cut.write_bytes(body[: len(body) // 2])
    else:
        source = sqlite3.connect(str(TEST_DB_URL.removeprefix("sqlite:///")))
        copy = sqlite3.connect(old)
        source.backup(copy)
        copy.close()
        source.close()
        cut = tmp_path / "old-cut.sqlite3"
        cut.write_bytes(old.read_bytes()[:8192])

    target = make_database("target")
    refused = run_cli("restore", str(old), env=_on(target))
    assert refused.exit_code == 1 and "没有校验清单" in refused.output and "--allow-unverified" in refused.output
    still_cut = run_cli("restore", str(cut), "--allow-unverified", env=_on(target))
    assert still_cut.exit_code == 1 and "不完整" in still_cut.output
    allowed = run_cli("restore", str(old), "--allow-unverified", env=_on(target))
    assert allowed.exit_code == 0, allowed.output
    assert "旧备份" in allowed.output
    assert snapshot(target) == before
    assert not leftovers(target)


def _body(dump: Path) -> bytes:
    data = dump.read_bytes()
    return data[: data.index(MANIFEST_PREFIX)]


def test_row_counter_reads_both_insert_layouts() -> None:
    """One INSERT per table on a line (older dumps) or one row per line (MariaDB 10.11): same counts,
    whatever the strings hold."""
    one_line = (b"INSERT INTO `customer` VALUES (1,'a),(b','x\\'),(y'),(2,'\\\\',NULL),(3,'(',0x28);",)
    per_row = (b"INSERT INTO `customer` VALUES", b"(1,'a),(b','x\\'),(y'),", b"(2,'\\\\',NULL),",
               b"(3,'(;',0x28);")
    for lines, revision in ((one_line, b"INSERT INTO `alembic_version` VALUES ('0007');"),
                            (per_row, b"INSERT INTO `alembic_version` VALUES\n('0007');")):
        counter = RowCounter()
        counter.feed(b"CREATE TABLE `customer` (")
        counter.feed(b"CREATE TABLE `empty_one` (")
        for line in lines:
            counter.feed(line)
        for line in revision.split(b"\n"):
            counter.feed(line)
        assert counter.tables == {"customer": 3, "empty_one": 0, "alembic_version": 1}
        assert counter.revision == "0007"


def test_manifest_is_json_a_person_can_read(engine: Engine, tmp_path: Path) -> None:
    file = backup(TEST_DB_URL, tmp_path / f"crm{SUFFIX}")
    if IS_MYSQL:
        data = (tmp_path / "crm.sql").read_bytes()
        line = data[data.index(MANIFEST_PREFIX) + len(MANIFEST_PREFIX):].split(b"\n", 1)[0]
        manifest = json.loads(line)
    else:
        conn = sqlite3.connect(tmp_path / "crm.sqlite3")
        manifest = json.loads(conn.execute("SELECT value FROM crm_backup_manifest WHERE name = 'manifest'")
                              .fetchone()[0])
        conn.close()
    assert manifest["revision"] == code_revisions()[0] == file.revision
    assert manifest["tables"]["sys_user"] == 1 and manifest["kind"] == ("mysql" if IS_MYSQL else "sqlite")


def test_backup_file_names_carry_the_companys_time() -> None:
    """23:30 UTC is 07:30 the next morning in Beijing: the name says what the operator's clock said."""
    import datetime as dt

    from crm_admin.backup import default_backup_name

    late = dt.datetime(2026, 12, 2, 23, 30, tzinfo=dt.UTC)
    assert default_backup_name("sqlite:///x.sqlite3", late) == "crm-20261203-073000.sqlite3"
    assert default_backup_name("mysql+pymysql://u@h/db", late) == "crm-20261203-073000.sql"
