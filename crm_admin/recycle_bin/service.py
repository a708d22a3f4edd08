"""The recycle bin (回收站): keep a deleted record with everything that went with it, put it back exactly
as it was, or purge it.

Deleting a customer (with what hangs off it: every kind registered in ``core.customer_records``), a
contact, an opportunity or an order first copies its rows here (``keep``, called by the delete paths
through ``core.recycling``), then the delete path deletes them as it always did (its audit rows
included). The rows are really gone from their tables, so no list, search, count, export or job ever
sees them; nothing that reads those tables needs to know the bin exists.

An entry's ``payload`` holds the rows of every table that went with the record, parents first: the
record itself, for a customer each registered kind's rows, and the rows the database deletes with any
of those (foreign keys ``ON DELETE CASCADE``: order lines, stage history). Values are written so that
they read back exactly (``Decimal`` as text, times in ISO form with their zone). The search index is
not copied: it is rebuilt from the restored rows (``core.search``), which gives the same rows.

Restoring checks everything first — the original ids still free, unique values (customer code, credit
code, order number…) not taken meanwhile, every row the rows point at still there (the customer of a
contact, the products of an order's lines, the users), the owner still active, the customer within the
restorer's scope — and refuses with a message naming the first problem, having changed nothing. Then it
inserts every row with its original id in one transaction, sets the manager the records carry
(``customer_manager_id``) to their customer's current one, hands over open work when the customer has
changed hands since, reindexes, and audits.

A merge does not put the merged customer in the bin: its records move to the kept customer and the
merge is audited with what was merged; a restored empty duplicate would only undo half of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.schema import UniqueConstraint, sort_tables
from sqlalchemy.sql import sqltypes

from crm_admin.core import audit, customer_records, limits, recycling, search, totals
from crm_admin.core.context import current_actor
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.models import SysUser
from crm_admin.core.permissions import RESOURCES
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scope_clause, scoped
from crm_admin.db import Base, utcnow
from crm_admin.recycle_bin.models import RecycleEntry
from crm_admin.settings import get_settings

RESOURCE = "recycle_bin"
PAYLOAD_FORMAT = 1
CUSTOMER_TABLE = "customer"  # SPEC's table name: the root every other kept record hangs off
# the records a delete puts in the bin: (resource, key of the kind in core.customer_records or None)
KEPT = (("customer", None), ("linkman", "linkman"), ("opportunity", "opportunity"), ("order", "order"))
CHUNK = 1000  # ids per IN (...) list

ENTRY_MISSING = "所选的回收站记录不存在或不在您的数据范围内(可能已被恢复或彻底删除),请刷新页面后重试。"
NOTHING_CHOSEN = "请先勾选要处理的回收站记录。"


def _(text: str) -> str:
    """Marks a message for the English catalog (the page translates it when shown)."""
    return text


# ----- which records go to the bin ------------------------------------------------------------------

def _tables() -> dict[str, Table]:
    """Every table a kept row may come from: the schema's, and those of the registered kinds (a kind
    may live in a metadata of its own)."""
    out: dict[str, Table] = dict(Base.metadata.tables)
    for kind in customer_records.kinds():
        table: Any = kind.model.__table__  # type: ignore[attr-defined]
        out.setdefault(table.name, table)
    return out


def _model_of(table: str) -> Any:
    for mapper in Base.registry.mappers:
        if getattr(mapper.local_table, "name", None) == table:
            return mapper.class_
    return None


def kept_tables() -> dict[str, str]:
    """table name → resource, of the records a delete puts in the bin."""
    out = {CUSTOMER_TABLE: "customer"}
    for resource, key in KEPT:
        if key is None:
            continue
        try:
            out[customer_records.kind(key).model.__table__.name] = resource  # type: ignore[attr-defined]
        except KeyError:  # a module not installed: its records simply do not exist
            continue
    return out


def resource_label(resource: str) -> str:
    return RESOURCES.get(resource, resource)


# ----- values that read back exactly ------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _decode(column: Any, value: Any) -> Any:
    """A stored value back in the type its column reads it as."""
    if value is None:
        return None
    kind = column.type
    kind = getattr(kind, "impl_instance", None) or getattr(kind, "impl", kind)  # a TypeDecorator's own type
    if isinstance(kind, sqltypes.DateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(kind, sqltypes.Date):
        return dt.date.fromisoformat(value)
    if isinstance(kind, sqltypes.Time):
        return dt.time.fromisoformat(value)
    if isinstance(kind, sqltypes.Float):
        return float(value)
    if isinstance(kind, sqltypes.Numeric):
        return Decimal(str(value)) if kind.asdecimal else value
    if isinstance(kind, sqltypes.LargeBinary):
        return bytes.fromhex(value)
    if isinstance(kind, sqltypes.Boolean):
        return bool(value)
    return value


# ----- keeping a copy -----------------------------------------------------------------------------------

def _in_chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def collect_rows(conn: Connection, table_name: str, record_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row that goes when ``table_name`` row ``record_id`` is deleted: the record, for a customer
    every registered kind's rows, and the rows the database deletes with any of them (cascading keys).
    table → rows (one SELECT per table and chunk of ids)."""
    tables = _tables()
    found: dict[str, dict[int, dict[str, Any]]] = {}

    def add(table: Table, rows: Iterable[Any]) -> bool:
        into = found.setdefault(table.name, {})
        new = False
        for row in rows:
            if row["id"] not in into:
                into[row["id"]] = dict(row)
                new = True
        return new

    root = tables[table_name]
    add(root, conn.execute(select(root).where(root.c.id == record_id)).mappings())
    if table_name == CUSTOMER_TABLE:
        for kind in customer_records.kinds():
            table: Any = kind.model.__table__  # type: ignore[attr-defined]
            add(table, conn.execute(select(table).where(table.c.customer_id == record_id)).mappings())
    cascades = [(table, fk) for table in tables.values() for fk in table.foreign_keys
                if (fk.ondelete or "").upper() == "CASCADE" and fk.column.name == "id"]
    asked: dict[Any, set[int]] = {}  # cascading key → parent ids already looked up
    grew = True
    while grew:  # rows deleted with rows already found, to any depth
        grew = False
        for table, fk in cascades:
            parents = set(found.get(fk.column.table.name, ())) - asked.setdefault(fk, set())
            if not parents:
                continue
            asked[fk] |= parents
            for ids in _in_chunks(list(parents)):
                rows = conn.execute(select(table).where(fk.parent.in_(ids))).mappings()
                grew = add(table, rows) or grew
    return {name: list(rows.values()) for name, rows in found.items() if rows}


def build_payload(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The rows as JSON, parents first (the order they are inserted back in)."""
    tables = _tables()
    ordered = sort_tables([tables[name] for name in rows])
    out = []
    for table in ordered:
        columns = [c.name for c in table.columns]
        out.append({"table": table.name, "columns": columns,
                    "rows": [[_encode(row.get(c)) for c in columns] for row in rows[table.name]]})
    return {"format": PAYLOAD_FORMAT, "tables": out}


@dataclass(frozen=True)
class KeptTable:
    table: Table
    rows: list[dict[str, Any]]  # decoded, only the columns the table still has

    @property
    def ids(self) -> list[int]:
        return [int(r["id"]) for r in self.rows]


def read_payload(payload: dict[str, Any]) -> list[KeptTable]:
    """The rows of an entry as values of their columns, parents first."""
    tables = _tables()
    out = []
    for part in payload.get("tables", []):
        table = tables.get(part["table"])
        if table is None:
            raise UserError(_("该回收站记录所属的数据表已不存在,无法恢复。"))
        columns = [(i, table.c[name]) for i, name in enumerate(part["columns"]) if name in table.c]
        rows = [{col.name: _decode(col, raw[i]) for i, col in columns} for raw in part["rows"]]
        out.append(KeptTable(table, rows))
    return out


def _summary(rows: dict[str, list[dict[str, Any]]], root_table: str) -> str:
    """"连同 3 个联系人、2 条联系记录": what went with the record, in the registry's words."""
    parts = []
    for kind in customer_records.kinds():
        name = kind.model.__table__.name  # type: ignore[attr-defined]
        if name != root_table and rows.get(name):
            parts.append(f"{len(rows[name])} {kind.unit}")
    return ("连同 " + "、".join(parts)) if parts else ""


def _label(obj: Any) -> str:
    text = str(obj)
    code = getattr(obj, "code", None)
    return (f"{text}({code})" if code else text)[:255]


def keep(session: Session, obj: Any) -> int | None:
    """``obj`` (a customer, contact, opportunity or order) is about to be deleted: copy it and everything
    that goes with it into the bin, in the caller's transaction (one INSERT whatever the number of rows);
    the entry's id. Anything else is not kept."""
    table_name = getattr(type(obj), "__tablename__", "")
    resource = kept_tables().get(table_name)
    if resource is None or obj.id is None:
        return None
    session.flush()  # what the rows are now, pending changes included
    conn = session.connection()
    rows = collect_rows(conn, table_name, int(obj.id))
    if not rows.get(table_name):
        return None
    customers: Any = _tables()[CUSTOMER_TABLE]
    customer_id = int(obj.id) if table_name == CUSTOMER_TABLE else getattr(obj, "customer_id", None)
    customer = conn.execute(
        select(customers.c.name, customers.c.manager_id).where(customers.c.id == customer_id)
    ).first() if customer_id is not None else None
    actor = current_actor()
    now = utcnow()
    days = get_settings().recycle_bin_days
    payload = build_payload(rows)
    payload["refs"] = _fingerprints(conn, rows)
    values = {
        "resource": resource, "record_id": int(obj.id), "label": _label(obj),
        "customer_id": customer_id, "customer_name": customer.name[:128] if customer else None,
        "manager_id": customer.manager_id if customer else None,
        "deleted_by": actor.user_id, "deleted_by_name": actor.username[:64],
        "deleted_at": now, "expires_at": now + dt.timedelta(days=days),
        "row_count": sum(len(r) for r in rows.values()), "summary": _summary(rows, table_name)[:500],
        "payload": payload, "created_at": now, "updated_at": now,
    }
    bin_table: Any = RecycleEntry.__table__
    inserted = conn.execute(insert(bin_table).values(**values)).inserted_primary_key
    return int(inserted[0]) if inserted else None


# ----- reading the bin ------------------------------------------------------------------------------------

def entries_stmt(principal: Principal, action: str = "list") -> Any:
    return scoped(select(RecycleEntry), RecycleEntry, principal, action, resource=RESOURCE)


@dataclass(frozen=True)
class Listing:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    page_size: int


LIST_COLUMNS = ("id", "resource", "record_id", "label", "customer_id", "customer_name", "manager_id",
                "deleted_by", "deleted_by_name", "deleted_at", "expires_at", "row_count", "summary")


def list_entries(session: Session, principal: Principal, *, resource: str = "", page: int = 1,
                 page_size: int = 20) -> Listing:
    """The entries ``principal`` may see (``recycle_bin`` / ``list`` scope), newest first."""
    columns = [getattr(RecycleEntry, c) for c in LIST_COLUMNS]
    stmt = scoped(select(*columns), RecycleEntry, principal, "list", resource=RESOURCE)
    count = scoped(select(func.count()).select_from(RecycleEntry), RecycleEntry, principal, "list",
                   resource=RESOURCE)
    if resource:
        stmt = stmt.where(RecycleEntry.resource == resource)
        count = count.where(RecycleEntry.resource == resource)
    total = int(session.execute(count).scalar_one())
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    rows = session.execute(
        stmt.order_by(RecycleEntry.deleted_at.desc(), RecycleEntry.id.desc())
        .limit(page_size).offset((page - 1) * page_size)
    ).mappings().all()
    return Listing([dict(r) for r in rows], total, page, pages, page_size)


def chosen_entries(session: Session, principal: Principal, ids: Sequence[int], action: str, *,
                   lock: bool = False) -> list[RecycleEntry]:
    """The entries ``ids`` names, each within ``principal``'s scope for ``action``; NotFound (nothing
    done) when any is not — another manager's entry answers exactly as one that does not exist."""
    wanted = sorted(set(ids))
    if not wanted:
        raise UserError(NOTHING_CHOSEN)
    stmt = entries_stmt(principal, action).where(RecycleEntry.id.in_(wanted)).order_by(RecycleEntry.id)
    found = list(session.execute(stmt.with_for_update() if lock else stmt).scalars())
    if len(found) != len(wanted):
        raise NotFound(ENTRY_MISSING)
    return found


# ----- restoring ----------------------------------------------------------------------------------------

def _describe_value(table: Table, column: str, value: Any) -> str:
    model = _model_of(table.name)
    label = limits.label_of(model, column) if model is not None else f"“{column}”"
    return f"{label}“{value}”"


def _check_free(conn: Connection, entry: RecycleEntry, kept: list[KeptTable]) -> None:
    """The original ids and unique values are not used by rows written since the delete."""
    for part in kept:
        table: Any = part.table
        for ids in _in_chunks(part.ids):
            taken = conn.execute(select(table.c.id).where(table.c.id.in_(ids)).limit(1)).scalar()
            if taken is not None:
                raise UserError(f"无法恢复“{entry.label}”:{_table_label(table.name)}的原编号(ID {taken})"
                                f"已被删除后新建的数据占用,无法按原样恢复。")
        uniques = [list(c.columns) for c in table.constraints if isinstance(c, UniqueConstraint)]
        uniques += [list(i.columns) for i in table.indexes if i.unique]
        for columns in uniques:
            keys = {tuple(row.get(c.name) for c in columns) for row in part.rows}
            keys = {k for k in keys if all(v is not None for v in k)}
            for start in range(0, len(keys), 200):
                chunk = sorted(keys, key=repr)[start:start + 200]
                clash = conn.execute(
                    select(*columns).where(or_(*[and_(*[c == v for c, v in zip(columns, key, strict=True)])
                                                 for key in chunk])).limit(1)
                ).first()
                if clash is not None:
                    shown = "、".join(_describe_value(table, c.name, v) for c, v in zip(columns, clash, strict=True)
                                     if c.name not in ("customer_id", "rule_id"))
                    raise UserError(f"无法恢复“{entry.label}”:{shown or '唯一值'}已被其他记录使用。"
                                    f"请先修改或删除那条记录,再恢复。")


def _table_label(name: str) -> str:
    if name == CUSTOMER_TABLE:
        return "客户"
    for kind in customer_records.kinds():
        if kind.model.__table__.name == name:  # type: ignore[attr-defined]
            return kind.label
    model = _model_of(name)
    return resource_label(audit.resource_of(model)) if model is not None else name


def _pointed_at(kept: list[KeptTable]) -> dict[Any, set[Any]]:
    """The rows outside the entry that the kept rows point at: target column → values."""
    inside = {part.table.name: set(part.ids) for part in kept}
    wanted: dict[Any, set[Any]] = {}
    for part in kept:
        for fk in part.table.foreign_keys:
            target = fk.column
            for row in part.rows:
                value = row.get(fk.parent.name)
                if value is None or value in inside.get(target.table.name, ()):
                    continue
                wanted.setdefault(target, set()).add(value)
    return wanted


def _fingerprints(conn: Connection, rows: dict[str, list[dict[str, Any]]]) -> list[list[Any]]:
    """[table, id, created_at] of every row outside the entry that its rows point at, when it was kept:
    a restore puts the rows back onto those very rows, not onto newer ones that were given the same id
    meanwhile (SQLite gives a deleted row's id to the next new row)."""
    tables = _tables()
    kept = [KeptTable(tables[name], found) for name, found in rows.items()]
    out: list[list[Any]] = []
    for target, values in _pointed_at(kept).items():
        table: Any = target.table
        if target.name != "id" or "created_at" not in table.c:
            continue
        for chunk in _in_chunks(list(values)):
            out += [[table.name, pk, _encode(made)] for pk, made in conn.execute(
                select(table.c.id, table.c.created_at).where(table.c.id.in_(chunk)))]
    return out


def _replaced(conn: Connection, entry: RecycleEntry) -> dict[str, list[Any]]:
    """Rows the entry points at whose id now names another row (one created since): table → ids."""
    tables = _tables()
    wanted: dict[str, dict[Any, Any]] = {}
    for name, pk, made in (entry.payload or {}).get("refs", []):
        if name in tables:
            wanted.setdefault(name, {})[pk] = made
    out: dict[str, list[Any]] = {}
    for name, made_of in wanted.items():
        table: Any = tables[name]
        for chunk in _in_chunks(list(made_of)):
            for pk, made in conn.execute(select(table.c.id, table.c.created_at).where(table.c.id.in_(chunk))):
                if _encode(made) != made_of[pk]:
                    out.setdefault(name, []).append(pk)
    return out


def _check_references(conn: Connection, entry: RecycleEntry, kept: list[KeptTable]) -> None:
    """Every row the kept rows point at (outside the entry) is still there — the same row, not a newer
    one that was given its id."""
    replaced = _replaced(conn, entry)
    for target, values in _pointed_at(kept).items():
        present: set[Any] = set()
        for chunk in _in_chunks(list(values)):
            present.update(conn.execute(select(target).where(target.in_(chunk))).scalars())
        present -= set(replaced.get(target.table.name, ())) if target.name == "id" else set()
        missing = sorted(values - present)
        if not missing:
            continue
        table = target.table.name
        if table == CUSTOMER_TABLE:
            raise UserError(f"无法恢复“{entry.label}”:所属客户已不存在(已被删除或合并)。"
                            f"如该客户在回收站中,请先恢复该客户。")
        raise UserError(f"无法恢复“{entry.label}”:关联的{_table_label(table)}(ID {missing[0]})已不存在。")


def _check_owner(session: Session, entry: RecycleEntry, kept: list[KeptTable]) -> None:
    """The record's own manager (a customer's, an opportunity's, an order's) is still an active user."""
    root_table = next((t for t, r in kept_tables().items() if r == entry.resource), None)
    root = next((p for p in kept if p.table.name == root_table), None)
    if root is None or "manager_id" not in root.table.c:
        return
    row = next((r for r in root.rows if r["id"] == entry.record_id), None)
    manager_id = row.get("manager_id") if row else None
    if manager_id is None:
        return
    user = session.get(SysUser, manager_id)
    if user is not None and not user.is_active:
        name = user.real_name or user.username
        raise UserError(f"无法恢复“{entry.label}”:负责人“{name}”已停用。请先由管理员启用该用户,"
                        f"恢复后再转移给其他人。")


def _check_customer_scope(conn: Connection, principal: Principal, entry: RecycleEntry) -> int | None:
    """A contact, opportunity or order goes back to its customer, which must be within the restorer's
    scope now (the customer may have changed hands since); its current manager is returned."""
    if entry.resource == "customer" or entry.customer_id is None:
        return None
    customers: Any = _tables()[CUSTOMER_TABLE]
    stmt = select(customers.c.manager_id).where(customers.c.id == entry.customer_id)
    model = _model_of(CUSTOMER_TABLE)
    clause = scope_clause(model, principal, "restore", resource=RESOURCE) if model is not None else None
    if conn.execute(stmt).first() is None:
        raise UserError(f"无法恢复“{entry.label}”:所属客户已不存在(已被删除或合并)。"
                        f"如该客户在回收站中,请先恢复该客户。")
    row = conn.execute(stmt if clause is None else stmt.where(clause)).first()
    if row is None:
        raise UserError(f"无法恢复“{entry.label}”:所属客户“{entry.customer_name or ''}”不在您的数据范围内。")
    return row.manager_id


def _carry_managers(conn: Connection, kept: list[KeptTable]) -> None:
    """Restored records carry their customer's current manager (``customer_manager_id``), as every
    other write keeps them (``customers.models.CarriesCustomerManager``)."""
    customers: Any = _tables()[CUSTOMER_TABLE]
    for part in kept:
        table: Any = part.table
        if "customer_manager_id" not in table.c or "customer_id" not in table.c:
            continue
        current = (select(customers.c.manager_id).where(customers.c.id == table.c.customer_id)
                   .scalar_subquery())
        for ids in _in_chunks(part.ids):
            conn.execute(update(table).where(table.c.id.in_(ids))
                         .values(customer_manager_id=current, updated_at=table.c.updated_at))


def _reindex(conn: Connection, kept: list[KeptTable]) -> None:
    for part in kept:
        model = _model_of(part.table.name)
        if model is not None and search.searchable(model) is not None:
            for ids in _in_chunks(part.ids):
                search.index_where(conn, model, model.id.in_(ids))


def restore_entry(session: Session, principal: Principal, entry: RecycleEntry) -> dict[str, int]:
    """Put ``entry``'s rows back with their original ids (checked first; nothing changed on a refusal);
    table → rows restored."""
    conn = session.connection()
    kept = read_payload(entry.payload)
    _check_references(conn, entry, kept)  # first: the customer by that id must be the same one
    current_manager = _check_customer_scope(conn, principal, entry)
    _check_free(conn, entry, kept)
    _check_owner(session, entry, kept)
    for part in kept:
        if part.rows:
            conn.execute(insert(part.table), part.rows)
    _carry_managers(conn, kept)
    recycling.after_restore(session, {part.table.name: part.ids for part in kept if part.rows})
    for part in kept:  # the totals kept beside these tables count the rows put back (core/totals.py)
        model = _model_of(part.table.name)
        if model is not None and part.ids:
            totals.added(conn, model, part.ids)
    if entry.customer_id is not None and entry.resource != "customer" and current_manager != entry.manager_id:
        # the customer changed hands while the record was in the bin: its open work follows, as on a transfer
        customer_records.hand_over_open_work(session, [entry.customer_id], current_manager, utcnow())
    _reindex(conn, kept)
    restored = {part.table.name: len(part.rows) for part in kept}
    audit.record(
        session, "restore", resource=entry.resource, resource_id=entry.record_id,
        changes={"recycle_bin_id": entry.id, "rows": restored,
                 "deleted_at": entry.deleted_at, "deleted_by": entry.deleted_by_name},
        detail=f"从回收站恢复{resource_label(entry.resource)}“{entry.label}”{entry.summary}",
    )
    bin_table: Any = RecycleEntry.__table__
    conn.execute(delete(bin_table).where(bin_table.c.id == entry.id))
    return restored


def _restore_order(entry: RecycleEntry) -> tuple[int, Any, int]:
    # customers first (a contact in the same batch goes back to its restored customer), oldest first
    return (0 if entry.resource == "customer" else 1, entry.deleted_at, entry.id)


def restore_entries(session: Session, principal: Principal, ids: Sequence[int]) -> list[RecycleEntry]:
    """Restore the chosen entries, all or none (one transaction: the caller's)."""
    entries = chosen_entries(session, principal, ids, "restore", lock=True)
    for entry in sorted(entries, key=_restore_order):
        restore_entry(session, principal, entry)
    return entries


# ----- purging -------------------------------------------------------------------------------------------

def _purge_audit(entry: Any, *, expired: bool) -> audit.Entry:
    how = "过期自动" if expired else ""
    return audit.Entry(
        "purge", str(entry.resource), str(entry.record_id),
        {"recycle_bin_id": entry.id, "rows": entry.row_count, "deleted_at": entry.deleted_at,
         "deleted_by": entry.deleted_by_name, "expired": expired},
        f"{how}彻底删除回收站中的{resource_label(entry.resource)}“{entry.label}”",
    )


def purge_entries(session: Session, principal: Principal, ids: Sequence[int]) -> list[RecycleEntry]:
    """Purge the chosen entries for good (audited), all or none."""
    entries = chosen_entries(session, principal, ids, "purge", lock=True)
    table: Any = RecycleEntry.__table__
    session.connection().execute(delete(table).where(table.c.id.in_([e.id for e in entries])))
    audit.write_entries(session.connection(), [_purge_audit(e, expired=False) for e in entries])
    return entries


def purge_expired(session: Session, now: dt.datetime, *, batch: int = 500) -> int:
    """Purge every entry whose time in the bin is over (the daily job); entries purged. Idempotent: a
    second run finds nothing left to purge."""
    table: Any = RecycleEntry.__table__
    conn = session.connection()
    done = 0
    while True:
        rows = conn.execute(
            select(table.c.id, table.c.resource, table.c.record_id, table.c.label, table.c.row_count,
                   table.c.deleted_at, table.c.deleted_by_name)
            .where(table.c.expires_at <= now).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return done
        conn.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        audit.write_entries(conn, [_purge_audit(r, expired=True) for r in rows])
        done += len(rows)
