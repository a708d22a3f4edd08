"""Whole-database backup to one file and restore from it.

- MariaDB/MySQL: ``mariadb-dump`` (or ``mysqldump``) with ``--single-transaction``: a consistent
  snapshot without locking the tables; restored with the ``mariadb`` (or ``mysql``) client.
- SQLite: the online backup API (consistent even while the app writes); restored page by page.

A file whose name ends in ``.gz`` is gzip-compressed. Restore refuses a database that holds rows
unless ``force`` is given, and then replaces it completely (tables missing from the backup are dropped),
so the result is identical to the database at the time of the backup.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, create_engine, func, inspect, select, table, text
from sqlalchemy.engine import URL, make_url

from crm_admin.core.errors import UserError

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class BackupError(UserError):
    """The backup or restore could not be done; the message says why (in Chinese)."""


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("内存中的 SQLite 数据库无法备份或恢复。")
    return Path(url.database)


def default_backup_name(url: str | URL, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    suffix = ".sqlite3" if _is_sqlite(make_url(url)) else ".sql"
    return f"crm-{stamp}{suffix}"


def prune_backups(folder: Path, keep_days: int, now: dt.datetime | None = None) -> list[Path]:
    """Remove this tool's own backups (``crm-*``) older than ``keep_days``; other files are left alone."""
    cutoff = (now or dt.datetime.now()).timestamp() - keep_days * 86400
    removed: list[Path] = []
    for path in folder.glob("crm-*"):
        if path.is_file() and path.suffix in {".sqlite3", ".sql", ".gz"} and path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    return removed


# --- backup -----------------------------------------------------------------------------------------

def backup(url: str | URL, output: Path) -> Path:
    """Write a consistent backup of the database at ``url`` to ``output`` (one file)."""
    parsed = make_url(url)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed at the end: a crash never leaves a file that looks complete.
    partial = output.with_name(output.name + ".partial")
    try:
        if _is_sqlite(parsed):
            _backup_sqlite(_sqlite_path(parsed), partial, compress=output.suffix == ".gz")
        elif parsed.get_backend_name() in ("mysql", "mariadb"):
            _backup_mysql(parsed, partial, compress=output.suffix == ".gz")
        else:
            raise BackupError(f"不支持备份此类数据库:{parsed.get_backend_name()}")
        os.chmod(partial, 0o600)  # a backup holds every password hash and customer record
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def _backup_sqlite(source: Path, target: Path, *, compress: bool) -> None:
    if not source.exists():
        raise BackupError(f"数据库文件不存在:{source}")
    plain = target.with_name(target.name + ".db") if compress else target
    plain.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(plain)
    try:
        src.backup(dst)
        # One self-contained file: no -wal/-shm companions needed to read it.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    if compress:
        with plain.open("rb") as fin, gzip.open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
        plain.unlink()


def _client(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupError(
        f"找不到 MariaDB/MySQL 客户端程序({' 或 '.join(names)})。"
        "请先安装,例如 Debian/Ubuntu:apt install mariadb-client"
    )


@contextmanager
def _defaults_file(url: URL) -> Iterator[str]:
    """Credentials go through an owner-only options file, never the command line (visible in ps)."""
    lines = ["[client]"]
    if url.username:
        lines.append(f"user={url.username}")
    if url.password:
        escaped = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'password="{escaped}"')
    if url.host:
        lines.append(f"host={url.host}")
    if url.port:
        lines.append(f"port={url.port}")
    socket = url.query.get("unix_socket")
    if socket:
        lines.append(f"socket={socket if isinstance(socket, str) else socket[0]}")
    lines.append("default-character-set=utf8mb4")
    fd, path = tempfile.mkstemp(prefix="crm-my-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def _run(argv: list[str], *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
         what: str) -> None:
    proc = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BackupError(f"{what} 报错:{detail[-1] if detail else f'退出码 {proc.returncode}'}")


def _backup_mysql(url: URL, target: Path, *, compress: bool) -> None:
    if not url.database:
        raise BackupError("数据库地址中没有数据库名。")
    dump = _client("mariadb-dump", "mysqldump")
    with _defaults_file(url) as cnf:
        argv = [
            dump, f"--defaults-extra-file={cnf}",
            "--single-transaction", "--quick", "--hex-blob", "--routines", "--events", "--triggers",
            "--no-tablespaces", "--skip-dump-date", "--add-drop-table", url.database,
        ]
        if compress:
            with gzip.open(target, "wb") as fout:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                assert proc.stdout is not None
                shutil.copyfileobj(proc.stdout, fout, _CHUNK)
                _, err = proc.communicate()
            if proc.returncode != 0:
                lines = err.decode("utf-8", "replace").strip().splitlines()
                raise BackupError(f"{Path(dump).name} 报错:{lines[-1] if lines else proc.returncode}")
        else:
            with target.open("wb") as fout:
                _run(argv, stdout=fout, what=Path(dump).name)


# --- restore ----------------------------------------------------------------------------------------

def database_has_rows(engine: Engine) -> bool:
    """True if any table (other than Alembic's bookkeeping) holds a row."""
    names = [n for n in inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.connect() as conn:
        for name in names:
            if conn.execute(select(func.count()).select_from(table(name))).scalar():
                return True
    return False


def _kind_of(path: Path) -> tuple[str, bool]:
    """("sqlite" | "sql" | "unknown", compressed?) judged by content, not by name."""
    with path.open("rb") as fh:
        head = fh.read(512)
    compressed = head[:2] == GZIP_MAGIC
    if compressed:
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
        except (OSError, EOFError):
            return "unknown", True
    if head[:16] == SQLITE_MAGIC:
        return "sqlite", compressed
    if b"dump" in head.lower():  # "-- MariaDB dump 10.19 ..." / "-- MySQL dump ..."
        return "sql", compressed
    return "unknown", compressed


def restore(url: str | URL, source: Path, *, force: bool = False) -> None:
    """Replace the database at ``url`` with the backup in ``source``."""
    parsed = make_url(url)
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"备份文件不存在:{source}")
    kind, compressed = _kind_of(source)
    if kind == "unknown":
        raise BackupError("无法识别的备份文件:既不是 SQLite 备份,也不是 mariadb-dump/mysqldump 导出的 SQL。")
    if _is_sqlite(parsed):
        if kind != "sqlite":
            raise BackupError("这不是 SQLite 备份文件,无法恢复到 SQLite 数据库。")
    elif parsed.get_backend_name() in ("mysql", "mariadb"):
        if kind != "sql":
            raise BackupError("这是 SQLite 备份文件,无法恢复到 MariaDB/MySQL 数据库。")
    else:
        raise BackupError(f"不支持恢复到此类数据库:{parsed.get_backend_name()}")

    engine = _target_engine(parsed)
    try:
        if database_has_rows(engine) and not force:
            raise BackupError("目标数据库中已有数据,拒绝覆盖。确认要用备份替换现有数据时,请加 --force。")
    finally:
        engine.dispose()
    if kind == "sqlite":
        _restore_sqlite(source, _sqlite_path(parsed), compressed=compressed)
    else:
        _restore_mysql(parsed, source, compressed=compressed)


def _target_engine(url: URL) -> Engine:
    if _is_sqlite(url):
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url)
    if not url.database:
        raise BackupError("数据库地址中没有数据库名。")
    server = create_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(text(
                f"CREATE DATABASE IF NOT EXISTS `{url.database}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            ))
    finally:
        server.dispose()
    return create_engine(url)


def _check_sqlite_file(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"备份文件已损坏:{exc}") from None
    finally:
        conn.close()
    if not ok or ok[0] != "ok":
        raise BackupError("备份文件已损坏(完整性检查未通过)。")


def _restore_sqlite(source: Path, target: Path, *, compressed: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="crm-restore-") as tmp:
        plain = source
        if compressed:
            plain = Path(tmp) / "backup.sqlite3"
            with gzip.open(source, "rb") as fin, plain.open("wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
        _check_sqlite_file(plain)
        src = sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
        dst = sqlite3.connect(target, timeout=30)
        try:
            # The backup API replaces every page of the target: tables absent from the backup vanish too.
            src.backup(dst)
        finally:
            dst.close()
            src.close()


def _drop_all_tables(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for name in inspect(conn).get_table_names():
                conn.execute(text(f"DROP TABLE `{name}`"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    finally:
        engine.dispose()


def _restore_mysql(url: URL, source: Path, *, compressed: bool) -> None:
    assert url.database
    client = _client("mariadb", "mysql")
    with tempfile.TemporaryDirectory(prefix="crm-restore-") as tmp:
        plain = source
        if compressed:
            plain = Path(tmp) / "backup.sql"
            with gzip.open(source, "rb") as fin, plain.open("wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
        _drop_all_tables(url)
        with _defaults_file(url) as cnf, plain.open("rb") as fin:
            _run([client, f"--defaults-extra-file={cnf}", "--binary-mode", url.database],
                 stdin=fin, what=Path(client).name)
