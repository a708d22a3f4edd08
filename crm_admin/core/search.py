"""Search by any part of a name, by its pinyin (full or initials) and by any 4+ digits of a phone or code.

People type the middle of a Chinese company name ("联华" for 南京联华超市有限公司), its pinyin ("lianhua") or
its initials ("lhcs"), or a few digits of a phone number. ``LIKE '%…%'`` answers that only by reading every
row; here an n-gram index kept in two ordinary tables answers it on SQLite and MariaDB alike:

- ``search_doc`` — one row per searchable record: its searchable values, normalised, and the pinyin text
  of its names. Candidates are checked against it with ``LIKE`` (so a hit is exact, never approximate).
- ``search_gram`` — the grams of each record, primary key (kind, gram, row_id): a look-up of one gram is
  one index range. Grams are namespaced: ``t:`` two characters of a name, ``p:`` two syllables of its
  pinyin, ``i:`` two letters of its initials, ``d:`` four digits of a phone or code. A last character
  (or syllable) of a name is followed by an end mark, so a one-character search is a range on ``t:华``.

A query becomes one or more branches (the text itself; for letters, its pinyin read every way it can be
split into syllables, and its initials; for digits, four-digit grams). Each branch starts from its rarest
gram (counted once and remembered a few minutes), checks the others by primary key and the record's text
by ``LIKE``. When even the rarest gram is everywhere (``公司``), the record list is read in its own order
and each row checked — matches are dense, so a page fills at once.

Modules register what they make searchable (``register``); every ORM write keeps the index current
(session events), bulk inserts call ``index_new_rows``, and ``crm-admin search-index`` rebuilds it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, cast

from markupsafe import Markup, escape
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    union,
)
from sqlalchemy.orm import Session, attributes

from crm_admin import db
from crm_admin.core import context, masking
from crm_admin.core.models import SearchDoc, SearchGram

# The longest text searched (longer input is cut) and the fewest digits a digit search needs.
MAX_TERM = 64
MIN_DIGITS = 4
# A branch starts from its rarest gram when that gram has fewer postings than this; otherwise matches
# are dense and the records are read in the list's own order.
SPARSE_LIMIT = 20000
# Below this many postings of its rarest gram, a term's other grams narrow the candidates first.
NARROW_BELOW = 1000
END = "$"  # follows the last character / syllable of a name (above the space: MariaDB pads with spaces)
FIELD_SEP = "\x1e"  # between values in search_doc.body (never typed, so LIKE never matches across)
GRAM_LENGTH = 40


@dataclass(frozen=True)
class Searchable:
    """What of a model can be searched: ``names`` by any part and pinyin, ``digits`` by any 4+ digits,
    ``prefixes`` (codes with their own index) by their beginning."""

    kind: int
    model: type
    names: tuple[str, ...]
    digits: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.names + tuple(f for f in self.digits if f not in self.names)


_BY_MODEL: dict[type, Searchable] = {}
_BY_KIND: dict[int, Searchable] = {}


def register(model: type, *, kind: int, names: Sequence[str], digits: Sequence[str] = (),
             prefixes: Sequence[str] = ()) -> Searchable:
    """Make ``model`` searchable (called by the module that owns it, next to the model)."""
    spec = Searchable(kind=kind, model=model, names=tuple(names), digits=tuple(digits),
                      prefixes=tuple(prefixes))
    other = _BY_KIND.get(kind)
    if other is not None and other.model is not model:
        raise ValueError(f"search kind {kind} is taken by {other.model.__name__}")
    _BY_MODEL[model] = spec
    _BY_KIND[kind] = spec
    return spec


def searchable(model: type) -> Searchable | None:
    return _BY_MODEL.get(model)


def registered() -> list[Searchable]:
    return [_BY_KIND[k] for k in sorted(_BY_KIND)]


# ----- text → units → grams ----------------------------------------------------------------------

def normalise(text: str | None) -> str:
    """Full-width to half-width, lower case, no white space ("联华 超市" finds 联华超市 and back)."""
    if not text:
        return ""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def digits_of(text: str | None) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text or "") if ch.isdigit())


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0002ffff" or "\uf900" <= ch <= "\ufaff"


@lru_cache(maxsize=1)
def _pinyin() -> Any:
    """pypinyin, loaded at first use: its import reads the phrase dictionary and trains the word splitter
    (about 0.6 s of CPU), which a command that never touches a name should not pay at every start (the
    web app pays it at start-up, in ``warm_up``)."""
    import pypinyin.contrib.tone_convert
    import pypinyin.pinyin_dict

    return pypinyin


@lru_cache(maxsize=65536)
def pinyin_units(name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The pinyin of each Chinese character of ``name`` (phrase-aware: 重庆 → chong qing) and the
    position of that character in ``name``; other characters have no syllable."""
    syllables: list[str] = []
    positions: list[int] = []
    at = 0
    for piece in _pinyin().lazy_pinyin(name, errors="default"):
        if len(piece) >= 1 and at < len(name) and _is_han(name[at]):
            syllables.append(piece.lower())
            positions.append(at)
            at += 1
        else:
            at += len(piece)
    return tuple(syllables), tuple(positions)


@lru_cache(maxsize=1)
def syllables() -> frozenset[str]:
    """Every toneless syllable the pinyin dictionary knows (ü written v, as it is typed)."""
    found: set[str] = set()
    pypinyin = _pinyin()
    for readings in pypinyin.pinyin_dict.pinyin_dict.values():
        for reading in readings.split(","):
            plain = pypinyin.contrib.tone_convert.to_normal(reading)
            if plain.isascii() and plain.isalpha() and any(v in plain for v in "aeiouv"):
                found.add(plain)
    return frozenset(found)


@lru_cache(maxsize=1)
def _syllable_prefixes() -> frozenset[str]:
    return frozenset(s[:i] for s in syllables() for i in range(1, len(s) + 1))


def warm_up() -> None:
    """Load the pinyin dictionaries and the syllable table now rather than in the first search."""
    _syllable_prefixes()
    pinyin_units("联华超市")


def _name_grams(text: str) -> Iterator[str]:
    if not text:
        return
    for a, b in pairwise(text):
        if a != " " and b != " ":
            yield f"t:{a}{b}"
    yield f"t:{text[-1]}{END}"
    units, _ = pinyin_units(text)
    if units:
        for a, b in pairwise(units):
            yield f"p:{a} {b}"
        yield f"p:{units[-1]} {END}"
        initials = "".join(u[0] for u in units)
        for a, b in pairwise(initials):
            yield f"i:{a}{b}"
        yield f"i:{initials[-1]}{END}"


def _digit_grams(digits: str) -> Iterator[str]:
    for i in range(len(digits) - MIN_DIGITS + 1):
        yield f"d:{digits[i:i + MIN_DIGITS]}"


def document(spec: Searchable, values: dict[str, Any]) -> tuple[str, set[str]]:
    """The ``search_doc.body`` and the grams of one record, from its field values."""
    parts: list[str] = []
    grams: set[str] = set()
    for name in spec.names:
        text = normalise(values.get(name))
        units, _ = pinyin_units(text)
        parts.append(text)
        parts.append("".join(units))
        parts.append("".join(u[0] for u in units))
        grams.update(_name_grams(text))
    for name in spec.digits:
        digits = digits_of(values.get(name))
        parts.append(digits)
        grams.update(_digit_grams(digits))
    return FIELD_SEP.join(parts)[:1024], {g[:GRAM_LENGTH] for g in grams}


def _values_from_body(spec: Searchable, body: str) -> dict[str, Any]:
    """The normalised field values a body was made from (enough to recompute its grams)."""
    parts = body.split(FIELD_SEP)
    values: dict[str, Any] = {}
    for i, name in enumerate(spec.names):
        values[name] = parts[3 * i] if 3 * i < len(parts) else ""
    base = 3 * len(spec.names)
    for i, name in enumerate(spec.digits):
        values[name] = parts[base + i] if base + i < len(parts) else ""
    return values


# ----- keeping the index current -----------------------------------------------------------------

def _write(conn: Connection, spec: Searchable, rows: Iterable[tuple[int, dict[str, Any]]], *,
           replace: bool) -> int:
    """(Re)index ``rows`` — (id, field values) — of ``spec``'s model; returns how many."""
    docs: list[dict[str, Any]] = []
    grams: list[dict[str, Any]] = []
    ids: list[int] = []
    for row_id, values in rows:
        body, row_grams = document(spec, values)
        ids.append(row_id)
        docs.append({"kind": spec.kind, "row_id": row_id, "body": body})
        grams.extend({"kind": spec.kind, "gram": g, "row_id": row_id} for g in row_grams)
    if replace and ids:
        _remove(conn, spec, ids)
    if docs:
        conn.execute(insert(SearchDoc), docs)
    for start in range(0, len(grams), 20000):
        conn.execute(insert(SearchGram), grams[start:start + 20000])
    return len(docs)


def _remove(conn: Connection, spec: Searchable, ids: Sequence[int]) -> None:
    """Drop the index rows of ``ids``: their grams are recomputed from the stored body, so no second
    index on (kind, row_id) is needed over the largest table."""
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        bodies = conn.execute(
            select(SearchDoc.row_id, SearchDoc.body)
            .where(SearchDoc.kind == spec.kind, SearchDoc.row_id.in_(chunk))).all()
        old = [{"k": spec.kind, "g": g, "r": row_id}
               for row_id, body in bodies for g in document(spec, _values_from_body(spec, body))[1]]
        if old:
            conn.execute(delete(SearchGram).where(
                SearchGram.kind == bindparam("k"), SearchGram.gram == bindparam("g"),
                SearchGram.row_id == bindparam("r")), old)
        conn.execute(delete(SearchDoc).where(SearchDoc.kind == spec.kind, SearchDoc.row_id.in_(chunk)))


def _load_rows(conn: Connection, spec: Searchable, where: ColumnElement[bool]) -> Iterator[
        list[tuple[int, dict[str, Any]]]]:
    model: Any = spec.model
    columns = [getattr(model, name) for name in spec.fields]
    last = 0
    while True:
        got = conn.execute(select(model.id, *columns).where(where, model.id > last)
                           .order_by(model.id).limit(5000)).all()
        if not got:
            return
        last = got[-1][0]
        yield [(row[0], dict(zip(spec.fields, row[1:], strict=True))) for row in got]


def index_ids(conn: Connection, model: type, ids: Sequence[int]) -> int:
    """(Re)index the given rows of ``model`` as they are in the database now."""
    spec = _BY_MODEL.get(model)
    if spec is None or not ids:
        return 0
    done = 0
    for start in range(0, len(ids), 5000):
        chunk = sorted(set(ids[start:start + 5000]))
        present = conn.execute(select(spec.model.id, *[getattr(spec.model, f) for f in spec.fields])  # type: ignore[attr-defined]
                               .where(spec.model.id.in_(chunk))).all()  # type: ignore[attr-defined]
        found = {row[0] for row in present}
        gone = [i for i in chunk if i not in found]
        if gone:
            _remove(conn, spec, gone)
        done += _write(conn, spec, [(row[0], dict(zip(spec.fields, row[1:], strict=True))) for row in present],
                       replace=True)
    return done


def index_where(conn: Connection, model: type, condition: ColumnElement[bool]) -> int:
    """Index the new rows of ``model`` that ``condition`` selects — after a bulk insert, which the
    session events do not see. (Rows that are not new: ``index_ids``.)"""
    spec = _BY_MODEL.get(model)
    if spec is None:
        return 0
    done = 0
    for rows in _load_rows(conn, spec, condition):
        # nothing to delete first: a DELETE of rows that are not there would lock the gap at the end
        # of the index on MariaDB, where every other new record is inserted too
        done += _write(conn, spec, rows, replace=False)
    return done


def max_id(conn: Connection, model: type) -> int:
    model_: Any = model
    return int(conn.execute(select(func.coalesce(func.max(model_.id), 0))).scalar_one())


def rebuild(conn: Connection, models: Sequence[type] | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Build the index of ``models`` (default: all registered) from scratch; returns rows per model.

    Grams are collected in a temporary table and copied into ``search_gram`` in key order: at
    hundreds of thousands of records, inserting them in arrival order would touch the index at random.
    """
    counts: dict[str, int] = {}
    mysql = conn.dialect.name in ("mysql", "mariadb")
    # MySQL/MariaDB: DROP TEMPORARY, which neither commits the transaction (a plain DROP TABLE does, so
    # a failed rebuild would keep half its work) nor is replicated to a Galera cluster's other nodes
    drop_load = f"DROP {'TEMPORARY ' if mysql else ''}TABLE IF EXISTS search_gram_load"
    conn.exec_driver_sql(drop_load)
    gram_type = "VARCHAR(40) COLLATE utf8mb4_bin" if mysql else "TEXT"
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE search_gram_load (kind SMALLINT, gram {gram_type}, row_id INTEGER)")
    load_sql = text("INSERT INTO search_gram_load (kind, gram, row_id) VALUES (:kind, :gram, :row_id)")
    try:
        for spec in registered():
            if models is not None and spec.model not in models:
                continue
            conn.execute(delete(SearchGram).where(SearchGram.kind == spec.kind))
            conn.execute(delete(SearchDoc).where(SearchDoc.kind == spec.kind))
            done = 0
            for rows in _load_rows(conn, spec, true()):
                docs: list[dict[str, Any]] = []
                grams: list[dict[str, Any]] = []
                for row_id, values in rows:
                    body, row_grams = document(spec, values)
                    docs.append({"kind": spec.kind, "row_id": row_id, "body": body})
                    grams.extend({"kind": spec.kind, "gram": g, "row_id": row_id} for g in row_grams)
                conn.execute(insert(SearchDoc), docs)
                conn.execute(load_sql, grams)
                done += len(docs)
            conn.exec_driver_sql(
                "INSERT INTO search_gram (kind, gram, row_id) SELECT kind, gram, row_id FROM search_gram_load "
                "ORDER BY kind, gram, row_id")
            conn.exec_driver_sql("DELETE FROM search_gram_load")
            table = getattr(spec.model, "__tablename__", spec.model.__name__)
            counts[table] = done
            if progress is not None:
                progress(f"搜索索引:{table} {done} 条")
    finally:
        conn.exec_driver_sql(drop_load)
    _COUNTS.clear()
    return counts


# ORM writes: which searchable objects a flush changes, then reindex them on the same connection
# (inside the same transaction as the change itself).
_PENDING = "crm_search_pending"


@event.listens_for(Session, "before_flush")
def _collect(session: Session, _context: Any, _instances: Any) -> None:
    if not _BY_MODEL:
        return
    pending: dict[type, dict[int, dict[str, Any] | None]] = session.info.setdefault(_PENDING, {})
    changed: list[Any] = []
    for obj in session.new:
        if type(obj) in _BY_MODEL:
            changed.append(obj)
            session.info.setdefault(_PENDING + ":new", set()).add(id(obj))
    for obj in session.dirty:
        spec = _BY_MODEL.get(type(obj))
        if spec is not None and any(attributes.get_history(obj, f).has_changes() for f in spec.fields):
            changed.append(obj)
    for obj in session.deleted:
        spec = _BY_MODEL.get(type(obj))
        if spec is not None and obj.id is not None:
            pending.setdefault(type(obj), {})[obj.id] = None
    session.info.setdefault(_PENDING + ":objects", []).extend(changed)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    for key in (_PENDING, _PENDING + ":objects", _PENDING + ":new"):
        session.info.pop(key, None)


@event.listens_for(Session, "after_flush")
def _apply(session: Session, _context: Any) -> None:
    objects = session.info.pop(_PENDING + ":objects", [])
    new = session.info.pop(_PENDING + ":new", set())
    pending: dict[type, dict[int, dict[str, Any] | None]] = session.info.pop(_PENDING, {})
    created: dict[type, list[tuple[int, dict[str, Any]]]] = {}
    for obj in objects:
        if obj.id is None or obj in session.deleted:
            continue
        spec = _BY_MODEL[type(obj)]
        values = {f: getattr(obj, f, None) for f in spec.fields}
        if id(obj) in new:
            created.setdefault(type(obj), []).append((obj.id, values))
        else:
            pending.setdefault(type(obj), {})[obj.id] = values
    if not pending and not created:
        return
    conn = session.connection()
    for model, fresh in created.items():
        _write(conn, _BY_MODEL[model], fresh, replace=False)  # new rows: nothing to delete (and no gap lock)
    for model, rows in pending.items():
        spec = _BY_MODEL[model]
        gone = [row_id for row_id, values in rows.items() if values is None]
        if gone:
            _remove(conn, spec, gone)
        kept = [(row_id, values) for row_id, values in rows.items() if values is not None]
        if kept:
            _write(conn, spec, kept, replace=True)


# ----- query ---------------------------------------------------------------------------------------

def _like_contains(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class _Gram:
    """One gram, or every gram that starts with ``value`` (``prefix``)."""

    value: str
    prefix: bool = False

    def condition(self) -> ColumnElement[bool]:
        if self.prefix:
            return and_(SearchGram.gram >= self.value, SearchGram.gram < self.value + "\U0010ffff")
        return SearchGram.gram == self.value


@dataclass(frozen=True)
class _Branch:
    grams: tuple[_Gram, ...]
    check: str  # the text the record's body must contain


def split_pinyin(letters: str, limit: int = 6) -> list[list[str]]:
    """The ways ``letters`` reads as syllables, the last one possibly unfinished (fewest first)."""
    known, starts = syllables(), _syllable_prefixes()
    found: list[list[str]] = []

    def walk(at: int, parts: list[str]) -> None:
        if len(found) >= limit * 4:
            return
        rest = letters[at:]
        if not rest:
            found.append(list(parts))
            return
        for end in range(min(len(letters), at + 6), at, -1):
            piece = letters[at:end]
            if piece in known or (end == len(letters) and piece in starts):
                parts.append(piece)
                walk(end, parts)
                parts.pop()

    walk(0, [])
    found.sort(key=len)
    return found[:limit]


def _branches(term: str) -> list[_Branch]:
    branches: list[_Branch] = []
    if len(term) == 1:
        branches.append(_Branch((_Gram(f"t:{term}", prefix=True),), term))
    elif term:
        branches.append(_Branch(tuple(_Gram(g) for g in dict.fromkeys(_name_grams_plain(term))), term))
    if term.isascii() and term.isalpha() and len(term) >= 2:
        for parts in split_pinyin(term):
            if len(parts) == 1:
                grams: tuple[_Gram, ...] = (_Gram(f"p:{parts[0]}", prefix=True),)
            else:
                whole = [_Gram(f"p:{a} {b}") for a, b in pairwise(parts[:-1])]
                grams = (*whole, _Gram(f"p:{parts[-2]} {parts[-1]}", prefix=True))
            branches.append(_Branch(grams, term))
        # initials have next to no vowels ("lhcs"); "hengxin" is not a run of initials
        if sum(term.count(v) for v in "aeiouv") <= 1:
            initials = [_Gram(f"i:{a}{b}") for a, b in pairwise(term)]
            branches.append(_Branch(tuple(dict.fromkeys(initials)), term))
    digits = digits_of(term)
    if len(digits) >= MIN_DIGITS and re.fullmatch(r"[\d\s\-+()]+", term):
        branches.append(_Branch(tuple(_Gram(g) for g in dict.fromkeys(_digit_grams(digits))), digits))
    return branches


def _name_grams_plain(term: str) -> Iterator[str]:
    for a, b in pairwise(term):
        if a != " " and b != " ":
            yield f"t:{a}{b}"


# How many postings a gram has (capped at SPARSE_LIMIT), remembered a few minutes: it only decides
# where a search starts, so a slightly old figure costs nothing but a little time. A zero is not
# remembered (a branch with a gram nobody has is skipped, which must hold at the moment of the search).
_COUNTS: dict[tuple[int, _Gram], tuple[int, float]] = {}
_COUNTS_LOCK = threading.Lock()
_COUNT_TTL = 300.0


def _postings(conn: Connection, kind: int, gram: _Gram) -> int:
    key = (kind, gram)
    now = time.monotonic()
    with _COUNTS_LOCK:
        hit = _COUNTS.get(key)
    if hit is not None and now - hit[1] < _COUNT_TTL:
        return hit[0]
    inner = select(literal(1)).where(SearchGram.kind == kind, gram.condition()).limit(SPARSE_LIMIT)
    count = int(conn.execute(select(func.count()).select_from(inner.subquery())).scalar_one())
    if count:  # "nobody has it" is never remembered: a record added a second later must be found
        with _COUNTS_LOCK:
            if len(_COUNTS) > 50000:
                _COUNTS.clear()
            _COUNTS[key] = (count, now)
    return count


def _has_gram(kind: int, gram: _Gram, row_id: Any) -> ColumnElement[bool]:
    alias = SearchGram.__table__.alias()  # type: ignore[attr-defined]
    if gram.prefix:
        cond = and_(alias.c.gram >= gram.value, alias.c.gram < gram.value + "\U0010ffff")
    else:
        cond = alias.c.gram == gram.value
    return exists().where(alias.c.kind == kind, cond, alias.c.row_id == row_id)


def _body_contains(kind: int, text: str, row_id: Any) -> ColumnElement[bool]:
    doc = SearchDoc.__table__.alias()  # type: ignore[attr-defined]
    return exists().where(doc.c.kind == kind, doc.c.row_id == row_id,
                          doc.c.body.like(_like_contains(text), escape="\\"))


def _candidates(conn: Connection, model: Any, found: Any) -> ColumnElement[bool]:
    """``model.id`` among what ``found`` selects. The ids are read once here, so that the page and its
    count do not each run the look-up again (the caller's statement applies the scope to them). On
    SQLite they go in as one JSON array read by ``json_each``: given a long ``IN (…)`` list next to a
    scope condition, its planner would try every pair of (customer, id) in a two-column index."""
    ids = list(conn.execute(found.limit(SPARSE_LIMIT + 1)).scalars())
    if len(ids) > SPARSE_LIMIT:
        return cast(ColumnElement[bool], model.id.in_(found))
    if not ids:
        return false()
    if conn.dialect.name == "sqlite":
        each = func.json_each(json.dumps(sorted(ids))).table_valued("value")
        return cast(ColumnElement[bool], model.id.in_(select(each.c.value)))
    # written into the statement as numbers when it runs rather than as thousands of parameters, each
    # named, converted and escaped one by one (3,792 ids: 6.6 → 3.4 ms of CPU for each statement that
    # carries them); the compiled statement is still cached, with the list as a placeholder
    listed: BindParameter[Any] = bindparam(None, sorted(int(i) for i in ids), expanding=True, literal_execute=True)
    return cast(ColumnElement[bool], model.id.in_(listed))


def match(conn: Connection, model: type, term: str | None) -> ColumnElement[bool] | None:
    """A condition on ``model`` true for the records ``term`` finds; ``None`` when there is nothing to
    search for. Add it to an already scoped statement: it only ever narrows."""
    spec = _BY_MODEL.get(model)
    text = normalise(term)[:MAX_TERM]
    if spec is None or not text:
        return None
    model_: Any = model
    sparse: list[Select[Any]] = []
    dense: list[ColumnElement[bool]] = []
    # Someone who sees phone numbers masked must not find a record by one either: for the rows they
    # see masked (every row, or those a rule masks: a pool's customers), digits are looked for in the
    # columns shown to them (a code, a name) and nowhere else.
    masked, shown_only = _masked_digits(spec, text)
    if masked is True:
        dense.extend(shown_only)
        branches: list[_Branch] = []
    else:
        branches = _branches(text)
    for branch in branches:
        if not branch.grams:
            continue
        counted = sorted((_postings(conn, spec.kind, g), i, g) for i, g in enumerate(branch.grams))
        if counted[0][0] == 0:
            continue  # a gram nobody has: this branch finds nothing
        first = counted[0][2]
        if counted[0][0] < SPARSE_LIMIT:
            stmt = select(SearchGram.row_id).where(SearchGram.kind == spec.kind, first.condition())
            # the next two rarest grams narrow a rare gram's candidates cheaply; the text check decides
            # the rest. A common gram's other grams are common too and mostly come from the same words
            # (every "机械" of "机械制造" has its "械制" and "制造"): two look-ups per candidate that
            # rarely remove one, so there the text check alone decides (3,792 candidates: 30 → 17 ms)
            if counted[0][0] < NARROW_BELOW:
                for _, _, gram in counted[1:3]:
                    stmt = stmt.where(_has_gram(spec.kind, gram, SearchGram.row_id))
            if len(branch.grams) > 1:  # one gram alone already says the text is there (see _branches)
                stmt = stmt.where(_body_contains(spec.kind, branch.check, SearchGram.row_id))
            sparse.append(stmt)
        else:
            dense.append(_body_contains(spec.kind, branch.check, model_.id))
    if text.replace("-", "").isalnum() and text.isascii():
        code = text.upper()
        for name in spec.prefixes:
            column = getattr(model_, name)
            if conn.dialect.name == "sqlite":
                # SQLite's LIKE ignores case and so cannot use the index: a range in byte order does
                found_code = and_(column >= code, column < code + "\U0010ffff")
            else:
                found_code = column.like(_like_prefix(code), escape="\\")
            sparse.append(select(model_.id).where(found_code))
    conditions: list[ColumnElement[bool]] = []
    if sparse:
        conditions.append(_candidates(conn, model_, union(*sparse) if len(sparse) > 1 else sparse[0]))
    conditions.extend(dense)
    found = false() if not conditions else conditions[0] if len(conditions) == 1 else or_(*conditions)
    if masked is False or masked is True:
        return found
    # some rows are masked for the viewer: those are found only by what they show. Their ids are read
    # here, from the (few) masked rows, so that the page's statement gets id lists rather than a
    # ``LIKE '%…%'`` over every row next to the candidates (which a planner answers with a full scan).
    shown_masked = _candidates(conn, model_, select(model_.id).where(masked, or_(*shown_only)))
    return or_(and_(found, not_(masked)), shown_masked)


def _masked_digits(spec: Searchable, text: str) -> tuple[ColumnElement[bool] | bool, list[ColumnElement[bool]]]:
    """For a search by digits: which rows the current viewer sees with their personal digit columns
    masked (``masking.masked_condition``: True every row, False none), and the conditions that find a
    row by the columns shown to them instead."""
    viewer = context.current_principal()
    personal = masking.personal_data(spec.model)
    hidden = {f for f in spec.digits if personal is not None and f in personal.fields}
    if viewer is None or not hidden or not re.fullmatch(r"[\d\s\-+()]+", text):
        return False, []
    masked = masking.masked_condition(viewer, spec.model)
    if masked is False:
        return False, []
    model_: Any = spec.model
    shown = [f for f in (*spec.names, *spec.digits) if f not in hidden]
    digits = digits_of(text) if len(digits_of(text)) >= MIN_DIGITS else text
    return masked, [getattr(model_, f).like(_like_contains(digits), escape="\\") for f in shown]


def match_now(model: type, term: str | None) -> ColumnElement[bool] | None:
    """``match`` on a connection of its own (for statement builders that have none at hand)."""
    if _BY_MODEL.get(model) is None or not normalise(term):
        return None
    with db.get_engine().connect() as conn:
        return match(conn, model, term)


# ----- showing what matched ----------------------------------------------------------------------

def _spans(text: str, term: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` that ``term`` matched: as written, in pinyin, initials or digits."""
    if not text or not term:
        return []
    norm = unicodedata.normalize("NFKC", text).lower()
    query = normalise(term)
    if len(norm) != len(text) or not query:
        return []
    at = norm.find(query)
    if at >= 0:
        return [(at, at + len(query))]
    if query.isascii() and query.isalpha():
        units, positions = pinyin_units(norm)
        if units:
            initials = "".join(u[0] for u in units)
            i = initials.find(query)
            if i >= 0:
                return [(positions[i], positions[i + len(query) - 1] + 1)]
            joined, starts = "", []
            for u in units:
                starts.append(len(joined))
                joined += u
            i = joined.find(query)
            if i >= 0:
                first = max(k for k, s in enumerate(starts) if s <= i)
                last = max(k for k, s in enumerate(starts) if s < i + len(query))
                return [(positions[first], positions[last] + 1)]
    digits = digits_of(query)
    if len(digits) >= MIN_DIGITS and re.fullmatch(r"[\d\s\-+()]+", query):
        where = [i for i, ch in enumerate(norm) if ch.isdigit()]
        i = "".join(norm[k] for k in where).find(digits)
        if i >= 0:
            return [(where[i], where[i + len(digits) - 1] + 1)]
    return []


def highlight(text: Any, term: str | None) -> Markup:
    """``text`` escaped, the part ``term`` matched wrapped in ``<mark>``."""
    value = "" if text is None else str(text)
    spans = _spans(value, term or "")
    if not spans:
        return escape(value)
    out, last = [], 0
    for start, end in spans:
        out.append(escape(value[last:start]))
        out.append(Markup("<mark>") + escape(value[start:end]) + Markup("</mark>"))
        last = end
    out.append(escape(value[last:]))
    return Markup("").join(out)
