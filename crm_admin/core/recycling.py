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

from collections.abc import Callable, Mapping, Sequence
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


# (session, table name → ids of the rows a restore has just put back) → nothing: a module mends what
# the rows, put back as they were, would break now in its own table (a second primary contact)
Mender = Callable[[Session, Mapping[str, Sequence[int]]], None]
_menders: list[Mender] = []


def on_restore(mender: Mender) -> Mender:
    """Register what a module checks in its rows after a restore, in the restore's transaction."""
    if mender not in _menders:
        _menders.append(mender)
    return mender


def after_restore(session: Session, restored: Mapping[str, Sequence[int]]) -> None:
    """Rows were put back (``restored``: table → ids): let the modules mend what they must."""
    load_all()
    for mender in _menders:
        mender(session, restored)
