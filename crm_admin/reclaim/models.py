"""Reclaim rules (回收规则): customers nobody works go back to a public pool by themselves.

A rule names the pool its customers go to, the customer level it covers (none: every level), how
many days without a follow-up and/or without an order make a customer due, what protects a customer
(an open opportunity from a given stage on, a pending care task), how many days ahead the owner is
warned, and whether it is enabled. ``reclaim_day`` keeps one row per company day the daily job has
covered: the job runs once per day however many processes try, and a day the servers were down is
recorded as covered by the next run.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.customers.models import Customer
from crm_admin.db import Base, Timestamped
from crm_admin.pools.models import CustomerPool

DAY_STATUSES = ("running", "done")


class ReclaimRule(Timestamped, Base):
    __tablename__ = "reclaim_rule"
    __resource__ = "reclaim_rule"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("customer_pool.id"))
    # dictionary customer_level; None: customers of every level
    level: Mapped[str | None] = mapped_column(String(64), info={"dict": "customer_level"})
    # N: days since the last follow-up (or since the customer came to its manager)
    days_without_follow_up: Mapped[int | None] = mapped_column(Integer, info={"min": 1, "max": 3650})
    # M: days since the last order (or since the customer came to its manager)
    days_without_order: Mapped[int | None] = mapped_column(Integer, info={"min": 1, "max": 3650})
    # K: the owner sees the customer as "about to be reclaimed" this many days ahead (0: no warning)
    warn_days: Mapped[int] = mapped_column(Integer, default=3, info={"min": 0, "max": 365})
    # an open opportunity at this stage or a later one (dictionary order) protects the customer
    protect_from_stage: Mapped[str | None] = mapped_column(String(64), info={"dict": "opportunity_stage"})
    # a pending care task protects the customer
    protect_pending_care: Mapped[bool] = mapped_column(Boolean, default=True)
    # rules are applied in this order (smaller first); a customer is reclaimed by the first rule it meets
    priority: Mapped[int] = mapped_column(Integer, default=100, info={"min": 0, "max": 9999})
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    remark: Mapped[str | None] = mapped_column(String(500))

    pool: Mapped[CustomerPool] = relationship(lazy="raise")

    def __str__(self) -> str:
        return self.name


class ReclaimDay(Timestamped, Base):
    """A company day of the daily reclaim: taken (unique) by the run that covers it."""

    __tablename__ = "reclaim_day"
    __resource__ = "reclaim_rule"

    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    moved: Mapped[int] = mapped_column(Integer, default=0)
    # the day whose run covered this one (a day the job did not run: the next run's day)
    covered_by: Mapped[dt.date | None] = mapped_column(Date)
    detail: Mapped[str | None] = mapped_column(Text)


# migration 0024: the "days without an order" condition reads a range of it (the follow-up condition
# reads ix_customer_last_contact_at)
Index("ix_customer_last_order_at", Customer.last_order_at)
