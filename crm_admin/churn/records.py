"""Churn alerts as records of a customer: on the 360° timeline, and closed by the churn rules (not
moved) when a merge would give the kept customer a second open alert of the same rule."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.churn.models import ChurnAlert
from crm_admin.churn.service import LEVEL_LABELS, STATUS_LABELS, close_duplicates_of_merge
from crm_admin.core.customer_records import (
    Contribution,
    RecordKind,
    TimelineEntry,
    VisibleCustomer,
    _,
    move_rows,
    of_customer,
    register,
)

KIND = _("流失预警")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    alerts = session.execute(
        of_customer(select(ChurnAlert), ChurnAlert, customer)
        .order_by(ChurnAlert.detected_at.desc()).limit(limit)
    ).scalars()
    return Contribution(timeline=[
        TimelineEntry(at=a.detected_at, kind=KIND, icon="fa-triangle-exclamation", title=f"风险:{LEVEL_LABELS.get(a.risk_level, a.risk_level)}",
                      text=a.analysis or "", extra=f"状态:{STATUS_LABELS.get(a.status, a.status)}", user_id=a.handled_by)
        for a in alerts
    ])


def _merge(session: Session, keep_id: int, drop_id: int) -> int:
    close_duplicates_of_merge(session, keep_id=keep_id, drop_id=drop_id)
    return move_rows(session, ChurnAlert, keep_id, drop_id)


CHURN_ALERT = register(RecordKind(
    key="churn_alert", model=ChurnAlert, label=KIND, unit=_("条流失预警"), order=70, page=_page, merge=_merge,
))
