"""Scheduler bookkeeping: run history and the leases that keep one process per job."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, Timestamped


class JobRun(Timestamped, Base):
    __tablename__ = "job_run"
    __resource__ = "job"

    job: Mapped[str] = mapped_column(String(64))
    run_key: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_job_run_job_started_at", "job", "started_at"),)


class JobLease(Base):
    __tablename__ = "job_lease"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime | None]
    last_success_at: Mapped[dt.datetime | None]
