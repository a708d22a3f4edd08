"""Churn alerts as records of a customer: on the 360° timeline, and closed by the churn rules (not
moved) when a merge would give the kept customer a second open alert of the same rule."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.churn.models import ChurnAlert
from crm_admin.churn.service import LEVEL_LABELS, STATUS_LABELS, close_duplicates_of_merge
from crm_admin.core.customer_records import (
    RecordKind,
    TimelineEntry,
    _,
    move_rows,
    register,
    timeline_page,
)

KIND = _("流失预警")


def _entry(a: ChurnAlert) -> TimelineEntry:
    return TimelineEntry(
        at=a.detected_at, kind=KIND, icon="fa-triangle-exclamation", title=f"风险:{LEVEL_LABELS.get(a.risk_level, a.risk_level)}",
        text=a.analysis or "", extra=f"状态:{STATUS_LABELS.get(a.status, a.status)}", user_id=a.handled_by,
    )


def _merge(session: Session, keep_id: int, drop_id: int) -> int:
    close_duplicates_of_merge(session, keep_id=keep_id, drop_id=drop_id)
    return move_rows(session, ChurnAlert, keep_id, drop_id)


CHURN_ALERT = register(RecordKind(
    key="churn_alert", model=ChurnAlert, label=KIND, unit=_("条流失预警"), order=70, merge=_merge,
    page=timeline_page(ChurnAlert, ChurnAlert.detected_at.desc(), entry=_entry),
))
