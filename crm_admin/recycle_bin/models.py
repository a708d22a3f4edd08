"""The recycle bin (回收站): a deleted customer, contact, opportunity or order, kept for a number of days
with every row that went with it, so that it can be put back exactly as it was."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, Timestamped


class RecycleEntry(Timestamped, Base):
    """One deleted record and what went with it (``payload``: the rows of each table, parents first).

    ``manager_id`` is the manager of the record's customer when it was deleted: the entry is within the
    scope of whoever had that customer in theirs (``__scope__ = "owner"``)."""

    __tablename__ = "recycle_bin"
    __resource__ = "recycle_bin"
    __scope__ = "owner"

    resource: Mapped[str] = mapped_column(String(32))  # customer / linkman / opportunity / order
    record_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(255), default="")
    customer_id: Mapped[int | None] = mapped_column(Integer)
    customer_name: Mapped[str | None] = mapped_column(String(128))
    manager_id: Mapped[int | None] = mapped_column(Integer)
    deleted_by: Mapped[int | None] = mapped_column(Integer)
    deleted_by_name: Mapped[str] = mapped_column(String(64), default="")
    deleted_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[str] = mapped_column(String(500), default="")  # "连同 3 个联系人、2 条联系记录"
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_recycle_bin_manager_id_deleted_at", "manager_id", "deleted_at"),
        Index("ix_recycle_bin_resource_deleted_at", "resource", "deleted_at"),
        Index("ix_recycle_bin_deleted_at", "deleted_at"),
        Index("ix_recycle_bin_expires_at", "expires_at"),
        Index("ix_recycle_bin_resource_record_id", "resource", "record_id"),
    )

    def __str__(self) -> str:
        return self.label
