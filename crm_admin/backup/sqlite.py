"""SQLite backups: a copy of the database made with SQLite's online backup API, manifest inside.

The copy carries one extra table, ``crm_backup_manifest (name, value)``:
- ``manifest``: the manifest as JSON (schema revision, every table's row count, when, SQLite version);
- ``sha256``: ``crm-admin-backup-sha256:`` followed by the SHA-256 of the whole file, computed while
  those 64 hex digits were zeros and then written over them. They keep their length, so the file stays
  a valid SQLite database that any SQLite tool opens.

Verifying hashes the file again with the digits zeroed: a cut, a flipped byte, anything changed
anywhere in the file gives another digest. Restore copies the file beside the target (hashing it once
more), checks every table's row count and the revision in that copy, drops the manifest table, upgrades
an older schema there, and only then copies it into the target with SQLite's backup API, which replaces
the target's pages in one write transaction (through its journal or WAL: all or nothing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from sqlalchemy import create_engine

from crm_admin.backup.manifest import (
    SQLITE_MAGIC,
    BackupError,
    BackupInfo,
    Manifest,
    check_revision,
    checked_message,
    open_content,
)
from crm_admin.migrate import upgrade

MANIFEST_TABLE = "crm_backup_manifest"
DIGEST_MARK = b"crm-admin-backup-sha256:"
_ZEROS = b"0" * 64
_DIGEST = re.compile(re.escape(DIGEST_MARK) + rb"[0-9a-f]{64}")
_SPAN = len(DIGEST_MARK) + 64


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the checksum ----------------------------------------------------------------------------------

def content_digest(chunks: Iterable[bytes], copy_to: IO[bytes] | None = None) -> tuple[str, set[str], int]:
    """(SHA-256 with every recorded digest zeroed, the digests found, size), in one streaming pass."""
    digest = hashlib.sha256()
    found: set[str] = set()
    size = 0
    carry = b""
    for chunk in chunks:
        if copy_to is not None:
            copy_to.write(chunk)
        size += len(chunk)
        buf = carry + chunk
        if DIGEST_MARK in buf:
            found.update(m.group()[len(DIGEST_MARK):].decode() for m in _DIGEST.finditer(buf))
            buf = _DIGEST.sub(DIGEST_MARK + _ZEROS, buf)
        # a recorded digest may straddle two chunks: hold back the bytes it could start in
        keep = _SPAN - 1
        if len(buf) > keep:
            digest.update(buf[:-keep])
            carry = buf[-keep:]
        else:
            carry = buf
    digest.update(carry)
    found.discard(_ZEROS.decode())
    return digest.hexdigest(), found, size


def _file_chunks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _placeholder_offset(path: Path) -> int:
    """Where the zeroed digits waiting for the digest start (there must be exactly one such place;
    digests left in free pages by an earlier backup's manifest hold real digits and do not count)."""
    placeholder = re.compile(re.escape(DIGEST_MARK + _ZEROS))
    offsets: set[int] = set()
    position = 0
    carry = b""
    for chunk in _file_chunks(path):
        buf = carry + chunk
        start = position - len(carry)
        offsets.update(start + m.start() for m in placeholder.finditer(buf))
        carry = buf[-(_SPAN - 1):]
        position += len(chunk)
    if len(offsets) != 1:
        raise BackupError("无法在备份文件中写入校验和(校验和位置不唯一)。")
    return offsets.pop() + len(DIGEST_MARK)


def seal(path: Path) -> tuple[str, int]:
    """Compute the file's digest (every recorded digest zeroed) and write it over the placeholder."""
    digest, _, size = content_digest(_file_chunks(path))
    offset = _placeholder_offset(path)
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(digest.encode())
        fh.flush()
        os.fsync(fh.fileno())
    return digest, size


# --- backup ----------------------------------------------------------------------------------------

def user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows if r[0] != MANIFEST_TABLE]


def _quote(name: str) -> str:
    """A quoted identifier: table names come from the file's own catalogue (``# nosec B608`` below)."""
    return '"' + name.replace('"', '""') + '"'


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT COUNT(*) FROM {_quote(t)}").fetchone()[0]) for t in user_tables(conn)}  # nosec B608


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def write_backup(source: Path, target: Path) -> Manifest:
    """A consistent copy of ``source`` at ``target`` (which must not exist), manifest and checksum inside."""
    if not source.exists():
        raise BackupError(f"数据库文件不存在:{source}")
    made_at = _utcnow()
    # created owner-only before SQLite writes into it: a backup holds every password hash
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        # one self-contained file: no -wal/-shm companions needed to read it
        dst.execute("PRAGMA journal_mode=DELETE")
        manifest = Manifest(kind="sqlite", made_at=made_at, revision=_revision(dst), tables=row_counts(dst),
                            source=f"SQLite {sqlite3.sqlite_version}")
        dst.execute(f"CREATE TABLE {MANIFEST_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        dst.execute(f"INSERT INTO {MANIFEST_TABLE} VALUES ('manifest', ?), ('sha256', ?)",  # nosec B608
                    (manifest.to_json(), (DIGEST_MARK + _ZEROS).decode()))
        dst.commit()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"SQLite 备份失败:{exc}") from None
    finally:
        dst.close()
        src.close()
    digest, size = seal(target)
    return Manifest(kind=manifest.kind, made_at=made_at, revision=manifest.revision, tables=manifest.tables,
                    sha256=digest, content_bytes=size, source=manifest.source)


# --- verify ----------------------------------------------------------------------------------------

def _prepend(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _expected_size(head: bytes) -> int:
    """The size the SQLite header says the file has (page size × page count)."""
    if len(head) < 100:
        return 100
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    return page_size * int.from_bytes(head[28:32], "big")


def _read_manifest(plain: Path) -> Manifest:
    try:
        conn = sqlite3.connect(f"{plain.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            row = conn.execute(f"SELECT value FROM {MANIFEST_TABLE} WHERE name = 'manifest'").fetchone()  # nosec B608
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise BackupError("备份文件已损坏:无法读取其中的校验清单。") from None
    if not row:
        raise BackupError("备份文件的校验清单已损坏,无法确认备份完整。")
    return Manifest.from_json(str(row[0]))


def check_integrity(path: Path) -> None:
    """SQLite's own check of every page: all an old backup without a manifest can be judged by."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"备份文件已损坏:{exc}") from None
    if not ok or ok[0] != "ok":
        raise BackupError("备份文件已损坏(SQLite 完整性检查未通过)。")


def verify(path: Path, *, allow_unverified: bool = False, check_schema: bool = True) -> BackupInfo:
    with tempfile.TemporaryDirectory(prefix="crm-verify-") as tmp:
        with open_content(path) as content:
            compressed = content.compressed
            head = content.read(100)
            if not head.startswith(SQLITE_MAGIC):
                raise BackupError("这不是 SQLite 备份文件。")
            # a compressed backup is unpacked once, to a private temporary file, to read its manifest
            plain = Path(tmp) / "backup.sqlite3" if compressed else path
            with ExitStack() as stack:
                copy = stack.enter_context(plain.open("wb")) if compressed else None
                digest, found, size = content_digest(_prepend(head, content.chunks()), copy_to=copy)
        expected = _expected_size(head)
        if size < expected:
            raise BackupError(f"备份文件不完整:只有 {size:,} 字节,按文件头应有 {expected:,} 字节(在末尾被截断)。")
        if not found:
            if not allow_unverified:
                raise BackupError(
                    "这个备份没有校验清单(本程序旧版本生成的备份,或不是本程序的备份),无法确认它完整。"
                    "确认要恢复它时请加 --allow-unverified(仍先导入临时副本,成功后才替换)。"
                )
            check_integrity(plain)
            return BackupInfo(path=path, kind="sqlite", compressed=compressed, manifest=None, revision=None,
                              notes=["这是没有校验清单的旧备份:只做了 SQLite 完整性检查,无法核对行数。"])
        if digest not in found:
            raise BackupError("校验和不一致:备份文件在生成之后被改动或损坏(磁盘或传输错误),不能用于恢复。")
        manifest = _read_manifest(plain)
    if manifest.kind != "sqlite":
        raise BackupError("备份文件的校验清单与文件类型不符。")
    manifest = Manifest(kind=manifest.kind, made_at=manifest.made_at, revision=manifest.revision,
                        tables=manifest.tables, sha256=digest, content_bytes=size, source=manifest.source)
    note = check_revision(manifest.revision) if check_schema else None
    return BackupInfo(path=path, kind="sqlite", compressed=compressed, manifest=manifest,
                      revision=manifest.revision, notes=[note] if note else [])


# --- restore ---------------------------------------------------------------------------------------

def has_rows(target: Path) -> bool:
    """True if any table of the SQLite file at ``target`` (other than Alembic's bookkeeping) has a row."""
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return any(conn.execute(f"SELECT 1 FROM {_quote(t)} LIMIT 1").fetchone()  # nosec B608
                       for t in user_tables(conn) if t != "alembic_version")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"目标文件不是可读的 SQLite 数据库({exc}),拒绝覆盖。") from None


def _remove_with_companions(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def restore(info: BackupInfo, target: Path, *, force: bool, progress: Callable[[str], None]) -> list[str]:
    """Replace the SQLite database at ``target`` with the verified backup ``info``; returns notes."""
    existed = target.exists()
    if existed and not force and has_rows(target):
        raise BackupError("目标数据库中已有数据,拒绝覆盖。确认要用备份替换现有数据时,请加 --force。")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")
    notes: list[str] = []
    swapped = False
    try:
        progress(f"正在把备份复制到临时文件 {stage.name} ……")
        fd = os.open(stage, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open_content(info.path) as content, os.fdopen(fd, "wb") as out:
            digest, _, _ = content_digest(content.chunks(), copy_to=out)
        if info.manifest is not None and digest != info.manifest.sha256:
            raise BackupError("备份文件在校验之后被改动,已停止恢复。")
        revision = _check_stage(stage, info)
        note = check_revision(revision)
        if note:
            engine = create_engine(f"sqlite:///{stage}")
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            notes.append(note)
        progress(checked_message(info) + ",正在替换目标数据库 ……")
        src = sqlite3.connect(stage)
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
            swapped = True
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"替换目标数据库时出错({exc}),目标数据库没有改动。请先停止服务再恢复。") from None
        finally:
            dst.close()
            src.close()
    finally:
        _remove_with_companions(stage)
        if not swapped and not existed:
            _remove_with_companions(target)
    return notes


def _check_stage(stage: Path, info: BackupInfo) -> str | None:
    """The staged copy holds exactly the manifest's tables and rows; returns its revision."""
    conn = sqlite3.connect(stage)
    try:
        if info.manifest is None:
            ok = conn.execute("PRAGMA integrity_check").fetchone()
            if not ok or ok[0] != "ok":
                raise BackupError("备份文件已损坏(SQLite 完整性检查未通过)。")
        else:
            compare_counts(info.manifest.tables, row_counts(conn))
        revision = _revision(conn)
        if info.manifest is not None and revision != info.manifest.revision:
            raise BackupError("备份中的数据库版本与校验清单不符,已停止恢复。")
        # zero the freed pages: the restored database should not carry the backup's digest along
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"DROP TABLE IF EXISTS {MANIFEST_TABLE}")
        conn.commit()
        return revision
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"备份文件已损坏:{exc}") from None
    finally:
        conn.close()


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> None:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append("缺少 " + "、".join(missing))
        if extra:
            parts.append("多出 " + "、".join(extra))
        raise BackupError(f"导入后的表与备份清单不符({';'.join(parts)}),已停止恢复,目标数据库没有改动。")
    for name in sorted(expected):
        if expected[name] != actual[name]:
            raise BackupError(f"导入后表 {name} 有 {actual[name]:,} 行,备份清单记录的是 {expected[name]:,} 行;"
                              "已停止恢复,目标数据库没有改动。")
