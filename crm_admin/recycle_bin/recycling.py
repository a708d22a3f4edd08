"""What the recycle bin registers with the delete paths (``core.recycling``): a copy of every deleted
customer, contact, opportunity and order, with what goes with it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core import recycling
from crm_admin.recycle_bin import service


@recycling.on_delete
def keep_deleted(session: Session, obj: Any) -> None:
    service.keep(session, obj)
