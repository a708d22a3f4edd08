"""Records hanging off a customer: what each business module keeps per customer, registered by that module.

The customer module shows, merges, deletes and hands over a customer without knowing which modules
exist. Each module registers its kinds of record in its own ``records.py`` (contacts, follow-ups,
care, opportunities, orders, transfers, churn alerts …): the model, how it is named, what it adds to
the 360° page (sections, timeline entries, profile facts, actions), what a merge does with it, whether
its rows block a plain delete, how a cascade delete removes them, and what follows the customer's
manager on a transfer. A new module adds one registration and appears on every one of those paths.

This module sits below the business modules and imports none of them; ``load_all`` finds their
``records.py`` files by walking the package (as ``crm_admin/models.py`` finds their models), once per
process, the first time the registry is read (or explicitly at start-up).

Hooks run inside the caller's transaction and never commit. The 360° page's hooks get a
``VisibleCustomer``: a customer already checked through ``core.scope``, whose records are within the
same scope (``__scope__ = "customer"``), so they are read by ``customer_id`` alone — one check per page
instead of one scope sub-select per kind of record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.schema import sort_tables

from crm_admin.core import discovery
from crm_admin.core.principal import Principal

# 360° page slots a module's section may go into
SIDE = "side"  # the narrow column under the profile (contacts)
FORMS = "forms"  # the quick-entry forms above the tables (log a contact, new opportunity)
MAIN = "main"  # the wide column's tables (opportunities, orders)
SLOTS = (SIDE, FORMS, MAIN)


def _(text: str) -> str:
    """Marks a label for the English catalog (``scripts/extract_messages.py`` collects ``_("…")``);
    the label stays Chinese here and is translated where it is shown (``tr()`` in templates)."""
    return text


# ----- what a module contributes to the 360° page ------------------------------------------------

@dataclass(frozen=True)
class TimelineEntry:
    """One line of the customer's timeline ("客户动态")."""

    at: dt.datetime | None
    kind: str  # the badge: Chinese, translated when shown
    icon: str  # Font Awesome class
    title: str
    text: str = ""
    extra: str = ""
    user_id: int | None = None  # who did it; the page looks every name up in one query
    handed: tuple[int | None, int | None] | None = None  # (from, to) user ids: "张三 → 李四" before the text


@dataclass(frozen=True)
class Fact:
    """A figure of the profile card: "订单 12 笔,¥34,500.00"."""

    label: str
    count: int
    unit: str
    amount: Decimal | None = None


@dataclass(frozen=True)
class Section:
    """A block of the 360° page: ``template`` is included with ``section`` = ``data``."""

    slot: str
    template: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Contribution:
    sections: list[Section] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)


@dataclass(frozen=True)
class PageAction:
    """A form posted from the 360° page to ``/admin/customer/360/<id>/<slug>``; ``run`` does it in the
    caller's transaction (checking the scope itself) and raises UserError with a message when refused."""

    slug: str
    resource: str
    permission: str
    done: str  # shown after success
    run: Callable[[Session, Principal, int, Mapping[str, str]], object]


@dataclass(frozen=True)
class VisibleCustomer:
    """A customer ``principal`` may see. Made only where that was checked through ``core.scope`` (the
    360° page loads the customer with ``scoped``)."""

    id: int
    principal: Principal


# (session, the customer, how many timeline entries at most) → what the module shows
PageHook = Callable[[Session, VisibleCustomer, int], Contribution]
# (session, kept customer id, dropped customer id) → rows moved onto the kept customer
MergeHook = Callable[[Session, int, int], int]
# (session, customer id) → rows deleted (each through the ORM, so each gets its audit row)
DeleteHook = Callable[[Session, int], int]
# (session, customer ids, their manager, now) → rows handed to that manager
HandOverHook = Callable[[Session, list[int], int | None, dt.datetime], int]
# (session, user who leaves, now) → that user's open rows on customers managed by someone else, handed on
LeaverHook = Callable[[Session, int, dt.datetime], int]


@dataclass(frozen=True)
class HandOver:
    """What follows a customer's manager: on a transfer, a change in the customer form, a merge.

    ``key`` names the count in audit rows ("care_tasks"); ``unit`` reads after a number ("条待办关怀").
    """

    key: str
    unit: str
    move: HandOverHook
    leaver: LeaverHook | None = None


@dataclass(frozen=True)
class RecordKind:
    """One kind of record hanging off ``customer_id``."""

    key: str  # names the kind in audit rows: the merge lists what moved under it ("linkman")
    model: type  # an ORM model with ``customer_id``
    label: str  # "联系人"
    unit: str  # reads after a number in messages: "3 个联系人"
    order: int = 100  # position on the 360° page and in messages
    page: PageHook | None = None
    actions: tuple[PageAction, ...] = ()
    merge: MergeHook | None = None  # default: every row moves to the kept customer
    # True: a customer with such rows is deleted only by an explicit cascade; False: they go with it
    blocks_delete: bool = True
    delete: DeleteHook | None = None  # default: each row deleted through the ORM
    hand_over: tuple[HandOver, ...] = ()
    # what makes a row open work (an opportunity in progress), for "has open …" conditions
    open_rows: Any = None


# ----- the registry -------------------------------------------------------------------------------

_KINDS: dict[str, RecordKind] = {}


def register(kind: RecordKind) -> RecordKind:
    """Add ``kind`` (a module's ``records.py`` calls this at import). One registration per key."""
    if not hasattr(kind.model, "customer_id"):
        raise ValueError(f"{kind.model.__name__} has no customer_id: it does not hang off a customer")
    current = _KINDS.get(kind.key)
    if current is not None and current is not kind:
        raise ValueError(f"customer record kind {kind.key!r} is registered twice")
    _KINDS[kind.key] = kind
    return kind


def unregister(key: str) -> None:
    _KINDS.pop(key, None)


# Import every business module's ``records.py`` (once per process; cheap afterwards). The web app calls
# it at start-up so that a broken registration fails there; every reader of the registry calls it too,
# so the command line, the jobs and the tests see the same kinds.
load_all = discovery.once("records")


def kinds() -> list[RecordKind]:
    """Every registered kind, in page order."""
    load_all()
    return sorted(_KINDS.values(), key=lambda k: (k.order, k.key))


def kind(key: str) -> RecordKind:
    load_all()
    return _KINDS[key]


def page_actions() -> dict[str, tuple[RecordKind, PageAction]]:
    """slug → (kind, action) of every form the 360° page may post."""
    return {a.slug: (k, a) for k in kinds() for a in k.actions}


# ----- the paths that iterate it ------------------------------------------------------------------

# Scope kinds under which every row of a visible customer is visible (a kind may reach more rows,
# e.g. a transfer is also seen by the people in it); a module declares its kind with ``reaches_customer_rows``.
_REACH_CUSTOMER_ROWS = {"customer"}


def reaches_customer_rows(kind: str) -> None:
    """Declare that the scope kind ``kind`` shows at least every row of each customer its user sees."""
    _REACH_CUSTOMER_ROWS.add(kind)


def of_customer[S: Select[*tuple[Any, ...]]](stmt: S, model: Any, customer: VisibleCustomer) -> S:
    """``stmt`` narrowed to ``model``'s rows of ``customer``: within the principal's scope because the
    customer is and the rows follow their customer's scope (``__scope__ = "customer"`` or a kind declared
    with ``reaches_customer_rows``)."""
    if getattr(model, "__scope__", "") not in _REACH_CUSTOMER_ROWS:
        raise ValueError(f"{model.__name__} is not scoped by its customer: filter it through core.scope")
    return stmt.where(model.customer_id == customer.id)


def latest_rows(session: Session, model: Any, customer: VisibleCustomer, *order_by: Any, limit: int) -> list[Any]:
    """The first ``limit`` of ``model``'s rows of ``customer`` in ``order_by`` order (newest first, say)."""
    return list(session.execute(
        of_customer(select(model), model, customer).order_by(*order_by).limit(limit)
    ).scalars())


def timeline_page(model: Any, *order_by: Any, entry: Callable[[Any], TimelineEntry]) -> PageHook:
    """The 360° page hook of a kind shown on the timeline alone: the customer's latest rows of ``model``
    (``order_by``, as many as the timeline takes), each read as a line by ``entry``."""

    def page(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
        return Contribution(timeline=[
            entry(row) for row in latest_rows(session, model, customer, *order_by, limit=limit)
        ])

    return page


def count_rows(session: Session, customer_id: int) -> list[tuple[RecordKind, int]]:
    """(kind, rows of the customer) for every kind that blocks a plain delete and has rows — one
    statement whatever the number of kinds."""
    blocking = [k for k in kinds() if k.blocks_delete]
    if not blocking:
        return []
    counts = [
        select(func.count()).select_from(k.model).where(k.model.customer_id == customer_id)  # type: ignore[attr-defined]
        .scalar_subquery() for k in blocking
    ]
    row = session.execute(select(*counts)).one()
    return [(k, int(n)) for k, n in zip(blocking, row, strict=True) if n]


def rows_per_kind(session: Session, customer_id: int) -> list[tuple[RecordKind, int]]:
    """(kind, rows of the customer) for every registered kind, those with none included: what a merge
    moves onto the kept customer (every kind's merge moves all its rows) — one statement."""
    every = kinds()
    if not every:
        return []
    counts = [
        select(func.count()).select_from(k.model).where(k.model.customer_id == customer_id)  # type: ignore[attr-defined]
        .scalar_subquery() for k in every
    ]
    row = session.execute(select(*counts)).one()
    return [(k, int(n)) for k, n in zip(every, row, strict=True)]


def move_rows(session: Session, model: Any, keep_id: int, drop_id: int) -> int:
    """The default merge: every row of the dropped customer now hangs off the kept one."""
    result: Any = session.execute(
        update(model).where(model.customer_id == drop_id).values(customer_id=keep_id)
    )
    return int(result.rowcount or 0)


def merge_records(session: Session, keep_id: int, drop_id: int) -> dict[str, int]:
    """Move every kind's rows from ``drop_id`` to ``keep_id``; kind key → rows moved (none left out)."""
    moved: dict[str, int] = {}
    for k in kinds():
        n = k.merge(session, keep_id, drop_id) if k.merge else move_rows(session, k.model, keep_id, drop_id)
        if n:
            moved[k.key] = n
    return moved


def delete_rows(session: Session, model: Any, customer_id: int) -> int:
    """The default cascade: each row deleted through the ORM (one audit row each)."""
    rows = session.execute(select(model).where(model.customer_id == customer_id)).scalars().all()
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def _children_first(items: Iterable[RecordKind]) -> list[RecordKind]:
    """Kinds ordered so that rows referring to another kind's rows (a follow-up to its contact, a
    care task to its plan) go before those rows."""
    by_table = {k.model.__table__: k for k in items}  # type: ignore[attr-defined]
    return [by_table[t] for t in reversed(sort_tables(by_table))]


def delete_records(session: Session, customer_id: int) -> None:
    """Delete every kind's rows of ``customer_id`` (the cascade a user chose explicitly)."""
    for k in _children_first(kinds()):
        if k.delete:
            k.delete(session, customer_id)
        else:
            delete_rows(session, k.model, customer_id)


def hand_over_open_work(
    session: Session, customer_ids: list[int], manager_id: int | None, now: dt.datetime,
) -> dict[str, int]:
    """Hand what follows the manager (pending care tasks, care plans, open opportunities …) of
    ``customer_ids`` to ``manager_id``; hand-over key → rows moved, every key present.

    Every path that changes a customer's manager calls this in the same transaction (the transfer,
    the customer form, a merge): a pending care task always belongs to its customer's manager, which
    is how the care workbench finds a department's tasks quickly. Closed work stays with whoever did it.
    """
    moved = {h.key: 0 for k in kinds() for h in k.hand_over}
    if not customer_ids:
        return moved
    for k in kinds():
        for h in k.hand_over:
            moved[h.key] += h.move(session, customer_ids, manager_id, now)
    return moved


def hand_over_leftovers(session: Session, leaver_id: int, now: dt.datetime) -> dict[str, int]:
    """After a leaver's customers are handed over: their open work on customers someone else manages
    goes to each customer's current manager."""
    return {h.key: h.leaver(session, leaver_id, now) for k in kinds() for h in k.hand_over if h.leaver}


def has_open(key: str, customer_id: Any) -> Any:
    """SQL condition: the customer in ``customer_id`` (a column) has an open row of kind ``key``."""
    k = kind(key)
    if k.open_rows is None:
        raise LookupError(f"{key} rows have no open state")
    return exists().where(k.model.customer_id == customer_id, k.open_rows)  # type: ignore[attr-defined]


# (session, who acts, the customer, its manager before, the user chosen now or None) → the hand-over
ManagerChange = Callable[[Session, Principal, Any, int | None, Any], None]
_manager_change: list[ManagerChange] = []


def on_manager_change(handler: ManagerChange) -> ManagerChange:
    """Register what a change of manager in the customer form does beyond the column (the module that
    owns hand-overs does: transfers/records.py). One handler per process."""
    _manager_change[:] = [handler]
    return handler


def manager_changed(session: Session, principal: Principal, customer: Any, old_manager_id: int | None,
                    new_manager: Any) -> None:
    """The manager of ``customer`` was changed in its form: hand over as a transfer would, same transaction."""
    load_all()
    if not _manager_change:
        raise RuntimeError("no module handles a change of manager (transfers/records.py registers it)")
    _manager_change[0](session, principal, customer, old_manager_id, new_manager)


def hand_over_units() -> dict[str, str]:
    """hand-over key → unit ("care_tasks" → "条待办关怀"), for messages."""
    return {h.key: h.unit for k in kinds() for h in k.hand_over}
