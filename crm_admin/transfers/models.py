"""Customer transfer records (客户转移)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, ForeignKey, Index, String, or_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.core.customer_records import reaches_customer_rows
from crm_admin.core.scope import UserIds, kind_clause, owned_by, register_scope_kind
from crm_admin.customers.models import Customer, OfCustomer
from crm_admin.db import Base, Timestamped, utcnow


class CustomerTransfer(OfCustomer, Timestamped, Base):
    __tablename__ = "customer_transfer"
    __resource__ = "transfer"
    __scope__ = "transfer"

    old_manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    # None: the customer went to a public pool (crm_admin/pools)
    new_manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    reason: Mapped[str] = mapped_column(String(500))
    transferred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))

    customer: Mapped[Customer] = relationship(lazy="raise")
    old_manager: Mapped[SysUser | None] = relationship(foreign_keys=[old_manager_id], lazy="raise")
    new_manager: Mapped[SysUser | None] = relationship(foreign_keys=[new_manager_id], lazy="raise")
    operator: Mapped[SysUser | None] = relationship(foreign_keys=[operator_id], lazy="raise")

    __table_args__ = (
        Index("ix_customer_transfer_customer_id_transferred_at", "customer_id", "transferred_at"),
        Index("ix_customer_transfer_transferred_at", "transferred_at"),
    )


def _reached_by_customer_or_its_people(model: type, ids: UserIds) -> ColumnElement[bool]:
    """A transfer is seen by whoever sees its customer and by the people in it: the manager who handed
    the customer over (who no longer sees the customer), the one who received it, and the operator."""
    t = CustomerTransfer
    return or_(kind_clause("customer", model, ids), owned_by(t.old_manager_id, ids),
               owned_by(t.new_manager_id, ids), owned_by(t.operator_id, ids))


register_scope_kind("transfer", _reached_by_customer_or_its_people)
reaches_customer_rows("transfer")
