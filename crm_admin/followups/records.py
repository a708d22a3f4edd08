"""Follow-ups as records of a customer: timeline entries and the 360° page's "记录联系" form."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.core.customer_records import (
    FORMS,
    Contribution,
    PageAction,
    RecordKind,
    Section,
    TimelineEntry,
    VisibleCustomer,
    _,
    of_customer,
    register,
)
from crm_admin.core.errors import UserError
from crm_admin.core.formatting import format_datetime
from crm_admin.core.params import parse_id, read_local_datetime
from crm_admin.core.principal import Principal
from crm_admin.dictionary.service import choices, label
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import log_follow_up

KIND = _("联系记录")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    rows = session.execute(
        of_customer(select(FollowUp, Linkman.name), FollowUp, customer)
        .outerjoin(Linkman, Linkman.id == FollowUp.linkman_id)
        .order_by(FollowUp.contacted_at.desc()).limit(limit)
    ).all()
    timeline = [
        TimelineEntry(
            at=f.contacted_at, kind=KIND, icon="fa-phone",
            title=f"{label('follow_up_method', f.method)}{(' · ' + who) if who else ''}", text=f.content,
            extra=f"下次跟进:{format_datetime(f.next_follow_up_at)}" if f.next_follow_up_at else "",
            user_id=f.manager_id,
        )
        for f, who in rows
    ]
    sections = []
    if customer.principal.can("follow_up", "create"):
        contacts = session.execute(
            of_customer(select(Linkman.id, Linkman.name), Linkman, customer)
            .order_by(Linkman.is_primary.desc(), Linkman.id)
        ).all()
        sections.append(Section(FORMS, "followups/360_form.html", {
            "methods": choices("follow_up_method", blank=False), "contacts": contacts,
        }))
    return Contribution(sections=sections, timeline=timeline)


def _linkman_id(value: str | None) -> int | None:
    """The form's optional contact: empty is none, anything else must be an id."""
    if not (value or "").strip():
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise UserError("所选的联系人不存在,请重新选择。")
    return parsed


def _log(session: Session, principal: Principal, customer_id: int, values: Mapping[str, str]) -> object:
    return log_follow_up(
        session, principal, customer_id=customer_id, method=values.get("method", ""),
        content=values.get("content", ""),
        contacted_at=read_local_datetime(values.get("contacted_at"), field="contacted_at"),
        next_follow_up_at=read_local_datetime(values.get("next_follow_up_at"), field="next_follow_up_at"),
        linkman_id=_linkman_id(values.get("linkman_id")),
    )


FOLLOW_UP = register(RecordKind(
    key="follow_up", model=FollowUp, label=KIND, unit=_("条联系记录"), order=20, page=_page,
    actions=(PageAction("follow-up", "follow_up", "create", "联系记录已保存,最近联系时间已更新。", _log),),
))
