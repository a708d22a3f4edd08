"""Contacts (联系人): many per customer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.core import masking, search
from crm_admin.customers.models import CarriesCustomerManager, Customer, OfCustomer
from crm_admin.db import Base, Timestamped


class Linkman(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "linkman"
    __resource__ = "linkman"

    name: Mapped[str] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(8))
    position: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    mobile: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(128))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    # month * 100 + day of the birthday, kept in step with ``birthday`` so the daily scan uses an index.
    birthday_md: Mapped[int | None] = mapped_column(SmallInteger)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    remark: Mapped[str | None] = mapped_column(Text)

    customer: Mapped[Customer] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_linkman_customer_id", "customer_id"),
        Index("ix_linkman_birthday_md", "birthday_md"),
        # migration 0017: the list (by id) per manager of a team
        Index("ix_linkman_customer_manager_id", "customer_manager_id"),
        # migration 0023: a manager's contacts celebrating this week (the care workbench), a few ranges
        Index("ix_linkman_customer_manager_id_birthday_md", "customer_manager_id", "birthday_md"),
    )

    def __str__(self) -> str:
        return self.name


# found by any part of the name, its pinyin, and any 4+ digits (core/search.py)
search.register(Linkman, kind=2, names=("name",), digits=("mobile", "phone"))

# a contact's personal data, shown masked as its customer's is (core/masking.py)
masking.register_personal(Linkman, customer_key="customer_id", phone=masking.mask_phone,
                          mobile=masking.mask_phone, email=masking.mask_email)
