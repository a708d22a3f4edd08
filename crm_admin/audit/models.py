"""Audit log: append-only record of who did what, when and from where, hash-chained once sealed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"
    __resource__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column()
    username: Mapped[str] = mapped_column(String(64), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    action: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(64), default="")
    resource_id: Mapped[str] = mapped_column(String(64), default="")
    changes: Mapped[dict | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    # the hash chain, filled in by the sealer (core.audit.seal_pending) shortly after the commit:
    # NULL while the row is not sealed yet
    seal_seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_audit_log_occurred_at", "occurred_at"),
        Index("ix_audit_log_user_id_occurred_at", "user_id", "occurred_at"),
        Index("ix_audit_log_action_occurred_at", "action", "occurred_at"),
        Index("ix_audit_log_resource_resource_id", "resource", "resource_id"),
        # the chain's order; NULLs (the unsealed tail) come first in id order, which the sealer reads
        Index("ux_audit_log_seal_seq", "seal_seq", unique=True),
    )


class AuditDaily(Base):
    """Sealed audit rows counted per company day, action, resource and outcome (the analysis page's
    totals). Kept by the sealer in the transaction that seals the rows (``core.audit.seal_pending``):
    exactly the sealed rows; the page adds the unsealed tail counted from ``audit_log``."""

    __tablename__ = "audit_daily"

    # the key is the primary key (clustered on MariaDB): a range of days reads its counts in place
    day: Mapped[dt.date] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    success: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditDailyUser(Base):
    """As ``audit_daily``, per user as well (the per-user counts, and every count filtered by user).
    ``user_id`` 0: a row written with no signed-in user."""

    __tablename__ = "audit_daily_user"

    day: Mapped[dt.date] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    user_id: Mapped[int] = mapped_column(primary_key=True, default=0, autoincrement=False)
    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    success: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        Index("ix_audit_daily_user_user_id_day", "user_id", "day"),
        Index("ix_audit_daily_user_username_day", "username", "day"),
    )


class AuditDailyUserTotal(Base):
    """Per company day and user, every action together (the per-user counts of an unfiltered period:
    a month is a few thousand rows here, tens of thousands in ``audit_daily_user``)."""

    __tablename__ = "audit_daily_user_total"

    day: Mapped[dt.date] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    user_id: Mapped[int] = mapped_column(primary_key=True, default=0, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
