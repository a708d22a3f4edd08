"""Follow-up records (联系记录)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.contacts.models import Linkman
from crm_admin.customers.models import CarriesCustomerManager, Customer, OfCustomer
from crm_admin.db import Base, Timestamped


class FollowUp(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "follow_up"
    __resource__ = "follow_up"

    linkman_id: Mapped[int | None] = mapped_column(ForeignKey("linkman.id"))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("sales_opportunity.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    method: Mapped[str] = mapped_column(String(64), info={"dict": "follow_up_method"})
    content: Mapped[str] = mapped_column(Text)
    contacted_at: Mapped[dt.datetime]
    next_follow_up_at: Mapped[dt.datetime | None]

    customer: Mapped[Customer] = relationship(lazy="raise")
    linkman: Mapped[Linkman | None] = relationship(lazy="raise")
    manager: Mapped[SysUser | None] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_follow_up_customer_id_contacted_at", "customer_id", "contacted_at"),
        Index("ix_follow_up_opportunity_id", "opportunity_id"),
        # migration 0006 (performance): due follow-ups of a scope, of one manager and of everyone, each
        # checked against a later contact of the same customer without reading the rows
        Index("ix_follow_up_customer_id_next_follow_up_at_contacted_at", "customer_id", "next_follow_up_at",
              "contacted_at"),
        Index("ix_follow_up_manager_id_next_follow_up_at_covering", "manager_id", "next_follow_up_at",
              "customer_id", "contacted_at"),
        Index("ix_follow_up_next_follow_up_at_customer_id_contacted_at", "next_follow_up_at", "customer_id",
              "contacted_at"),
        # migration 0014: due follow-ups of a team, one range per manager of the customers
        Index("ix_follow_up_customer_manager_id_next_follow_up_at_covering", "customer_manager_id",
              "next_follow_up_at", "customer_id", "contacted_at"),
        # migration 0017: the list, newest contact first, for everyone and per manager of a team
        Index("ix_follow_up_contacted_at", "contacted_at"),
        Index("ix_follow_up_customer_manager_id_contacted_at", "customer_manager_id", "contacted_at"),
    )
