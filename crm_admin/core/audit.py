"""The audit writer.

Every ORM flush that creates, changes or deletes an audited row writes its audit rows on the same
connection, inside the same transaction: a rolled-back change leaves no audit row, a committed one
always has one. Events without a row change (login, export, permission_denied…) go through
``record``. Rows are chained by SHA-256 so that an edited or removed row is detected by ``verify_chain``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, inspect, select, update
from sqlalchemy.orm import Session

from crm_admin.core.context import Actor, current_actor
from crm_admin.db import Base, run_in_transaction, utcnow

# Tables whose writes are bookkeeping rather than business changes.
# Sign-in bookkeeping (sessions, lock-out counters) is audited as login/logout/lockout events instead.
UNAUDITED_TABLES = {"audit_log", "job_run", "job_lease", "sys_meta", "sys_session", "login_guard"}
# Columns whose changes alone do not make an audit row (they are audited semantically, or noise).
QUIET_COLUMNS = {
    "updated_at", "created_at", "version", "failed_logins", "last_login_at", "last_login_ip",
    "locked_until", "last_failed_login_at", "session_epoch", "name_key", "birthday_md", "customer_manager_id",
}
SECRET_COLUMNS = {"password_hash"}
CHAIN_KEY = "audit_chain"

# session.info keys a service may set
INFO_ACTION = "audit_action"  # e.g. "transfer": label the rows this unit of work writes
INFO_SILENT = "audit_silent"  # True: the service writes its own summary row (bulk import)


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def resource_of(obj_or_cls: Any) -> str:
    cls: Any = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return getattr(cls, "__resource__", "") or str(cls.__tablename__)


@dataclass
class Entry:
    action: str
    resource: str
    resource_id: str = ""
    changes: dict[str, Any] | None = None
    detail: str | None = None
    success: bool = True


def _snapshot(obj: Any) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    out: dict[str, Any] = {}
    for attr in mapper.column_attrs:
        key = attr.key
        if key in {"created_at", "updated_at"}:
            continue
        value = getattr(obj, key, None)
        out[key] = "***" if key in SECRET_COLUMNS else _jsonable(value)
    return out


def _diff(obj: Any) -> dict[str, Any]:
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        hist = state.attrs[key].history
        if not hist.has_changes():
            continue
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if old == new:
            continue
        if key in SECRET_COLUMNS:
            out[key] = ["***", "***(已修改)"]
        else:
            out[key] = [_jsonable(old), _jsonable(new)]
    return out


def _row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    payload = json.dumps(
        [
            prev_hash,
            row["occurred_at"].astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
            row["user_id"],
            row["username"],
            row["ip"],
            row["action"],
            row["resource"],
            row["resource_id"],
            row["changes"],
            row["detail"],
            bool(row["success"]),
        ],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _lock_chain(conn: Connection) -> str:
    """Serialise audit writers and return the hash of the newest row (the chain head)."""
    table = Base.metadata.tables["audit_log"]
    meta = Base.metadata.tables["sys_meta"]
    got = conn.execute(
        select(meta.c.value).where(meta.c.key == CHAIN_KEY).with_for_update()
    ).first()
    if got is None:
        try:
            with conn.begin_nested():
                conn.execute(meta.insert().values(key=CHAIN_KEY, value=0))
        except Exception:  # another process created it first
            pass
        conn.execute(select(meta.c.value).where(meta.c.key == CHAIN_KEY).with_for_update())
    last = conn.execute(
        select(table.c.hash).order_by(table.c.id.desc()).limit(1).with_for_update()
    ).first()
    return last[0] if last else ""


def write_entries(conn: Connection, entries: Iterable[Entry], actor: Actor | None = None) -> int:
    entries = list(entries)
    if not entries:
        return 0
    actor = actor or current_actor()
    prev = _lock_chain(conn)
    table = Base.metadata.tables["audit_log"]
    meta = Base.metadata.tables["sys_meta"]
    for e in entries:
        now = utcnow()
        row: dict[str, Any] = {
            "occurred_at": now,
            "user_id": actor.user_id,
            "username": actor.username[:64],
            "ip": actor.ip[:64],
            "user_agent": actor.user_agent[:255],
            "action": e.action,
            "resource": e.resource,
            "resource_id": str(e.resource_id)[:64],
            "changes": _jsonable(e.changes) if e.changes is not None else None,
            "detail": e.detail,
            "success": e.success,
            "created_at": now,
            "updated_at": now,
        }
        row["prev_hash"] = prev
        row["hash"] = prev = _row_hash(prev, row)
        conn.execute(table.insert().values(**row))
    conn.execute(update(meta).where(meta.c.key == CHAIN_KEY).values(value=meta.c.value + len(entries)))
    return len(entries)


def record(
    session: Session,
    action: str,
    *,
    resource: str = "",
    resource_id: Any = "",
    changes: dict[str, Any] | None = None,
    detail: str | None = None,
    success: bool = True,
    actor: Actor | None = None,
) -> None:
    """Write one audit row in ``session``'s transaction (commits with it, rolls back with it)."""
    entry = Entry(action, resource, str(resource_id or ""), changes, detail, success)
    write_entries(session.connection(), [entry], actor)


def record_now(action: str, **kwargs: Any) -> None:
    """Write an audit row in a transaction of its own (events with no business change), run again
    on a passing database error (a deadlock on the chain head, a cluster node leaving)."""
    run_in_transaction(lambda session: record(session, action, **kwargs), where="audit")


@event.listens_for(Session, "after_flush")
def _audit_flush(session: Session, _flush_context: Any) -> None:
    if session.info.get(INFO_SILENT):
        return
    label = session.info.get(INFO_ACTION)
    entries: list[Entry] = []
    for obj in list(session.new):
        if _audited(obj):
            entries.append(Entry(label or _verb(obj, "create"), resource_of(obj), _pk(obj), _snapshot(obj)))
    for obj in list(session.dirty):
        if _audited(obj) and session.is_modified(obj, include_collections=False):
            changes = _diff(obj)
            if changes and set(changes) - QUIET_COLUMNS:
                entries.append(Entry(label or _verb(obj, "update"), resource_of(obj), _pk(obj), changes))
    for obj in list(session.deleted):
        if _audited(obj):
            entries.append(Entry(label or _verb(obj, "delete"), resource_of(obj), _pk(obj), _snapshot(obj)))
    if entries:
        write_entries(session.connection(), entries)


def _audited(obj: Any) -> bool:
    table = getattr(type(obj), "__tablename__", None)
    return bool(table) and table not in UNAUDITED_TABLES


def _verb(obj: Any, default: str) -> str:
    return "policy_change" if type(obj).__tablename__ == "casbin_rule" else default


def _pk(obj: Any) -> str:
    ident = inspect(obj).identity
    if ident:
        return ",".join(str(v) for v in ident)
    return str(getattr(obj, "id", "") or "")


def verify_chain(conn: Connection, batch: int = 5000) -> tuple[int, int | None]:
    """Walk the chain in id order. Returns (rows checked, id of the first broken row or None)."""
    table = Base.metadata.tables["audit_log"]
    prev = ""
    checked = 0
    last_id = 0
    while True:
        rows = conn.execute(
            select(table).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).mappings().all()
        if not rows:
            return checked, None
        for row in rows:
            data = dict(row)
            if data["prev_hash"] != prev or _row_hash(prev, data) != data["hash"]:
                return checked, int(data["id"])
            prev = data["hash"]
            checked += 1
            last_id = data["id"]
