"""Orders (交易历史): one numbering scheme, an order saved with its lines in one go, amounts computed
from the lines in Decimal (never typed), the customer's last order time.

An order line's 折扣 (``discount``) is what a Chinese buyer says: the percentage of the unit price paid,
95 = 95折, 100 (or blank) = no discount. A line's total is quantity × unit price × discount / 100,
rounded half up to the fen; the order's amount is the sum of its line totals. The order form's
script (static/js/order-form.js) shows the same arithmetic as the user types; the server's is the one
that counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from crm_admin.core import limits
from crm_admin.core.errors import Conflict, NotFound, UserError
from crm_admin.core.formatting import day_start_utc
from crm_admin.core.i18n import Labels
from crm_admin.core.params import parse_id, parse_int, read_date
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope, scoped
from crm_admin.customers.models import Customer
from crm_admin.customers.service import _local_month, allocate_sequence, clean, touch_last_order
from crm_admin.db import utcnow
from crm_admin.orders.models import NO_DISCOUNT, ORDER_STATUSES, CustomerOrder, OrderItem
from crm_admin.products.models import Product

STATUS_LABELS = Labels({"draft": "草稿", "confirmed": "已确认", "completed": "已完成", "cancelled": "已取消"})
MAX_QUANTITY = 10_000_000
MAX_LINES = 200
CENT = Decimal("0.01")
HUNDRED = Decimal(100)
STALE_MESSAGE = "保存失败:该订单已被他人修改,请刷新页面查看最新内容后再修改(您填写的内容仍保留在下方)。"


# ----- numbers -------------------------------------------------------------------------------------

def format_order_no(month: str, n: int) -> str:
    """The one numbering scheme: ``O`` + year and month (YYYYMM) + the month's running number
    (``O20261100042``)."""
    return f"O{month}{n:05d}"


def order_no_key(month: str) -> str:
    """The ``sys_meta`` counter of a month's order numbers."""
    return f"seq:order:{month}"


def next_order_no(session: Session, month: str | None = None) -> str:
    """The next number of ``month`` (YYYYMM; by default this month in the company's time zone)."""
    month = month or _local_month()
    return format_order_no(month, allocate_sequence(session.connection(), order_no_key(month)))


# ----- arithmetic ----------------------------------------------------------------------------------

def line_total(quantity: int, unit_price: Decimal, discount: Decimal = NO_DISCOUNT) -> Decimal:
    """quantity × unit price × discount %, to the fen (half up), in Decimal."""
    return (Decimal(quantity) * unit_price * discount / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)


def order_total(lines: Iterable[OrderItem]) -> Decimal:
    return sum((line_total(i.quantity, i.unit_price, i.discount) for i in lines), Decimal("0.00"))


def format_discount(discount: Decimal | None) -> str:
    """``95`` for 95.00, ``97.5`` for 97.50: how the form and the pages show a discount."""
    value = NO_DISCOUNT if discount is None else discount
    return f"{value.normalize():f}"


# ----- header checks (also used by the import and the service callers) ------------------------------

def validate_order(obj: CustomerOrder) -> None:
    obj.status = obj.status or "confirmed"
    if obj.status not in ORDER_STATUSES:
        raise UserError("订单状态无效。", field="status")
    if obj.order_date is None:
        obj.order_date = dt.date.today()
    if obj.order_date > dt.date.today() + dt.timedelta(days=366):
        raise UserError("下单日期不合理。", field="order_date")
    obj.remark = clean(obj.remark)


def order_local_time(day: dt.date) -> dt.datetime:
    return day_start_utc(day)


def after_order_saved(session: Session, order: CustomerOrder) -> None:
    if order.status != "cancelled":
        touch_last_order(session, order.customer_id, order_local_time(order.order_date))


# ----- the order form: what was typed, and the one save -------------------------------------------

@dataclass
class LineInput:
    """One line as typed (text, so that a refused form is shown again exactly as it was)."""

    item_id: str = ""
    product_id: str = ""
    quantity: str = ""
    unit_price: str = ""
    discount: str = ""
    product_label: str = ""  # what the picker showed, to show it again
    list_price: str = ""  # the product's list price: what a blank unit price stands for

    def is_blank(self) -> bool:
        """A line left empty (a new row's default quantity alone does not make it a line)."""
        return not any(v.strip() for v in (self.item_id, self.product_id, self.unit_price, self.discount))


@dataclass
class OrderInput:
    customer_id: str = ""
    customer_label: str = ""
    order_date: str = ""
    status: str = "confirmed"
    remark: str = ""
    version: str = ""
    lines: list[LineInput] = field(default_factory=list)


@dataclass
class _Line:
    item: OrderItem | None
    product: Product
    quantity: int
    unit_price: Decimal
    discount: Decimal


def _order_for_edit(session: Session, principal: Principal, order_id: int) -> CustomerOrder:
    order = session.execute(
        scoped(select(CustomerOrder).where(CustomerOrder.id == order_id), CustomerOrder, principal, "edit")
        .options(selectinload(CustomerOrder.items))
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("订单不存在或您无权访问。")
    return order


def _customer(session: Session, principal: Principal, data: OrderInput, action: str) -> Customer:
    customer_id = parse_id(data.customer_id)
    if customer_id is None:
        raise UserError("请选择客户。", field="customer")
    customer = session.execute(
        scoped(select(Customer).where(Customer.id == customer_id), Customer, principal, action, resource="order")
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound("所选客户不存在或不在您的数据范围内。")
    return customer


def _number(text: str, key: str, label: str, where: str) -> Decimal | None:
    try:
        return limits.parse_decimal(text, OrderItem, key, label)
    except UserError as exc:
        raise UserError(f"{where}{exc.message}", field=key) from None


def _line(session: Session, n: int, typed: LineInput, existing: dict[int, OrderItem],
          taken: set[int]) -> _Line:
    where = f"第 {n} 行明细:"
    item: OrderItem | None = None
    if typed.item_id.strip():
        item_id = parse_id(typed.item_id)
        item = existing.get(item_id) if item_id is not None else None
        if item is None or item.id in taken:
            raise UserError(f"{where}该明细不属于本订单,请刷新页面后重新填写。", field="item_id")
        taken.add(item.id)
    product_id = parse_id(typed.product_id)
    if product_id is None:
        raise UserError(f"{where}请选择产品。", field="product_id")
    product = session.get(Product, product_id)
    # a discontinued product stays on the lines that already have it; new lines take active ones only
    if product is None or not (product.is_active or (item is not None and item.product_id == product_id)):
        raise UserError(f"{where}所选产品不存在或已停用,请重新选择。", field="product_id")
    quantity_number = _number(typed.quantity, "quantity", "数量", where)
    if quantity_number is None or quantity_number != quantity_number.to_integral_value() \
            or not 0 < quantity_number <= MAX_QUANTITY:
        raise UserError(f"{where}数量必须是 1 ~ {MAX_QUANTITY:,} 之间的整数。", field="quantity")
    # a blank price is the product's list price (the form says so), never a ¥0.00 line
    price = _number(typed.unit_price, "unit_price", "单价", where)
    unit_price = (product.price if price is None else price).quantize(CENT)
    discount = _number(typed.discount, "discount", "折扣", where)
    return _Line(item, product, int(quantity_number), unit_price,
                 NO_DISCOUNT if discount is None else discount.quantize(CENT))


def _check_amount(total: Decimal) -> None:
    # each line may fit while the sum does not: the order's amount column decides
    problem = limits.model_limits(CustomerOrder)["amount"][1].problem(total, "订单金额")
    if problem:
        raise UserError(f"{problem.rstrip('。')}:该订单各明细合计为 {total:,.2f},"
                        "请减少数量、单价或拆分为多个订单。", field="quantity")


def _apply_line(line: _Line, item: OrderItem) -> None:
    """Set only what changed: the audit records a line's real changes, nothing for an untouched one."""
    for key, value in (("product_id", line.product.id), ("quantity", line.quantity),
                       ("unit_price", line.unit_price), ("discount", line.discount)):
        if getattr(item, key) != value:
            setattr(item, key, value)


def save_order(session: Session, principal: Principal, data: OrderInput, *,
               order_id: int | None = None) -> CustomerOrder:
    """Create (``order_id`` None) or edit an order with all its lines, in the caller's transaction.

    Everything is checked before anything is written: the customer within the user's scope, the order
    within the scope of ``edit``, every posted line id one of this order's lines, every product existing
    (and active for a new choice), the numbers within their columns, the version the form was opened at.
    Lines not posted again are removed. The amount is the sum of the line totals.
    """
    order = _order_for_edit(session, principal, order_id) if order_id is not None else None
    if order is not None and data.version.strip() and parse_int(data.version) != order.version:
        raise Conflict(STALE_MESSAGE)
    customer = _customer(session, principal, data, "create" if order is None else "edit")
    day = read_date(data.order_date, field="order_date", message="下单日期格式不正确,应为 YYYY-MM-DD。")
    header = CustomerOrder(order_date=day, status=data.status.strip(), remark=data.remark)
    validate_order(header)
    limits.check_value(CustomerOrder, "remark", header.remark, "备注")
    typed = [line for line in data.lines if not line.is_blank()]
    if not typed:
        raise UserError("订单至少需要一条明细:请添加产品。", field="product_id")
    if len(typed) > MAX_LINES:
        raise UserError(f"一个订单最多 {MAX_LINES} 条明细,请拆分为多个订单。")
    existing = {item.id: item for item in (order.items if order is not None else [])}
    taken: set[int] = set()
    lines = [_line(session, n, line, existing, taken) for n, line in enumerate(typed, start=1)]
    total = sum((line_total(x.quantity, x.unit_price, x.discount) for x in lines), Decimal("0.00"))
    _check_amount(total)

    # ----- all checked: write --------------------------------------------------------------------
    if order is None:
        order = CustomerOrder(order_no=next_order_no(session), customer_id=customer.id,
                              manager_id=customer.manager_id or principal.id, amount=total)
        session.add(order)
    elif order.customer_id != customer.id:
        order.customer_id, order.manager_id = customer.id, customer.manager_id or order.manager_id
    for key in ("order_date", "status", "remark"):
        if getattr(order, key) != getattr(header, key):
            setattr(order, key, getattr(header, key))
    if order.amount != total:
        order.amount = total
    if order.id is not None:
        order.updated_at = utcnow()  # the row is written (its version moves) even when only lines changed
    session.flush()
    for item in existing.values():
        if item.id not in taken:
            session.delete(item)
    for line in lines:
        if line.item is None:
            line.item = OrderItem(order_id=order.id)
            session.add(line.item)
        _apply_line(line, line.item)
    session.flush()
    after_order_saved(session, order)
    if not in_scope(session, CustomerOrder, order.id, principal, "edit" if order_id else "create"):
        raise UserError("保存后的订单将超出您的数据范围,操作已取消。")
    return order


def create_order(session: Session, principal: Principal, *, customer_id: int, items: list[dict[str, Any]],
                 order_date: dt.date | None = None, status: str = "confirmed",
                 remark: str | None = None) -> CustomerOrder:
    """An order from code (tests, imports): the same checks as the form."""
    def text(value: Any) -> str:
        return "" if value is None else str(value)

    data = OrderInput(
        customer_id=str(customer_id), order_date=order_date.isoformat() if order_date else "", status=status,
        remark=remark or "",
        lines=[LineInput(product_id=text(i.get("product_id")), quantity=text(i.get("quantity", 1)),
                         unit_price=text(i.get("unit_price")), discount=text(i.get("discount")))
               for i in items],
    )
    return save_order(session, principal, data)


# ----- what the form and the pages show -----------------------------------------------------------

def product_label(product: Product) -> str:
    spec = f" {product.spec}" if product.spec else ""
    return f"{product.name}{spec}({product.code})"


def search_products(session: Session, term: str, limit: int = 20) -> list[dict[str, Any]]:
    """Active products whose name or code contains ``term``, with the list price a new line takes."""
    stmt = select(Product).where(Product.is_active.is_(True))
    term = term.strip()[:64]
    if term:
        like = f"%{term}%"
        stmt = stmt.where(or_(Product.name.like(like), Product.code.like(like)))
    rows = session.execute(stmt.order_by(Product.name, Product.id).limit(limit)).scalars()
    return [{"id": p.id, "text": product_label(p), "price": f"{p.price:.2f}"} for p in rows]


def form_of(order: CustomerOrder, customer: Customer, products: dict[int, Product]) -> OrderInput:
    """An order as its form shows it (``order.items`` loaded)."""
    return OrderInput(
        customer_id=str(order.customer_id), customer_label=customer.name,
        order_date=order.order_date.isoformat(), status=order.status, remark=order.remark or "",
        version=str(order.version),
        lines=[LineInput(item_id=str(i.id), product_id=str(i.product_id), quantity=str(i.quantity),
                         unit_price=f"{i.unit_price:.2f}", discount=format_discount(i.discount),
                         product_label=product_label(products[i.product_id]) if i.product_id in products else "",
                         list_price=f"{products[i.product_id].price:.2f}" if i.product_id in products else "")
               for i in sorted(order.items, key=lambda i: i.id)],
    )


def load_form(session: Session, principal: Principal, order_id: int) -> tuple[CustomerOrder, OrderInput]:
    order = _order_for_edit(session, principal, order_id)
    customer = session.get(Customer, order.customer_id)
    if customer is None:  # pragma: no cover - a foreign key
        raise NotFound("订单不存在或您无权访问。")
    products = _products(session, {i.product_id for i in order.items})
    return order, form_of(order, customer, products)


def _products(session: Session, ids: set[int]) -> dict[int, Product]:
    if not ids:
        return {}
    return {p.id: p for p in session.execute(select(Product).where(Product.id.in_(ids))).scalars()}


def labels_for(session: Session, principal: Principal, data: OrderInput) -> None:
    """Fill in the picker labels of a form shown again (only for rows the user may see)."""
    customer_id = parse_id(data.customer_id)
    if customer_id is not None:
        customer = session.execute(
            scoped(select(Customer).where(Customer.id == customer_id), Customer, principal, "view")
        ).scalar_one_or_none()
        data.customer_label = customer.name if customer is not None else ""
    ids = {pid for line in data.lines if (pid := parse_id(line.product_id)) is not None}
    products = _products(session, ids)
    for line in data.lines:
        pid = parse_id(line.product_id)
        line.product_label = product_label(products[pid]) if pid in products else ""
        line.list_price = f"{products[pid].price:.2f}" if pid in products else ""


@dataclass
class ShownLine:
    product: str
    quantity: int
    unit_price: Decimal
    discount: str
    total: Decimal


def shown_lines(order: CustomerOrder) -> list[ShownLine]:
    """The lines of an order for its details page (``order.items`` and their products loaded)."""
    return [ShownLine(product=product_label(i.product), quantity=i.quantity, unit_price=i.unit_price,
                      discount=format_discount(i.discount), total=line_total(i.quantity, i.unit_price, i.discount))
            for i in sorted(order.items, key=lambda i: i.id)]
