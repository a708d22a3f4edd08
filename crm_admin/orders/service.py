"""Orders (交易历史): numbers, amounts computed from the items (never typed), last order time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.core import limits
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import day_start_utc
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped
from crm_admin.customers.models import Customer
from crm_admin.customers.service import _local_month, allocate_sequence, clean, touch_last_order
from crm_admin.orders.models import ORDER_STATUSES, CustomerOrder, OrderItem
from crm_admin.products.models import Product

STATUS_LABELS = Labels({"draft": "草稿", "confirmed": "已确认", "completed": "已完成", "cancelled": "已取消"})
MAX_QUANTITY = 10_000_000


def next_order_no(session: Session) -> str:
    month = _local_month()
    n = allocate_sequence(session.connection(), f"seq:order:{month}")
    return f"O{month}{n:05d}"


def validate_order(obj: CustomerOrder) -> None:
    obj.status = obj.status or "confirmed"
    if obj.status not in ORDER_STATUSES:
        raise UserError("订单状态无效。", field="status")
    if obj.order_date is None:
        obj.order_date = dt.date.today()
    if obj.order_date > dt.date.today() + dt.timedelta(days=366):
        raise UserError("下单日期不合理。", field="order_date")
    obj.remark = clean(obj.remark)


def validate_item(session: Session, item: OrderItem) -> None:
    if item.product_id is None:
        raise UserError("请选择产品。", field="product")
    product = session.get(Product, item.product_id)
    if product is None:
        raise UserError("产品不存在。", field="product")
    quantity = limits.parse_integer(item.quantity, OrderItem, "quantity", "数量")
    if quantity is None or not 0 < quantity <= MAX_QUANTITY:
        raise UserError(f"数量必须是 1 ~ {MAX_QUANTITY:,} 之间的整数。", field="quantity")
    item.quantity = quantity
    if item.unit_price in (None, ""):
        item.unit_price = product.price
    price = limits.parse_decimal(item.unit_price, OrderItem, "unit_price", "单价")
    item.unit_price = (price or Decimal(0)).quantize(Decimal("0.01"))


def order_local_time(day: dt.date) -> dt.datetime:
    return day_start_utc(day)


def recompute_amount(session: Session, order_id: int, *, excluding_item: int | None = None) -> Decimal:
    """The order's amount is the sum of its lines (quantity × unit price), in SQL, in Decimal."""
    stmt = select(OrderItem.quantity, OrderItem.unit_price).where(OrderItem.order_id == order_id)
    if excluding_item is not None:
        stmt = stmt.where(OrderItem.id != excluding_item)
    total = sum((Decimal(q) * Decimal(p) for q, p in session.execute(stmt)), Decimal("0"))
    # each line may fit while the sum does not: the order's amount column decides
    problem = limits.model_limits(CustomerOrder)["amount"][1].problem(total, "订单金额")
    if problem:
        raise UserError(f"{problem.rstrip('。')}:该订单各明细的数量 × 单价合计为 {total:,.2f},"
                        "请减少数量、单价或拆分为多个订单。", field="quantity")
    total = total.quantize(Decimal("0.01"))
    order = session.get(CustomerOrder, order_id)
    if order is not None and order.amount != total:
        order.amount = total
    return total


def after_order_saved(session: Session, order: CustomerOrder) -> None:
    if order.status != "cancelled":
        touch_last_order(session, order.customer_id, order_local_time(order.order_date))


def create_order(session: Session, principal: Principal, *, customer_id: int, items: list[dict[str, Any]],
                 order_date: dt.date | None = None, status: str = "confirmed", remark: str | None = None) -> CustomerOrder:
    customer = session.execute(
        scoped(select(Customer).where(Customer.id == customer_id), Customer, principal, "create", resource="order")
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound("客户不存在或您无权访问。")
    if not items:
        raise UserError("订单至少需要一个明细。")
    order = CustomerOrder(customer_id=customer_id, order_date=order_date, status=status, remark=remark,
                          manager_id=customer.manager_id or principal.id, amount=Decimal("0.00"))
    validate_order(order)
    order.order_no = next_order_no(session)
    session.add(order)
    session.flush()
    for data in items:
        item = OrderItem(order_id=order.id, product_id=data.get("product_id"), quantity=data.get("quantity", 1),
                         unit_price=data.get("unit_price"))
        validate_item(session, item)
        session.add(item)
    session.flush()
    recompute_amount(session, order.id)
    after_order_saved(session, order)
    session.flush()
    return order
