"""Import jobs in the database, so that every process on every node shares them.

``import_job`` is a job's state (its owner, importer, progress, heartbeat); ``import_chunk`` keeps the
uploaded file (``kind = 'upload'``) and the error workbook (``kind = 'errors'``) as numbered pieces of
at most ``CHUNK_BYTES`` each, so that neither depends on the disk of the node that took the upload.
Jobs are bookkeeping, not business records: they are written with plain statements (no per-row audit)
and removed some hours after they finish (``store.sweep``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base

CHUNK_BYTES = 1024 * 1024  # one piece of a file: well below MySQL's default max_allowed_packet
# MySQL's BLOB holds 64 KB only; LONGBLOB whatever the piece size
BLOB = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class ImportJob(Base):
    __tablename__ = "import_job"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(String(32))  # the importer's key
    status: Mapped[str] = mapped_column(String(16))  # queued/validating/validated/applying/done/failed
    filename: Mapped[str] = mapped_column(String(255), default="")
    kind: Mapped[str] = mapped_column(String(8))  # xlsx / csv
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)  # who started the current pass (for its audit)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    valid: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    # an import that updates existing rows (migration 0022): rows it updates, rows matched that would not
    # change, and the dry run's plan (per-row outcome, the matched rows' versions) kept as chunks
    updated: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    unchanged: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    plan_size: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(1000), default="")
    upload_size: Mapped[int] = mapped_column(Integer, default=0)
    errors_size: Mapped[int | None] = mapped_column(Integer)  # the error workbook's chunks, when written
    runner: Mapped[str] = mapped_column(String(128), default="")  # host:pid of the current pass
    started_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_import_job_owner_id_started_at", "owner_id", "started_at"),
        Index("ix_import_job_heartbeat_at", "heartbeat_at"),
    )


class ImportChunk(Base):
    __tablename__ = "import_chunk"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("import_job.id", ondelete="CASCADE"),
                                        primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # upload / errors / plan
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(BLOB)
