"""Data dictionary: types (customer source, industry, …) and their ordered items."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, Timestamped


class DictType(Timestamped, Base):
    __tablename__ = "dict_type"
    __resource__ = "dict"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    remark: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    def __str__(self) -> str:
        return self.name


class DictItem(Timestamped, Base):
    __tablename__ = "dict_item"
    __resource__ = "dict"

    type_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("dict_type.code", onupdate="CASCADE"), index=True
    )
    value: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64))
    label_en: Mapped[str | None] = mapped_column(String(64))
    sort: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        UniqueConstraint("type_code", "value"),
        UniqueConstraint("type_code", "label"),
    )

    def __str__(self) -> str:
        return self.label
