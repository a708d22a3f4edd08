"""Transfer history as records of a customer: each change of manager on the 360° timeline."""

from __future__ import annotations

from crm_admin.core.customer_records import (
    RecordKind,
    TimelineEntry,
    _,
    on_manager_change,
    register,
    timeline_page,
)
from crm_admin.transfers.models import CustomerTransfer
from crm_admin.transfers.service import reassign_in_form

KIND = _("客户转移")


def _entry(t: CustomerTransfer) -> TimelineEntry:
    return TimelineEntry(at=t.transferred_at, kind=KIND, icon="fa-right-left", title="转移客户经理",
                         text=t.reason or "", user_id=t.operator_id, handed=(t.old_manager_id, t.new_manager_id))


TRANSFER = register(RecordKind(
    key="transfer", model=CustomerTransfer, label=KIND, unit=_("条转移记录"), order=60,
    page=timeline_page(CustomerTransfer, CustomerTransfer.transferred_at.desc(), entry=_entry),
))

# a new manager chosen in the customer form is handed over like a transfer
on_manager_change(reassign_in_form)
