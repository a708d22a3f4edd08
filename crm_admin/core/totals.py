"""Totals kept beside a table in the same transaction as every write to it: a count or sum over a
large table read from a few hundred rows, and always exactly what counting the table would give.

A module declares a ``Totals``: which rows of its table count (``counted``), what they are grouped by
(``keys``, columns of the same name in both tables) and what is added up per group (``sums``: SQL
expressions over one row, integers — money as cents — so that sums are exact on SQLite too). Then:

- every ORM flush that inserts, deletes or changes a watched attribute of such rows reads the rows'
  contributions before (locked, ``FOR UPDATE``) and after the flush, and adds the difference to the
  totals — whatever the code around it believed the old values were (``_before_flush``/``_after_flush``);
- a plain UPDATE of such rows goes through ``updating`` (the same, for the rows it matches);
- a plain INSERT of rows known by id (the recycle bin putting rows back) is followed by ``added``;
- an INSERT … SELECT that adds rows of known key values is followed by ``recount``: the groups it may
  have touched are counted again from the table under shared locks and written over;
- ``rebuild`` fills them from scratch (a migration, ``crm-admin generate``), ``differences`` compares
  them with a direct count (``crm-admin totals``, ``--fix`` rebuilds).

Each group's row is changed by adding to it (``n = n + …``), in key order, after the rows it counts are
locked: two transactions changing the same group queue on that row only until the first commits. A
group whose count falls to zero is removed, so that a range of the totals holds only groups with rows.
A key column that may be NULL in the table (a manager id) is stored as 0.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Table,
    and_,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session, attributes
from sqlalchemy.sql import ColumnElement

CHUNK = 1000


@dataclass(frozen=True)
class Totals:
    """Totals of ``source`` rows kept in ``table`` (see the module's docstring)."""

    name: str  # the totals table's name, what ``crm-admin totals`` reports
    model: type  # the ORM class of the source table
    table: Any  # the totals table (a Table)
    keys: tuple[str, ...]  # group columns, named alike in both tables
    count: str  # the totals column that counts rows (a group at 0 is removed)
    sums: tuple[tuple[str, Callable[[Any], ColumnElement[Any]]], ...] = ()  # column → per-row value
    counted: Callable[[Any], ColumnElement[bool]] | None = None  # which rows count (all when None)
    zero_for_null: frozenset[str] = frozenset()  # key columns stored as 0 where the row has NULL
    watched: tuple[str, ...] = ()  # ORM attributes whose change can move a row between groups
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", (self.count, *(name for name, _ in self.sums)))

    @property
    def source(self) -> Table:
        return self.model.__table__  # type: ignore[attr-defined, no-any-return]

    def key_exprs(self, table: Any) -> list[ColumnElement[Any]]:
        return [func.coalesce(table.c[k], 0) if k in self.zero_for_null else table.c[k] for k in self.keys]

    def where(self, table: Any) -> ColumnElement[bool]:
        counted = self.counted(table) if self.counted is not None else None
        not_null = [table.c[k].is_not(None) for k in self.keys if k not in self.zero_for_null]
        return and_(*([counted] if counted is not None else []), *not_null)

    def value_exprs(self, table: Any) -> list[ColumnElement[Any]]:
        return [literal(1), *(expr(table) for _, expr in self.sums)]


_REGISTRY: dict[str, Totals] = {}
_BY_MODEL: dict[type, list[Totals]] = {}


def register(totals: Totals) -> Totals:
    """Keep ``totals`` up to date from now on (called next to the models, at import)."""
    _REGISTRY[totals.name] = totals
    _BY_MODEL.setdefault(totals.model, [])
    if all(t.name != totals.name for t in _BY_MODEL[totals.model]):
        _BY_MODEL[totals.model].append(totals)
    return totals


def registered() -> list[Totals]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


Key = tuple[Any, ...]
Deltas = dict[Key, list[int]]


def _rows(conn: Connection, totals: Totals, where: ColumnElement[bool], *, lock: bool) -> dict[int, tuple[Key, list[int]] | None]:
    """id → (group, contribution) of the rows ``where`` selects (None for a row that does not count)."""
    src = totals.source
    keys = totals.key_exprs(src)
    stmt = select(src.c.id, case((totals.where(src), 1), else_=0), *keys, *totals.value_exprs(src)).where(where)
    if lock:
        stmt = stmt.order_by(src.c.id).with_for_update()
    out: dict[int, tuple[Key, list[int]] | None] = {}
    n = len(keys)
    for row in conn.execute(stmt):
        out[row[0]] = (tuple(row[2:2 + n]), [int(v or 0) for v in row[2 + n:]]) if row[1] else None
    return out


def _read(conn: Connection, totals: Totals, ids: Iterable[int], *, lock: bool) -> dict[int, tuple[Key, list[int]] | None]:
    ordered = sorted(set(ids))
    out: dict[int, tuple[Key, list[int]] | None] = {}
    for start in range(0, len(ordered), CHUNK):
        out.update(_rows(conn, totals, totals.source.c.id.in_(ordered[start:start + CHUNK]), lock=lock))
    return out


def _add(deltas: Deltas, entry: tuple[Key, list[int]] | None, sign: int) -> None:
    if entry is None:
        return
    key, values = entry
    acc = deltas.setdefault(key, [0] * len(values))
    for i, v in enumerate(values):
        acc[i] += sign * v


def _difference(before: dict[int, tuple[Key, list[int]] | None],
                after: dict[int, tuple[Key, list[int]] | None]) -> Deltas:
    deltas: Deltas = {}
    for entry in before.values():
        _add(deltas, entry, -1)
    for entry in after.values():
        _add(deltas, entry, +1)
    return deltas


def _upsert(conn: Connection, totals: Totals) -> Any:
    table = totals.table
    if conn.dialect.name == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=[table.c[k] for k in totals.keys],
            set_={c: table.c[c] + lite.excluded[c] for c in totals.columns})
    my = mysql.insert(table)
    return my.on_duplicate_key_update({c: table.c[c] + my.inserted[c] for c in totals.columns})


def apply(conn: Connection, totals: Totals, deltas: Deltas) -> None:
    """Add ``deltas`` (group → per-column differences) to the totals; groups left at zero rows go."""
    changed = sorted((key, values) for key, values in deltas.items() if any(values))
    if not changed:
        return
    conn.execute(_upsert(conn, totals), [
        {**dict(zip(totals.keys, key, strict=True)), **dict(zip(totals.columns, values, strict=True))}
        for key, values in changed])
    emptied = [key for key, values in changed if values[0] < 0]
    if emptied:
        table = totals.table
        for start in range(0, len(emptied), CHUNK):
            conn.execute(delete(table).where(
                tuple_(*(table.c[k] for k in totals.keys)).in_(emptied[start:start + CHUNK]),
                table.c[totals.count] <= 0))


@contextmanager
def updating(conn: Connection, model: type, where: ColumnElement[bool]) -> Iterator[None]:
    """Around a plain UPDATE of ``model``'s rows that ``where`` selects (before the update): their
    contributions are read locked before, again after, and the difference added to every totals of
    ``model``."""
    kept = _BY_MODEL.get(model, [])
    if not kept:
        yield
        return
    before = {t.name: _rows(conn, t, where, lock=True) for t in kept}
    yield
    for t in kept:
        after = _read(conn, t, before[t.name].keys(), lock=False)
        apply(conn, t, _difference(before[t.name], after))


def added(conn: Connection, model: type, ids: Iterable[int]) -> None:
    """After a plain INSERT of ``model``'s rows ``ids`` (rows put back with their ids, and so known one by
    one): their contributions are added to every totals of ``model``."""
    for t in _BY_MODEL.get(model, []):
        apply(conn, t, _difference({}, _read(conn, t, ids, lock=False)))


def recount(conn: Connection, model: type, groups: Callable[[Any], ColumnElement[bool]]) -> None:
    """Count the groups ``groups`` selects (a condition on key columns, true of the table's rows and of
    the totals' rows alike) again from ``model``'s table, under shared locks, and write them over: after
    an INSERT … SELECT, whose rows are not known one by one."""
    for t in _BY_MODEL.get(model, []):
        _recount(conn, t, groups)


def _recount(conn: Connection, t: Totals, groups: Callable[[Any], ColumnElement[bool]]) -> None:
    src = t.source
    keys = t.key_exprs(src)
    sums = [func.sum(v) for v in t.value_exprs(src)]
    # a locking read: the latest rows, and no write to them (nor, on MariaDB, a new row in the range
    # read) until this transaction ends, so that what is written over is what the table holds
    counted = conn.execute(select(*keys, *sums).where(t.where(src), groups(src)).group_by(*keys)
                           .with_for_update(read=True)).all()
    conn.execute(delete(t.table).where(groups(t.table)))
    rows = [{**dict(zip(t.keys, row[:len(keys)], strict=True)),
             **dict(zip(t.columns, (int(v or 0) for v in row[len(keys):]), strict=True))}
            for row in counted if row[len(keys)]]
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(t.table), rows[start:start + CHUNK])


def fix(conn: Connection, totals: Totals) -> None:
    """Count all of ``totals`` again from its table, under shared locks (``crm-admin totals --fix``)."""
    _recount(conn, totals, lambda _table: true())


def _direct(conn: Connection, totals: Totals) -> dict[Key, list[int]]:
    src = totals.source
    keys = totals.key_exprs(src)
    stmt = select(*keys, *(func.sum(v) for v in totals.value_exprs(src))).where(totals.where(src)).group_by(*keys)
    return {tuple(row[:len(keys)]): [int(v or 0) for v in row[len(keys):]] for row in conn.execute(stmt)}


def _stored(conn: Connection, totals: Totals) -> dict[Key, list[int]]:
    table = totals.table
    stmt = select(*(table.c[k] for k in totals.keys), *(table.c[c] for c in totals.columns))
    n = len(totals.keys)
    return {tuple(row[:n]): [int(v or 0) for v in row[n:]] for row in conn.execute(stmt) if row[n]}


def differences(conn: Connection, totals: Totals) -> int:
    """How many groups of ``totals`` differ from a direct count of the table (0: all exact)."""
    direct, stored = _direct(conn, totals), _stored(conn, totals)
    return sum(1 for key in direct.keys() | stored.keys() if direct.get(key) != stored.get(key))


def rebuild(conn: Connection, totals: Totals) -> int:
    """Count every group from the table again (the rows are not locked: for a quiet database, a
    migration or the data generator); returns the number of groups."""
    conn.execute(delete(totals.table))
    rows = [{**dict(zip(totals.keys, key, strict=True)), **dict(zip(totals.columns, values, strict=True))}
            for key, values in sorted(_direct(conn, totals).items())]
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(totals.table), rows[start:start + CHUNK])
    return len(rows)


# ----- ORM writes ----------------------------------------------------------------------------------
_BEFORE = "crm_totals_before"
_NEW = "crm_totals_new"


def _changed(obj: Any, names: Sequence[str]) -> bool:
    # without loading anything (relationships raise on a lazy load): a relationship set to another object
    # changes its key column only during the flush, so the relationship is watched as well
    return any(attributes.get_history(obj, name, passive=attributes.PASSIVE_NO_INITIALIZE).has_changes()
               for name in names)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if not _BY_MODEL:
        return
    ids: dict[type, set[int]] = {}
    new: list[Any] = [obj for obj in session.new if type(obj) in _BY_MODEL]
    for obj in session.deleted:
        if type(obj) in _BY_MODEL and obj.id is not None:
            ids.setdefault(type(obj), set()).add(obj.id)
    for obj in session.dirty:
        kept = _BY_MODEL.get(type(obj))
        if kept and obj.id is not None and obj not in session.deleted and any(
                _changed(obj, t.watched) for t in kept):
            ids.setdefault(type(obj), set()).add(obj.id)
    if not ids and not new:
        return
    conn = session.connection()
    before: dict[str, dict[int, tuple[Key, list[int]] | None]] = session.info.setdefault(_BEFORE, {})
    for model, model_ids in ids.items():
        for t in _BY_MODEL[model]:
            before.setdefault(t.name, {}).update(_read(conn, t, model_ids, lock=True))
    session.info.setdefault(_NEW, []).extend(new)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    before: dict[str, dict[int, tuple[Key, list[int]] | None]] = session.info.pop(_BEFORE, {})
    new: builtins.list[Any] = session.info.pop(_NEW, [])
    if not before and not new:
        return
    conn = session.connection()
    fresh: dict[str, set[int]] = {}
    for obj in new:
        if obj.id is not None:
            for t in _BY_MODEL[type(obj)]:
                fresh.setdefault(t.name, set()).add(obj.id)
    for name in sorted(before.keys() | fresh.keys()):
        t = _REGISTRY[name]
        old = before.get(name, {})
        after = _read(conn, t, old.keys() | fresh.get(name, set()), lock=False)
        apply(conn, t, _difference(old, after))


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_BEFORE, None)
    session.info.pop(_NEW, None)


def cents(amount: Any) -> ColumnElement[int]:
    """A money column as whole cents (sums of them are exact on SQLite, which keeps money as floats)."""
    return cast(func.round(amount * 100), BigInteger)
