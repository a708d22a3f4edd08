"""Customer master record (客户档案)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.core import search
from crm_admin.core.i18n import Labels
from crm_admin.core.scope import owned_by, register_scope_kind
from crm_admin.db import Base, Timestamped

CUSTOMER_STATUSES = ("potential", "active", "at_risk", "lost")
STATUS_LABELS = Labels({"potential": "潜在客户", "active": "成交客户", "at_risk": "流失风险", "lost": "已流失"})


class Customer(Timestamped, Base):
    __tablename__ = "customer"
    __resource__ = "customer"
    __scope__ = "owner"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    # Normalised name (width, case, spaces, legal-form suffixes folded) for duplicate detection.
    name_key: Mapped[str] = mapped_column(String(128), default="", index=True)
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    industry: Mapped[str | None] = mapped_column(String(64), info={"dict": "industry"})
    source: Mapped[str | None] = mapped_column(String(64), info={"dict": "customer_source"})
    level: Mapped[str | None] = mapped_column(String(64), info={"dict": "customer_level"})
    status: Mapped[str] = mapped_column(String(16), default="potential")
    region: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(128))
    website: Mapped[str | None] = mapped_column(String(255))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    last_contact_at: Mapped[dt.datetime | None]
    last_order_at: Mapped[dt.datetime | None]
    remark: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)

    manager: Mapped[SysUser | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_customer_manager_id_created_at", "manager_id", "created_at"),
        Index("ix_customer_manager_id_name", "manager_id", "name"),
        Index("ix_customer_name", "name"),
        Index("ix_customer_created_at", "created_at"),
        Index("ix_customer_last_contact_at", "last_contact_at"),
        Index("ix_customer_status", "status"),
        Index("ix_customer_level", "level"),
        # migration 0005 (performance): the combined query and the dashboard's at-risk list
        Index("ix_customer_industry_level_status_created_at", "industry", "level", "status", "created_at"),
        Index("ix_customer_manager_id_status_last_contact_at", "manager_id", "status", "last_contact_at"),
    )

    def __str__(self) -> str:
        return self.name


class SavedQuery(Timestamped, Base):
    """A user's named combined query (the list URL's query string), e.g. "我的 A 级 30 天未联系"."""

    __tablename__ = "saved_query"
    __resource__ = "saved_query"

    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"))
    resource: Mapped[str] = mapped_column(String(64), default="customer")
    name: Mapped[str] = mapped_column(String(64))
    query_string: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("user_id", "resource", "name"),)

    def __str__(self) -> str:
        return self.name


def _reached_through_customer(model: type, ids: frozenset[int] | None) -> ColumnElement[bool]:
    """Rows hanging off a customer (``customer_id``) are reached through the customer's manager."""
    return model.customer_id.in_(select(Customer.id).where(owned_by(Customer.manager_id, ids)))  # type: ignore[attr-defined]


register_scope_kind("customer", _reached_through_customer)


# found by any part of the name, its pinyin, and any 4+ digits (core/search.py)
search.register(Customer, kind=1, names=("name",), digits=("phone", "code"), prefixes=("code", "credit_code"))


class OfCustomer:
    """A record hanging off a customer (its contacts, follow-ups, care, opportunities, alerts …): the
    ``customer_id`` it hangs by (the table's first column) and the customer's scope — whoever sees the
    customer sees its records (a model may widen it with a kind of its own). Each model declares its
    ``customer`` relationship itself, first among its relations, as the pages list them."""

    __scope__ = "customer"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), sort_order=-1)
