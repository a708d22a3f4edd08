"""A backup that is not whole is refused before anything is touched, and says why.

The holes this closes (issue 11): on MariaDB ``crm-admin restore half-of-a-dump.sql --force`` dropped
every table and then failed part-way, leaving 2 of 25 tables; a dump cut between two statements
restored "successfully" with 17 tables missing; a truncated ``.gz`` printed only ``Aborted!``.

Each broken file is checked with ``crm-admin backup --verify`` and then restored with ``--force`` over a
target holding other data, both as subprocesses; the target's per-table checksums must not move and no
staging copy may be left behind. Runs on SQLite and on MariaDB.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from crm_admin import db
from crm_admin.backup import backup, code_revisions, restore
from crm_admin.backup.manifest import Manifest
from crm_admin.backup.mysql import MANIFEST_PREFIX, trailer
from crm_admin.backup.sqlite import DIGEST_MARK, MANIFEST_TABLE, seal
from crm_admin.core.context import SYSTEM, acting_as
from tests.backup.conftest import checksums, database_url, drop_database_family, leftovers
from tests.cli.runner import cli_env, run_cli
from tests.conftest import IS_MYSQL, TEST_DB_URL, _reset
from tests.demo_data import DEMO_PASSWORD, detach_departments

SUFFIX = ".sql" if IS_MYSQL else ".sqlite3"
FUTURE = "9999"


@dataclass(frozen=True)
class Backups:
    folder: Path
    good: Path
    good_gz: Path
    future: Path  # whole, but from a schema revision this program does not know


@dataclass(frozen=True)
class Target:
    url: str
    checksums: dict[str, tuple[int, str]]


@pytest.fixture(scope="module")
def backups(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backups]:
    from crm_admin.demo import load_demo

    folder = tmp_path_factory.mktemp("backups")
    with acting_as(SYSTEM), db.transaction() as session:
        load_demo(session, password=DEMO_PASSWORD, seed=7)
    try:
        good, good_gz, future = folder / f"good{SUFFIX}", folder / f"good{SUFFIX}.gz", folder / f"future{SUFFIX}"
        backup(TEST_DB_URL, good)
        backup(TEST_DB_URL, good_gz)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE alembic_version SET version_num = '{FUTURE}'"))
        try:
            backup(TEST_DB_URL, future)
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"UPDATE alembic_version SET version_num = '{code_revisions()[0]}'"))
    finally:
        detach_departments(engine)
        _reset(engine)
    yield Backups(folder, good, good_gz, future)


@pytest.fixture(scope="module")
def target(backups: Backups, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A database holding rows that differ from the backup's: any partial restore would show."""
    url = database_url("target", tmp_path_factory.mktemp("target"))
    restore(url, backups.good)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE customer SET name = '恢复之后改过的名称' WHERE id = (SELECT MIN(id) FROM "
                              "(SELECT id FROM customer) AS c)"))
            conn.execute(text("DELETE FROM follow_up"))
    finally:
        engine.dispose()
    yield Target(url, checksums(url))
    if IS_MYSQL:
        drop_database_family(url.rsplit("/", 1)[1].split("?")[0])


def _flip(data: bytes, *positions: int) -> bytes:
    changed = bytearray(data)
    for position in positions:
        changed[position] ^= 0x20
    return bytes(changed)


def broken_file(fault: str, backups: Backups) -> tuple[Path, str]:
    """The broken file for ``fault`` and a phrase the message must contain."""
    data = backups.good.read_bytes()
    path = backups.folder / f"{fault}{SUFFIX}"
    if fault == "truncated":
        kept = data[: len(data) // 2]
        expected = f"在第 {kept.count(b'\n'):,} 行后被截断" if IS_MYSQL else f"只有 {len(kept):,} 字节"
    elif fault == "cut_between_statements":
        if IS_MYSQL:
            # a clean cut before a table's statements: the part kept is valid SQL that runs without error
            kept = data[: data.index(b"--\n-- Table structure for table `customer`")]
            expected = f"在第 {kept.count(b'\n'):,} 行后被截断"
        else:
            # SQLite's counterpart: a cut on a page boundary, every page kept intact
            page_size = int.from_bytes(data[16:18], "big")
            kept = data[: page_size * (len(data) // page_size // 3)]
            expected = f"只有 {len(kept):,} 字节"
    elif fault == "bytes_flipped":
        middle = len(data) // 2
        kept = _flip(data, middle, middle + 1, middle + 7)
        expected = "校验和不一致"
    elif fault == "wrong_revision":
        kept = backups.future.read_bytes()
        expected = f"备份来自数据库版本 {FUTURE},当前程序需要 {code_revisions()[0]}"
    elif fault == "empty":
        kept = b""
        expected = "备份文件是空的(0 字节)"
    elif fault == "gz_truncated":
        path = path.with_name(path.name + ".gz")
        gz = backups.good_gz.read_bytes()
        kept = gz[: len(gz) // 2]
        expected = "压缩文件在中途被截断"
    elif fault == "gz_bytes_flipped":
        path = path.with_name(path.name + ".gz")
        gz = backups.good_gz.read_bytes()
        kept = _flip(gz, len(gz) // 2)
        expected = "已损坏"
    else:
        raise AssertionError(fault)
    path.write_bytes(kept)
    return path, expected


FAULTS = ["truncated", "cut_between_statements", "bytes_flipped", "wrong_revision", "empty", "gz_truncated",
          "gz_bytes_flipped"]


@pytest.mark.cli_command("backup")
@pytest.mark.cli_command("restore")
@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_backup_is_refused_and_the_target_is_unchanged(fault: str, backups: Backups,
                                                                target: Target) -> None:
    path, expected = broken_file(fault, backups)

    checked = run_cli("backup", "--verify", str(path))
    assert checked.exit_code == 1, checked.output
    assert "备份文件校验失败" in checked.output and expected in checked.output

    result = run_cli("restore", str(path), "--force", env=cli_env(CRM_DATABASE_URL=target.url))
    assert result.exit_code == 1, result.output
    assert "恢复失败" in result.output and expected in result.output
    assert "已从" not in result.output
    assert checksums(target.url) == target.checksums
    assert not leftovers(target.url)


@pytest.mark.cli_command("restore")
def test_staging_that_differs_from_the_manifest_is_never_swapped_in(backups: Backups, target: Target) -> None:
    """A whole, correctly sealed file whose content does not load to the rows its manifest promises
    (the last line of defence, after the checksum): checked in staging, refused, target untouched."""
    path = backups.folder / f"miscounted{SUFFIX}"
    path.write_bytes(backups.good.read_bytes())
    if IS_MYSQL:
        data = path.read_bytes()
        start = data.index(MANIFEST_PREFIX)
        manifest = json.loads(data[start + len(MANIFEST_PREFIX):].split(b"\n", 1)[0])
        manifest["tables"]["customer"] += 1
        promised = Manifest.from_json(json.dumps(manifest))
        path.write_bytes(data[:start] + trailer(promised))
    else:
        conn = sqlite3.connect(path)
        manifest = json.loads(conn.execute(f"SELECT value FROM {MANIFEST_TABLE} WHERE name = 'manifest'")
                              .fetchone()[0])
        manifest["tables"]["customer"] += 1
        conn.execute(f"UPDATE {MANIFEST_TABLE} SET value = ? WHERE name = 'manifest'", (json.dumps(manifest),))
        conn.execute(f"UPDATE {MANIFEST_TABLE} SET value = ? WHERE name = 'sha256'",
                     ((DIGEST_MARK + b"0" * 64).decode(),))
        conn.commit()
        conn.close()
        seal(path)
    assert run_cli("backup", "--verify", str(path)).exit_code == 0  # sealed: the file itself is whole

    result = run_cli("restore", str(path), "--force", env=cli_env(CRM_DATABASE_URL=target.url))
    assert result.exit_code == 1, result.output
    count = manifest["tables"]["customer"]
    assert f"导入后表 customer 有 {count - 1:,} 行,备份清单记录的是 {count:,} 行" in result.output
    assert "目标数据库没有改动" in result.output
    assert checksums(target.url) == target.checksums
    assert not leftovers(target.url)
