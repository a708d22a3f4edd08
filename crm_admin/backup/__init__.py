"""Whole-database backup to one file that proves itself whole, and a restore that cannot make things worse.

A backup is one file (gzip-compressed when its name ends in ``.gz``) carrying a manifest: the schema
revision, every table with its row count, when it was made, and a SHA-256 over its content.

- MariaDB/MySQL: ``mariadb-dump --single-transaction`` (a consistent snapshot without locking), followed
  by the manifest as two SQL comment lines after mariadb-dump's own "-- Dump completed" line
  (``crm_admin.backup.mysql``).
- SQLite: a copy made with the online backup API, still a SQLite database, with the manifest in a table
  of its own and the checksum written into it in place (``crm_admin.backup.sqlite``).

``verify`` reads the whole file: a file cut anywhere (mid-statement or between two statements), a
flipped byte, a truncated ``.gz``, an empty file or a schema revision newer than this program's all fail
with a message that says which. ``backup`` writes beside the target and renames at the end, and
``make_verified_backup`` verifies what was written; a file that fails is renamed to ``*.bad``.

``restore`` verifies the file completely before touching anything, loads it into a staging copy (a
database ``<target>__restore_<random>`` on MariaDB, a file beside the target on SQLite), checks there that
every table and row count and the revision match the manifest, upgrades an older schema there, and only
then swaps it in (MariaDB: one multi-table ``RENAME TABLE``; SQLite: the backup API, one transaction).
On any failure the target is exactly as it was and the staging copy is removed. A target holding rows
is replaced only with ``force``. Backups made before manifests existed are refused unless
``allow_unverified`` is given; they still go through the staging copy.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL, make_url

from crm_admin.backup import mysql, sqlite
from crm_admin.backup.manifest import BackupError, BackupInfo, Manifest, code_revisions, kind_of
from crm_admin.core.formatting import local_now, to_local

__all__ = [
    "BackupError", "BackupInfo", "Manifest", "RestoreReport", "backup", "code_revisions", "default_backup_name",
    "make_verified_backup", "prune_backups", "quarantine", "restore", "verify",
]

_CHUNK = 1 << 20
_GZIP_LEVEL = 6  # gzip's own default: level 9 costs several times the CPU for a few per cent


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name in ("mysql", "mariadb"):
        return "mysql"
    raise BackupError(f"不支持此类数据库的备份与恢复:{name}")


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("内存中的 SQLite 数据库无法备份或恢复。")
    return Path(url.database)


def default_backup_name(url: str | URL, now: dt.datetime | None = None) -> str:
    # the company's clock: the file a person looks for says the time they know
    stamp = (to_local(now) if now else local_now()).strftime("%Y%m%d-%H%M%S")
    suffix = ".sqlite3" if _backend(make_url(url)) == "sqlite" else ".sql"
    return f"crm-{stamp}{suffix}"


def prune_backups(folder: Path, keep_days: int, now: dt.datetime | None = None) -> list[Path]:
    """Remove this tool's own backups (``crm-*``) older than ``keep_days``; other files are left alone."""
    cutoff = (now or dt.datetime.now()).timestamp() - keep_days * 86400
    removed: list[Path] = []
    for path in folder.glob("crm-*"):
        if (path.is_file() and path.suffix in {".sqlite3", ".sql", ".gz", ".bad", ".partial"}
                and path.stat().st_mtime < cutoff):
            path.unlink()
            removed.append(path)
    return removed


# --- backup -----------------------------------------------------------------------------------------

def backup(url: str | URL, output: Path) -> Manifest:
    """Write a consistent backup of the database at ``url`` to ``output`` (one file) and return its manifest."""
    parsed = make_url(url)
    output = Path(output)
    compress = output.suffix == ".gz"
    backend = _backend(parsed)
    output.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target and renamed at the end: a crash never leaves a file that looks complete
    partial = output.with_name(output.name + ".partial")
    plain = output.with_name(output.name + ".partial.db")
    partial.unlink(missing_ok=True)
    plain.unlink(missing_ok=True)
    try:
        if backend == "sqlite":
            manifest = sqlite.write_backup(_sqlite_path(parsed), plain if compress else partial)
            if compress:
                with plain.open("rb") as fin, _private(partial) as raw, \
                        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL) as fout:
                    while chunk := fin.read(_CHUNK):
                        fout.write(chunk)
        else:
            with _private(partial) as raw:
                if compress:
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL) as fout:
                        manifest = mysql.write_backup(parsed, fout)
                else:
                    manifest = mysql.write_backup(parsed, raw)
        partial.replace(output)
    except OSError as exc:
        raise BackupError(f"写入备份文件失败:{exc.strerror or exc}({output})") from None
    finally:
        partial.unlink(missing_ok=True)
        plain.unlink(missing_ok=True)
    return manifest


@contextmanager
def _private(path: Path) -> Iterator[IO[bytes]]:
    """A new file only its owner can read (a backup holds every password hash), on disk when closed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def verify(path: Path, *, allow_unverified: bool = False, check_schema: bool = True) -> BackupInfo:
    """Check that the backup file at ``path`` is whole; raises BackupError saying why not.

    ``check_schema`` also refuses a schema revision this program cannot restore (newer or unknown).
    """
    path = Path(path)
    kind, _ = kind_of(path)
    with _os_errors("校验备份文件"):
        if kind == "sqlite":
            return sqlite.verify(path, allow_unverified=allow_unverified, check_schema=check_schema)
        return mysql.verify(path, allow_unverified=allow_unverified, check_schema=check_schema)


@contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    """A full disk or a folder without write permission, said plainly (nothing was replaced)."""
    try:
        yield
    except OSError as exc:
        where = f"({exc.filename})" if exc.filename else ""
        raise BackupError(f"{doing}时出错:{exc.strerror or exc}{where}。目标数据库没有改动。") from None


def quarantine(path: Path) -> Path:
    """Rename a backup that failed verification to ``*.bad``: kept for a look, never taken for a backup."""
    bad = path.with_name(path.name + ".bad")
    path.replace(bad)
    return bad


def make_verified_backup(url: str | URL, output: Path) -> BackupInfo:
    """``backup`` then ``verify`` the file just written; a file that fails is quarantined."""
    output = Path(output)
    backup(url, output)
    try:
        # whole or not is the question here; a database ahead of this program still gets its backup
        return verify(output, check_schema=False)
    except BackupError as exc:
        bad = quarantine(output)
        raise BackupError(f"刚写出的备份文件没有通过校验,已改名为 {bad.name}:{exc.message}") from None


# --- restore ----------------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    info: BackupInfo
    notes: list[str] = field(default_factory=list)


def restore(url: str | URL, source: Path, *, force: bool = False, allow_unverified: bool = False,
            progress: Callable[[str], None] | None = None) -> RestoreReport:
    """Replace the database at ``url`` with the backup in ``source``; see the module docstring."""
    parsed = make_url(url)
    source = Path(source)
    say = progress or (lambda _message: None)
    backend = _backend(parsed)
    kind, _ = kind_of(source)
    if backend == "sqlite" and kind != "sqlite":
        raise BackupError("这不是 SQLite 备份文件,无法恢复到 SQLite 数据库。")
    if backend == "mysql" and kind != "mysql":
        raise BackupError("这是 SQLite 备份文件,无法恢复到 MariaDB/MySQL 数据库。")
    say("正在校验备份文件 ……")
    info = verify(source, allow_unverified=allow_unverified)
    if info.manifest is not None:
        say(f"备份文件完整:{len(info.manifest.tables)} 张表,共 {info.manifest.total_rows:,} 行,"
            f"数据库版本 {info.manifest.revision}。")
    with _os_errors("恢复"):
        if backend == "sqlite":
            done = sqlite.restore(info, _sqlite_path(parsed), force=force, progress=say)
        else:
            done = mysql.restore(parsed, info, force=force, progress=say)
    notes = list(info.notes)
    notes += [note for note in done if note not in notes]
    return RestoreReport(info=info, notes=notes)
