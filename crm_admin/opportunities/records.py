"""Sales opportunities as records of a customer: the 360° page's table, form, figures and timeline
(the opportunity and every later move of its stage), the open ones following the manager, and the
stage history removed with them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crm_admin.core.customer_records import (
    FORMS,
    MAIN,
    Contribution,
    Fact,
    HandOver,
    PageAction,
    RecordKind,
    Section,
    TimelineEntry,
    VisibleCustomer,
    _,
    delete_rows,
    of_customer,
    register,
)
from crm_admin.core.params import read_date
from crm_admin.core.principal import Principal
from crm_admin.dictionary.service import choices, label
from crm_admin.opportunities.models import OpportunityStageHistory, SalesOpportunity
from crm_admin.opportunities.service import (
    STATUS_LABELS,
    create_opportunity,
    customer_stage_changes,
)

KIND = _("销售机会")
STAGE_CHANGE = _("阶段变更")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    opps = session.execute(
        of_customer(select(SalesOpportunity), SalesOpportunity, customer)
        .order_by(SalesOpportunity.id.desc())
    ).scalars().all()
    timeline = [
        TimelineEntry(
            at=o.created_at, kind=KIND, icon="fa-chart-line", title=o.title,
            text=f"{label('opportunity_stage', o.stage)} · ¥{o.amount:,.2f} · {o.probability}%",
            extra=STATUS_LABELS.get(o.status, o.status) + (f"(丢单原因:{o.lost_reason})" if o.lost_reason else ""),
            user_id=o.manager_id,
        )
        for o in opps[:limit]
    ]
    timeline += [
        TimelineEntry(at=c.changed_at, kind=STAGE_CHANGE, icon="fa-arrow-right", title=c.opportunity,
                      text=c.describe(), user_id=c.changed_by)
        for c in customer_stage_changes(session, customer.id, limit)
    ]
    rows = [{"id": o.id, "title": o.title, "stage": label("opportunity_stage", o.stage), "amount": o.amount,
             "probability": o.probability, "expected_close_date": o.expected_close_date,
             "status": STATUS_LABELS.get(o.status, o.status)} for o in opps]
    sections = []
    if customer.principal.can("opportunity", "create"):
        sections.append(Section(FORMS, "opportunities/360_form.html",
                                {"stages": choices("opportunity_stage", blank=False)}))
    sections.append(Section(MAIN, "opportunities/360_table.html", {"rows": rows}))
    open_opps = [o for o in opps if o.status == "open"]
    return Contribution(
        sections=sections, timeline=timeline,
        facts=[Fact(_("进行中商机"), len(open_opps), _("个"), sum((o.amount for o in open_opps), Decimal("0.00")))],
    )


def _create(session: Session, principal: Principal, customer_id: int, values: Mapping[str, str]) -> object:
    return create_opportunity(
        session, principal, customer_id=customer_id, title=values.get("title", ""),
        stage=values.get("stage", ""), amount=values.get("amount") or "0",
        probability=values.get("probability") or 0,
        expected_close_date=read_date(values.get("expected_close_date"), field="expected_close_date"),
        next_step=values.get("next_step") or None,
    )


def _open_ones_to(session: Session, customer_ids: list[int], manager_id: int | None, now: dt.datetime) -> int:
    result = session.execute(
        update(SalesOpportunity)
        .where(SalesOpportunity.customer_id.in_(customer_ids), SalesOpportunity.status == "open",
               SalesOpportunity.manager_id.is_distinct_from(manager_id))
        .values(manager_id=manager_id, version=SalesOpportunity.version + 1, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _delete(session: Session, customer_id: int) -> int:
    # the history goes first: it refers to the opportunities
    ids = select(SalesOpportunity.id).where(SalesOpportunity.customer_id == customer_id)
    session.execute(delete(OpportunityStageHistory).where(OpportunityStageHistory.opportunity_id.in_(ids)))
    return delete_rows(session, SalesOpportunity, customer_id)


OPPORTUNITY = register(RecordKind(
    key="opportunity", model=SalesOpportunity, label=KIND, unit=_("个销售机会"), order=30,
    page=_page, delete=_delete,
    actions=(PageAction("opportunity", "opportunity", "create", "销售机会已创建。", _create),),
    hand_over=(HandOver("opportunities", _("个进行中的商机"), _open_ones_to),),
    open_rows=SalesOpportunity.status == "open",
))
