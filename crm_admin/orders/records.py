"""Orders as records of a customer: the 360° page's transaction history, its totals and timeline;
a cascade delete takes each order's items with it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_admin.core.customer_records import (
    MAIN,
    Contribution,
    Fact,
    RecordKind,
    Section,
    TimelineEntry,
    VisibleCustomer,
    _,
    latest_rows,
    of_customer,
    register,
)
from crm_admin.core.formatting import company_tz
from crm_admin.orders.models import CustomerOrder
from crm_admin.orders.service import STATUS_LABELS

KIND = _("订单")


def _page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    orders = latest_rows(session, CustomerOrder, customer, CustomerOrder.order_date.desc(), CustomerOrder.id.desc(),
                         limit=limit)
    count, total = session.execute(
        of_customer(select(func.count(), func.coalesce(func.sum(CustomerOrder.amount), 0)), CustomerOrder, customer)
        .where(CustomerOrder.status != "cancelled")
    ).one()
    total = Decimal(str(total)).quantize(Decimal("0.01"))
    timeline = [
        # an order has a date, not a time: noon local time keeps it on its day whatever the zone
        TimelineEntry(at=dt.datetime.combine(o.order_date, dt.time(12), tzinfo=company_tz()).astimezone(dt.UTC),
                      kind=KIND, icon="fa-file-invoice", title=o.order_no, text=f"¥{o.amount:,.2f}",
                      extra=STATUS_LABELS.get(o.status, o.status), user_id=o.manager_id)
        for o in orders
    ]
    return Contribution(
        sections=[Section(MAIN, "orders/360_orders.html",
                          {"orders": orders, "total": total, "status_labels": STATUS_LABELS})],
        timeline=timeline, facts=[Fact(KIND, int(count), _("笔"), total)],
    )


def _delete(session: Session, customer_id: int) -> int:
    orders = session.execute(select(CustomerOrder).where(CustomerOrder.customer_id == customer_id)).scalars().all()
    for order in orders:
        session.refresh(order, ["items"])  # the items go with their order (and are audited with it)
        session.delete(order)
    session.flush()
    return len(orders)


ORDER = register(RecordKind(
    key="order", model=CustomerOrder, label=KIND, unit=_("个订单"), order=40, page=_page, delete=_delete,
))
