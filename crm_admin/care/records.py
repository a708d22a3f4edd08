"""Care as records of a customer: care tasks on the timeline, and the pending tasks and care plans
that follow the customer's manager (a pending care task always belongs to its customer's manager:
the workbench finds a department's tasks by manager)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.care.service import care_status_label
from crm_admin.core import totals
from crm_admin.core.customer_records import (
    HandOver,
    RecordKind,
    TimelineEntry,
    _,
    register,
    timeline_page,
)
from crm_admin.customers.models import Customer
from crm_admin.dictionary.service import label

KIND = _("客户关怀")


def _entry(c: CustomerCare) -> TimelineEntry:
    return TimelineEntry(
        at=c.care_time or c.created_at, kind=KIND, icon="fa-heart", title=label("care_type", c.care_type),
        text=c.detail or "", extra=f"状态:{care_status_label(c.status, executed=c.care_time is not None)}" + (f";反馈:{c.feedback}" if c.feedback else ""),
        user_id=c.manager_id,
    )


def _affected(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _pending_tasks_to(session: Session, customer_ids: list[int], manager_id: int | None, now: dt.datetime) -> int:
    where = and_(CustomerCare.customer_id.in_(customer_ids), CustomerCare.status == "pending",
                 CustomerCare.manager_id.is_distinct_from(manager_id))
    with totals.updating(session.connection(), CustomerCare, where):  # the counts per manager follow
        return _affected(session.execute(update(CustomerCare).where(where).values(manager_id=manager_id, updated_at=now)))


def _leavers_pending_tasks(session: Session, leaver_id: int, now: dt.datetime) -> int:
    # pending tasks still assigned to the leaver on customers someone else manages stay open: they
    # go to each customer's current manager
    where = and_(CustomerCare.manager_id == leaver_id, CustomerCare.status == "pending")
    with totals.updating(session.connection(), CustomerCare, where):  # the counts per manager follow
        return _affected(session.execute(
            update(CustomerCare).where(where)
            .values(manager_id=select(Customer.manager_id).where(Customer.id == CustomerCare.customer_id)
                    .scalar_subquery(), updated_at=now)
        ))


def _plans_to(session: Session, customer_ids: list[int], manager_id: int | None, now: dt.datetime) -> int:
    return _affected(session.execute(
        update(CarePlan)
        .where(CarePlan.customer_id.in_(customer_ids), CarePlan.manager_id.is_distinct_from(manager_id))
        .values(manager_id=manager_id, updated_at=now)
    ))


CARE = register(RecordKind(
    key="customer_care", model=CustomerCare, label=KIND, unit=_("条关怀记录"), order=50,
    page=timeline_page(CustomerCare, CustomerCare.id.desc(), entry=_entry),
    hand_over=(HandOver("care_tasks", _("条待办关怀"), _pending_tasks_to, leaver=_leavers_pending_tasks),),
))
CARE_PLAN = register(RecordKind(
    key="care_plan", model=CarePlan, label=_("关怀计划"), unit=_("个关怀计划"), order=51,
    hand_over=(HandOver("care_plans", _("个关怀计划"), _plans_to),),
))
