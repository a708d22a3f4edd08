"""The pool log as records of a customer: each move in or out of a public pool on the 360° timeline, and
the 360° page's way to "退回公海" (the pools' return page with the customer chosen)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.core.customer_records import (
    FORMS,
    Contribution,
    RecordKind,
    Section,
    TimelineEntry,
    VisibleCustomer,
    _,
    of_customer,
    register,
)
from crm_admin.pools.models import LOG_KIND_LABELS, CustomerPool, CustomerPoolLog
from crm_admin.pools.service import RESOURCE

KIND = _("公海")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    rows = session.execute(
        of_customer(select(CustomerPoolLog, CustomerPool.name), CustomerPoolLog, customer)
        .join(CustomerPool, CustomerPool.id == CustomerPoolLog.pool_id)
        .order_by(CustomerPoolLog.at.desc(), CustomerPoolLog.id.desc()).limit(limit)
    ).all()
    timeline = [
        TimelineEntry(at=log.at, kind=KIND, icon="fa-water", title=f"{LOG_KIND_LABELS.get(log.kind, log.kind)} · {name}",
                      text=log.reason or "", user_id=log.operator_id)
        for log, name in rows
    ]
    sections = []
    if customer.principal.can(RESOURCE, "return"):
        # a link to the return page with this customer chosen (which checks the scope and offers the
        # pools): no statement of its own on every 360° page
        sections.append(Section(FORMS, "pools/360_return.html", {}))
    return Contribution(sections=sections, timeline=timeline)


POOL_LOG = register(RecordKind(
    key="pool_log", model=CustomerPoolLog, label=KIND, unit=_("条公海记录"), order=65, page=_page,
    blocks_delete=False,
))
