"""Deletes that can be undone: before a delete path removes a record, it hands the record here so that
a copy may be kept (the recycle bin, 回收站).

The delete paths live in the shared base view (SQLAdmin's delete, single and bulk) and in the customer
module (the explicit cascade delete of the 360° page); the bin itself is a business module that
registers what it keeps (``on_delete``) in its ``recycling.py``. Neither imports the other: this module
is the seam, found by ``load_all`` as ``core.customer_records`` finds the modules' ``records.py``.

A keeper runs inside the caller's transaction, before anything is deleted, and never commits: the copy
and the delete are one unit of work (a delete refused later — a row still referenced — keeps no copy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core import discovery

# (session, the ORM object about to be deleted) → nothing; a keeper ignores what it does not keep
Keeper = Callable[[Session, Any], None]
_keepers: list[Keeper] = []

load_all = discovery.once("recycling")


def on_delete(keeper: Keeper) -> Keeper:
    """Register what keeps a copy of a record about to be deleted (one keeper per process)."""
    _keepers[:] = [keeper]
    return keeper


def before_delete(session: Session, obj: Any) -> None:
    """``obj`` is about to be deleted (with whatever its delete path removes with it): keep a copy."""
    load_all()
    for keeper in _keepers:
        keeper(session, obj)
