"""Customer care (客户关怀): periodic plans and care records/tasks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.contacts.models import Linkman
from crm_admin.core import totals
from crm_admin.customers.models import CarriesCustomerManager, Customer, OfCustomer
from crm_admin.db import Base, Timestamped

CARE_STATUSES = ("pending", "done", "cancelled")
CARE_ORIGINS = ("birthday", "plan", "manual")


class CarePlan(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "care_plan"
    __resource__ = "care_plan"

    linkman_id: Mapped[int | None] = mapped_column(ForeignKey("linkman.id"))
    care_type: Mapped[str] = mapped_column(String(64), info={"dict": "care_type"})
    interval_days: Mapped[int] = mapped_column(Integer, info={"min": 1, "max": 3650})
    next_date: Mapped[dt.date] = mapped_column(Date)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    remark: Mapped[str | None] = mapped_column(String(255))

    customer: Mapped[Customer] = relationship(lazy="raise")
    linkman: Mapped[Linkman | None] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_care_plan_customer_id", "customer_id"),
        Index("ix_care_plan_is_active_next_date", "is_active", "next_date"),
        # migration 0023: a team's plans, counted and listed (by id) per manager
        Index("ix_care_plan_customer_manager_id", "customer_manager_id"),
    )


class CustomerCare(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "customer_care"
    __resource__ = "customer_care"

    linkman_id: Mapped[int | None] = mapped_column(ForeignKey("linkman.id"))
    care_type: Mapped[str] = mapped_column(String(64), info={"dict": "care_type"})
    care_time: Mapped[dt.datetime | None]
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    detail: Mapped[str | None] = mapped_column(Text)
    feedback: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    origin: Mapped[str] = mapped_column(String(16), default="manual")
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("care_plan.id"))
    # Generated tasks carry a key such as "birthday:<linkman>:<date>"; unique so a job never creates one twice.
    task_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    customer: Mapped[Customer] = relationship(lazy="raise")
    linkman: Mapped[Linkman | None] = relationship(lazy="raise")
    manager: Mapped[SysUser | None] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_customer_care_manager_id_status_due_date", "manager_id", "status", "due_date"),
        Index("ix_customer_care_status_due_date", "status", "due_date"),
        # migration 0006 (performance): everything the workbench reads within the scope's customer_id join
        Index("ix_customer_care_customer_id_status_due_date_covering", "customer_id", "status", "due_date",
              "manager_id", "updated_at"),
        Index("ix_customer_care_updated_at", "updated_at"),
        Index("ix_customer_care_due_date_manager_id_status", "due_date", "manager_id", "status"),
        # migration 0013: the completion rate of some managers reads only the period of each
        Index("ix_customer_care_manager_id_due_date_status", "manager_id", "due_date", "status"),
        # migration 0017: the list (newest first, by id) per manager of a team
        Index("ix_customer_care_customer_manager_id", "customer_manager_id"),
        # migration 0023: a manager's newest closed tasks (the workbench), one range read backwards
        Index("ix_customer_care_customer_manager_id_updated_at", "customer_manager_id", "updated_at"),
    )


class CareTaskDayTotal(Base):
    """Care tasks per status, due date and assigned manager (0: none): kept by ``core.totals`` in the
    transaction of every write (tasks without a due date are not counted). The workbench reads its
    section counts (pending, by day) and the completion rates (a period, by manager) here instead of
    counting 60,000 pending tasks and 100,000 tasks of the last 30 days."""

    __tablename__ = "care_task_day_total"

    # everyone's: one range per status and period in the primary key (clustered on MariaDB)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    due_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    manager_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    task_count: Mapped[int] = mapped_column(BigInteger, default=0)

    # some managers': one range per manager and status
    __table_args__ = (Index("ix_care_task_day_total_manager_id_status_due_date", "manager_id", "status", "due_date"),)


DAY_TOTALS = totals.register(totals.Totals(
    name="care_task_day_total", model=CustomerCare, table=CareTaskDayTotal.__table__,
    keys=("status", "due_date", "manager_id"), count="task_count", zero_for_null=frozenset({"manager_id"}),
    watched=("status", "due_date", "manager_id", "manager"),
))


@event.listens_for(Linkman, "before_insert")
@event.listens_for(Linkman, "before_update")
def _keep_birthday_md(_mapper: Any, _conn: Any, linkman: Linkman) -> None:
    """The birthday scan reads ``birthday_md`` (indexed): every ORM write keeps it in step."""
    b = linkman.birthday
    linkman.birthday_md = b.month * 100 + b.day if b else None
