"""Product catalogue (产品目录)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.core import search
from crm_admin.db import ZERO, Base, Timestamped


class Product(Timestamped, Base):
    __tablename__ = "product"
    __resource__ = "product"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(64), info={"dict": "product_category"})
    spec: Mapped[str | None] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(16))
    price: Mapped[Decimal] = mapped_column(default=ZERO, info={"min": 0})
    stock: Mapped[int] = mapped_column(Integer, default=0, info={"min": 0})
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_product_name", "name"),
        Index("ix_product_category", "category"),
    )

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


# found by any part of the name, its pinyin, and any 4+ digits (core/search.py)
search.register(Product, kind=3, names=("name",), digits=("code",), prefixes=("code",))
