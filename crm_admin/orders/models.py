"""Transaction history (交易历史): orders and their items."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.core.scope import kind_clause, register_scope_kind
from crm_admin.customers.models import CarriesCustomerManager, Customer
from crm_admin.db import ZERO, Base, Timestamped
from crm_admin.products.models import Product

ORDER_STATUSES = ("draft", "confirmed", "completed", "cancelled")
NO_DISCOUNT = Decimal("100.00")


class CustomerOrder(CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "customer_order"
    __resource__ = "order"
    __scope__ = "customer"

    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    order_date: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(default=ZERO, info={"min": 0})
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    remark: Mapped[str | None] = mapped_column(Text)
    # the order and its lines are saved together; a save from an older copy of the form is refused
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    customer: Mapped[Customer] = relationship(lazy="raise")
    manager: Mapped[SysUser | None] = relationship(lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", lazy="raise"
    )

    __table_args__ = (
        Index("ix_customer_order_customer_id_order_date", "customer_id", "order_date"),
        Index("ix_customer_order_order_date_status_amount", "order_date", "status", "amount"),
        # migration 0017: the list (newest order first) per manager of a team
        Index("ix_customer_order_customer_manager_id_order_date", "customer_manager_id", "order_date"),
    )
    __mapper_args__ = {"version_id_col": version}

    def __str__(self) -> str:
        return self.order_no


class OrderItem(Timestamped, Base):
    __tablename__ = "order_item"
    __resource__ = "order"
    __scope__ = "order"

    order_id: Mapped[int] = mapped_column(ForeignKey("customer_order.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1, info={"min": 1})
    unit_price: Mapped[Decimal] = mapped_column(default=ZERO, info={"min": 0})
    # 折扣 as a Chinese buyer says it: the percentage of the unit price paid (95 = 95折, 100 = none)
    discount: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=NO_DISCOUNT, server_default=text("100"),
                                              info={"min": 0, "max": 100})

    order: Mapped[CustomerOrder] = relationship(back_populates="items", lazy="raise")
    product: Mapped[Product] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_order_item_order_id", "order_id"),
        Index("ix_order_item_product_id", "product_id"),
    )


def _reached_through_order(model: type, ids: frozenset[int] | None) -> ColumnElement[bool]:
    """An order's lines (``order_id``) are reached through the order's customer."""
    orders = select(CustomerOrder.id).where(kind_clause("customer", CustomerOrder, ids))
    return model.order_id.in_(orders)  # type: ignore[attr-defined]


register_scope_kind("order", _reached_through_order)
