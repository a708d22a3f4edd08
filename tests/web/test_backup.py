"""Backup and restore: a round trip brings back every row of every table, on SQLite and MariaDB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, inspect, select, table, text
from sqlalchemy.engine import make_url

from crm_admin.backup import BackupError, backup, restore
from crm_admin.core.audit import verify_chain
from tests.conftest import IS_MYSQL, TEST_DB_URL
from tests.web.demo_fixtures import demo_data  # noqa: F401  (fixture)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    insp = inspect(engine)
    result: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name in sorted(insp.get_table_names()):
            pk = insp.get_pk_constraint(name)["constrained_columns"]
            cols = [c["name"] for c in insp.get_columns(name)]
            order = [text(f'"{c}"' if not IS_MYSQL else f"`{c}`") for c in (pk or cols)]
            rows = conn.execute(select(table(name, *[_col(c) for c in cols])).order_by(*order)).all()
            result[name] = [tuple(r) for r in rows]
    return result


def _col(name: str) -> Any:
    from sqlalchemy import column

    return column(name)


@pytest.fixture
def other_db_url(tmp_path: Path) -> Iterator[str]:
    """An empty database beside the test database (same server for MariaDB)."""
    if not IS_MYSQL:
        yield f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        return
    url = make_url(TEST_DB_URL)
    name = f"{url.database}_restore"
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    server = create_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    yield url.set(database=name).render_as_string(hide_password=False)
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


@pytest.mark.usefixtures("demo_data")
def test_round_trip_restores_every_row(engine: Engine, tmp_path: Path, other_db_url: str) -> None:
    # One demo load serves the whole story (it is the slow part): plain backup → restore into an
    # empty database → identical; then a refused and a forced restore over changed data.
    before = snapshot(engine)
    assert len(before["customer"]) == 60 and before["audit_log"]
    file = backup(TEST_DB_URL, tmp_path / ("crm.sql" if IS_MYSQL else "crm.sqlite3"))
    assert file.stat().st_mode & 0o777 == 0o600
    assert not file.with_name(file.name + ".partial").exists()

    restore(other_db_url, file)
    restored = create_engine(other_db_url)
    try:
        after = snapshot(restored)
        assert sorted(after) == sorted(before)
        for name in before:
            assert after[name] == before[name], f"table {name} differs"
        with restored.connect() as conn:
            checked, broken = verify_chain(conn)
        assert broken is None and checked == len(before["audit_log"])

        # The target now holds rows: refused without --force, and nothing is changed.
        with restored.begin() as conn:
            conn.execute(text("UPDATE customer SET name = '被改动的名称'"))
            conn.execute(text("CREATE TABLE stray_table (id INTEGER PRIMARY KEY)"))
        gz = backup(TEST_DB_URL, tmp_path / "crm.bak.gz")  # the compressed variant
        with pytest.raises(BackupError, match="--force"):
            restore(other_db_url, gz)
        with restored.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM customer WHERE name = '被改动的名称'")).scalar() == 60
        restored.dispose()
        restore(other_db_url, gz, force=True)
        assert snapshot(restored) == before  # identical again, the stray table gone too
    finally:
        restored.dispose()


def test_restore_rejects_wrong_or_broken_files(tmp_path: Path, other_db_url: str) -> None:
    junk = tmp_path / "junk.sql"
    junk.write_text("hello", encoding="utf-8")
    with pytest.raises(BackupError, match="无法识别"):
        restore(other_db_url, junk)
    with pytest.raises(BackupError, match="不存在"):
        restore(other_db_url, tmp_path / "missing.sql")
    wrong = tmp_path / "wrong"
    if IS_MYSQL:
        wrong.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
        with pytest.raises(BackupError, match="SQLite 备份"):
            restore(other_db_url, wrong)
    else:
        wrong.write_text("-- MariaDB dump 10.19\nCREATE TABLE x (id int);\n", encoding="utf-8")
        with pytest.raises(BackupError, match="不是 SQLite"):
            restore(other_db_url, wrong)
        broken = tmp_path / "broken.sqlite3"
        broken.write_bytes(b"SQLite format 3\x00" + b"\x01" * 2000)
        with pytest.raises(BackupError, match="损坏"):
            restore(other_db_url, broken)


def test_cli_backup_and_restore(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.cli import main
    from crm_admin.settings import get_settings

    runner = CliRunner()
    out = tmp_path / "cli-backup.sql"
    result = runner.invoke(main, ["backup", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "备份完成" in result.output and out.exists()
    result = runner.invoke(main, ["restore", str(out)])
    assert result.exit_code == 1
    assert "--force" in result.output and "Traceback" not in result.output

    # Default location: the backup folder, with old backups of this tool pruned.
    monkeypatch.setenv("CRM_BACKUP_DIR", str(tmp_path / "backups"))
    get_settings.cache_clear()
    try:
        result = runner.invoke(main, ["backup"])
        assert result.exit_code == 0, result.output
        made = list((tmp_path / "backups").glob("crm-*"))
        assert len(made) == 1
    finally:
        monkeypatch.delenv("CRM_BACKUP_DIR")
        get_settings.cache_clear()
