"""What a backup says about itself (its manifest), and the checks shared by both backup formats.

The manifest names the kind of database, when the backup was made, the schema revision, every table
with its row count, and the SHA-256 of the backup's content. How it is stored inside the file differs
per format (see ``crm_admin.backup.sqlite`` and ``crm_admin.backup.mysql``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from alembic.script import ScriptDirectory

from crm_admin.core.errors import UserError
from crm_admin.migrate import alembic_config

FORMAT_VERSION = 1
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(UserError):
    """The backup or restore could not be done; the message says why (in Chinese)."""


@dataclass(frozen=True)
class Manifest:
    kind: str  # "sqlite" | "mysql"
    made_at: dt.datetime  # UTC
    revision: str | None  # the schema's Alembic revision at the time of the backup
    tables: dict[str, int]  # every table and its row count
    sha256: str = ""  # over the backup's content (what exactly: see the format's module)
    content_bytes: int = 0
    source: str = ""  # server / library version, for the operator

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT_VERSION, "kind": self.kind,
            "made_at": self.made_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revision": self.revision, "tables": self.tables, "sha256": self.sha256,
            "content_bytes": self.content_bytes, "source": self.source,
        }, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data: Any = json.loads(text)
            if int(data["format"]) > FORMAT_VERSION:
                raise BackupError("备份文件由更新版本的程序生成,当前程序无法读取它的校验清单,请升级程序。")
            tables = {str(k): int(v) for k, v in dict(data["tables"]).items()}
            made_at = dt.datetime.strptime(str(data["made_at"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            return cls(kind=str(data["kind"]), made_at=made_at,
                       revision=str(data["revision"]) if data.get("revision") else None,
                       tables=tables, sha256=str(data.get("sha256") or ""),
                       content_bytes=int(data.get("content_bytes") or 0), source=str(data.get("source") or ""))
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError("备份文件的校验清单已损坏,无法确认备份完整。") from None


@dataclass
class BackupInfo:
    """A backup file that passed verification (``manifest`` is None for an old, unverifiable one)."""

    path: Path
    kind: str  # "sqlite" | "mysql"
    compressed: bool
    manifest: Manifest | None
    revision: str | None
    notes: list[str] = field(default_factory=list)


# --- the schema revision ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def code_revisions() -> tuple[str, tuple[str, ...]]:
    """(head, every revision this program knows, newest first)."""


    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    heads = script.get_heads()
    known = tuple(r.revision for r in script.walk_revisions())
    return heads[0], known


def check_revision(revision: str | None) -> str | None:
    """Refuses a revision this program cannot run on; returns a note when the backup is older (restore
    then upgrades the staging copy before anything is replaced)."""
    head, known = code_revisions()
    if not revision:
        raise BackupError("备份中没有数据库版本信息(alembic_version),不是本程序的完整数据库备份。")
    if revision == head:
        return None
    if revision not in known:
        raise BackupError(
            f"备份来自数据库版本 {revision},当前程序需要 {head}:该版本比当前程序新(或不属于本程序),"
            "请用生成这个备份的程序版本恢复,或先升级程序。"
        )
    return f"备份的数据库版本 {revision} 比当前程序的 {head} 旧:恢复时先在临时库中升级到 {head},再替换目标库。"


# --- reading a (possibly gzip-compressed) file -----------------------------------------------------

def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Content:
    """The backup's bytes, decompressed when the file is gzip. A damaged or cut file surfaces as a
    BackupError from ``read``, whatever the caller does with the bytes."""

    def __init__(self, fh: Readable, compressed: bool) -> None:
        self._fh = fh
        self.compressed = compressed

    def read(self, size: int = CHUNK) -> bytes:
        try:
            return self._fh.read(size)
        except EOFError:
            raise BackupError("备份文件不完整:压缩文件在中途被截断(没有压缩数据的结尾)。") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise BackupError(f"备份文件已损坏:压缩数据校验失败({_gzip_reason(exc)})。") from None
        except OSError as exc:
            raise BackupError(f"无法读取备份文件:{exc.strerror or exc}") from None

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


def _gzip_reason(exc: Exception) -> str:
    text = str(exc)
    if "CRC" in text:
        return "CRC 不一致"
    if "length" in text.lower():
        return "长度不一致"
    return "数据无法解压"


@contextmanager
def open_content(path: Path) -> Iterator[Content]:
    try:
        compressed = is_gzip(path)
        raw = path.open("rb")
    except OSError as exc:
        raise BackupError(f"无法读取备份文件:{exc.strerror or exc}") from None
    with raw:
        yield Content(gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw, compressed)


def read_head(path: Path, size: int = 4096) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the content, and whether the file is compressed."""
    with open_content(path) as content:
        return content.read(size), content.compressed


def kind_of(path: Path) -> tuple[str, bool]:
    """("sqlite" | "mysql", compressed?) judged by content, not by name; refuses what is neither."""
    if not path.is_file():
        raise BackupError(f"备份文件不存在:{path}")
    if path.stat().st_size == 0:
        raise BackupError("备份文件是空的(0 字节),不是一个完整的备份。")
    head, compressed = read_head(path)
    if not head:
        raise BackupError("备份文件解压后是空的,不是一个完整的备份。")
    if head.startswith(SQLITE_MAGIC):
        return "sqlite", compressed
    if b"-- MariaDB dump" in head or b"-- MySQL dump" in head:
        return "mysql", compressed
    raise BackupError("无法识别的备份文件:既不是 SQLite 备份,也不是 mariadb-dump/mysqldump 导出的 SQL。")


def checked_message(info: BackupInfo) -> str:
    """What the staging copy was checked against, for the progress line before the swap."""
    if info.manifest is None:
        return "临时副本的数据库版本核对无误(旧备份没有清单,无法核对行数)"
    return "临时副本的表、行数与版本和清单一致"
