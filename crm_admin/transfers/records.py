"""Transfer history as records of a customer: each change of manager on the 360° timeline."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.core.customer_records import (
    Contribution,
    RecordKind,
    TimelineEntry,
    VisibleCustomer,
    _,
    of_customer,
    register,
)
from crm_admin.transfers.models import CustomerTransfer

KIND = _("客户转移")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    transfers = session.execute(
        of_customer(select(CustomerTransfer), CustomerTransfer, customer)
        .order_by(CustomerTransfer.transferred_at.desc()).limit(limit)
    ).scalars()
    return Contribution(timeline=[
        TimelineEntry(at=t.transferred_at, kind=KIND, icon="fa-right-left", title="转移客户经理",
                      text=t.reason or "", user_id=t.operator_id, handed=(t.old_manager_id, t.new_manager_id))
        for t in transfers
    ])


TRANSFER = register(RecordKind(
    key="transfer", model=CustomerTransfer, label=KIND, unit=_("条转移记录"), order=60, page=_page,
))
