"""The pool log as records of a customer: each move in or out of a public pool on the 360° timeline, and
the 360° page's "退回公海" form (posted to the pools' return page, since the customer leaves the
manager's scope once returned)."""

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
from crm_admin.core.scope import in_scope
from crm_admin.customers.models import Customer
from crm_admin.pools.models import LOG_KIND_LABELS, CustomerPool, CustomerPoolLog
from crm_admin.pools.service import RESOURCE, usable_pools

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
    principal = customer.principal
    if principal.can(RESOURCE, "return"):
        in_pool = session.execute(select(Customer.pool_id).where(Customer.id == customer.id)).scalar()
        if in_pool is None and in_scope(session, Customer, customer.id, principal, "return", resource=RESOURCE):
            pools = [(p.id, p.name) for p in usable_pools(session, principal, "return")]
            if pools:
                sections.append(Section(FORMS, "pools/360_return.html", {"pools": pools}))
    return Contribution(sections=sections, timeline=timeline)


POOL_LOG = register(RecordKind(
    key="pool_log", model=CustomerPoolLog, label=KIND, unit=_("条公海记录"), order=65, page=_page,
    blocks_delete=False,
))
