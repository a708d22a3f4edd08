"""Files of a job: spooled to a local temporary file while a pass reads them, kept in the database.

An upload is spooled to the data directory as it arrives (bounded by ``MAX_UPLOAD_BYTES``), checked,
then copied into ``import_chunk`` rows; a pass on any node copies it back to a temporary file of its
own, reads it and removes it. The error workbook is written to a temporary file and kept the same way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from crm_admin.core.errors import UserError
from crm_admin.db import session_factory
from crm_admin.imports.models import CHUNK_BYTES, ImportChunk
from crm_admin.imports.reading import MAX_UPLOAD_BYTES

UPLOAD = "upload"
ERRORS = "errors"
TOO_LARGE = f"文件过大(超过 {MAX_UPLOAD_BYTES // 1024 // 1024} MB),请拆分后分批导入。"


def work_dir() -> Path:
    """This node's folder for temporary files of import passes."""
    from crm_admin.settings import get_settings

    base = Path(getattr(get_settings(), "data_dir", "") or tempfile.gettempdir())
    folder = base / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def temp_path(prefix: str, suffix: str = "") -> str:
    """A new empty temporary file in ``work_dir`` (the caller removes it)."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=work_dir())
    os.close(fd)
    return path


def remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


async def save_upload_async(upload: Any) -> str:
    """Spool a Starlette ``UploadFile`` to disk chunk by chunk (bounded size); returns the path."""
    fd, path = tempfile.mkstemp(prefix="upload-", dir=work_dir())
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while True:
                chunk = await upload.read(256 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise UserError(TOO_LARGE)
                fh.write(chunk)
    except BaseException:
        remove(path)
        raise
    return path


def sweep_files(older_than: float) -> int:
    """Temporary files left by a process that stopped mid-pass (this node's only)."""
    removed = 0
    for file in work_dir().glob("*"):
        if not file.is_file() or not file.name.startswith(("upload-", "errors-", "apply-")):
            continue
        with contextlib.suppress(OSError):
            if time.time() - file.stat().st_mtime > older_than:
                file.unlink()
                removed += 1
    return removed


# ----- in the database ---------------------------------------------------------------------------

def store_file(session: Session, job_id: str, kind: str, path: str) -> int:
    """Keep the file at ``path`` as ``job_id``'s ``kind`` (replacing what was kept); returns its size.
    One piece in memory at a time."""
    drop(session, job_id, kind)
    size = seq = 0
    with open(path, "rb") as fh:
        while piece := fh.read(CHUNK_BYTES):
            session.execute(insert(ImportChunk).values(job_id=job_id, kind=kind, seq=seq, data=piece))
            size += len(piece)
            seq += 1
    return size


def drop(session: Session, job_id: str, kind: str) -> None:
    session.execute(delete(ImportChunk).where(ImportChunk.job_id == job_id, ImportChunk.kind == kind))


def pieces(job_id: str, kind: str) -> Iterator[bytes]:
    """The kept file, piece by piece, each read in a short query of its own (a download may be slow)."""
    seq = 0
    while True:
        with session_factory()() as session:
            piece = session.execute(select(ImportChunk.data).where(
                ImportChunk.job_id == job_id, ImportChunk.kind == kind, ImportChunk.seq == seq)).scalar()
        if piece is None:
            return
        yield bytes(piece)
        seq += 1


def restore_file(job_id: str, kind: str, size: int, prefix: str) -> str | None:
    """The kept file copied to a new temporary file (the caller removes it); None when it is not kept
    whole (cleaned up meanwhile)."""
    path = temp_path(prefix)
    written = 0
    try:
        with open(path, "wb") as fh:
            for piece in pieces(job_id, kind):
                fh.write(piece)
                written += len(piece)
    except BaseException:
        remove(path)
        raise
    if written != size or written == 0:
        remove(path)
        return None
    return path
