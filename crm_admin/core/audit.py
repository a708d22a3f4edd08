"""The audit writer.

Every ORM flush that creates, changes or deletes an audited row writes its audit rows on the same
connection, inside the same transaction: a rolled-back change leaves no audit row, a committed one
always has one. Events without a row change (login, export, permission_denied…) go through
``record``. Those rows are written unsealed: a business transaction reads and locks no shared row for
the audit log, so writers never wait for each other here (nor conflict on a cluster). ``seal_pending``
(the scheduler runs it every few seconds, on one node at a time) chains the committed rows by SHA-256
in the order it seals them (``seal_seq``), so that an edited or removed sealed row is detected by
``verify_chain``, which also reports the unsealed tail.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, event, func, inspect, select, update
from sqlalchemy.orm import Session

from crm_admin.core.context import Actor, current_actor
from crm_admin.core.formatting import local_now
from crm_admin.core.i18n import gettext as _
from crm_admin.db import Base, run_in_transaction, utcnow

# Tables whose writes are bookkeeping rather than business changes.
# Sign-in bookkeeping (sessions, lock-out counters) is audited as login/logout/lockout events instead.
UNAUDITED_TABLES = {"audit_log", "audit_daily", "audit_daily_user", "audit_daily_user_total", "job_run", "job_lease", "sys_meta", "sys_session", "login_guard",
                    # a second factor's recovery codes: audited as totp_enable / totp_reset / login
                    "user_recovery_code",
                    # the answers replayed to repeated API creates (the create itself is audited)
                    "api_idempotency",
                    # notifications and their deliveries are the events' echo, not changes of their own;
                    # a retried delivery is audited as notification_retry, channels are audited
                    "notification", "notification_outbox"}
# Columns whose changes alone do not make an audit row (they are audited semantically, or noise).
QUIET_COLUMNS = {
    "updated_at", "created_at", "version", "failed_logins", "last_login_at", "last_login_ip",
    "locked_until", "last_failed_login_at", "session_epoch", "name_key", "birthday_md", "customer_manager_id",
    # the second factor's state: audited semantically (totp_enable, totp_disable, totp_reset, login)
    "totp_secret", "totp_enabled_at", "totp_last_step",
    # an API token's last use (bookkeeping of every call)
    "last_used_at",
}
SECRET_COLUMNS = {"password_hash", "totp_secret", "token_hash", "secret"}
# how the channel an actor came through is marked in the ``detail`` of the rows it writes (the detail
# is part of each row's sealed hash; no column of the chain changes)
CHANNEL_MARKS = {"api": "[API]"}
# sys_meta: the seal_seq of the newest sealed row, written by the sealer only (never by a business
# transaction), so that removing the last sealed rows is seen too.
SEAL_KEY = "audit_seal"
# unsealed rows older than this mean the sealing job is not running
SEAL_STALE_AFTER = dt.timedelta(minutes=10)
SEAL_STATEMENT_ROWS = 500  # rows sealed by one batch of statements

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


def write_entries(conn: Connection, entries: Iterable[Entry], actor: Actor | None = None) -> int:
    """Insert audit rows in the caller's transaction, unsealed: no shared row is read or locked here
    (``seal_pending`` chains them once they are committed)."""
    entries = list(entries)
    if not entries:
        return 0
    actor = actor or current_actor()
    table = Base.metadata.tables["audit_log"]
    rows: list[dict[str, Any]] = []
    mark = CHANNEL_MARKS.get(actor.channel, "")
    for e in entries:
        now = utcnow()
        detail = e.detail
        if mark:
            detail = f"{mark} {detail}" if detail else mark
        rows.append({
            "occurred_at": now,
            "user_id": actor.user_id,
            "username": actor.username[:64],
            "ip": actor.ip[:64],
            "user_agent": actor.user_agent[:255],
            "action": e.action,
            "resource": e.resource,
            "resource_id": str(e.resource_id)[:64],
            "changes": _jsonable(e.changes) if e.changes is not None else None,
            "detail": detail,
            "success": e.success,
            "prev_hash": None,
            "hash": None,
            "seal_seq": None,
            "created_at": now,
            "updated_at": now,
        })
    conn.execute(table.insert(), rows)
    return len(rows)


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


@contextmanager
def itemised(session: Session) -> Iterator[None]:
    """Inside, every flush of ``session`` writes its audit rows row by row even when the unit of work
    is ``INFO_SILENT`` (an import that creates silently and updates with the form's field-level diff)."""
    silent = session.info.pop(INFO_SILENT, None)
    try:
        yield
    finally:
        if silent is not None:
            session.info[INFO_SILENT] = silent


def record_now(action: str, **kwargs: Any) -> None:
    """Write an audit row in a transaction of its own (events with no business change), run again
    on a passing database error (a deadlock, a cluster node leaving)."""
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


# ----- sealing: the hash chain, built after the fact by one sealer at a time ------------------------

class SealConflict(RuntimeError):
    """The rows being sealed changed under the sealer (removed meanwhile); this pass changed nothing."""


@dataclass(frozen=True)
class SealResult:
    sealed: int  # rows chained by this pass
    head_seq: int  # seal_seq of the newest sealed row (0: none yet)


Executor = Connection | Session


def _recorded_head(db: Executor, *, lock: bool) -> int | None:
    meta = Base.metadata.tables["sys_meta"]
    stmt = select(meta.c.value).where(meta.c.key == SEAL_KEY)
    return db.execute(stmt.with_for_update() if lock else stmt).scalar()


def _seal_batch(db: Executor, batch: int) -> SealResult:
    table = Base.metadata.tables["audit_log"]
    meta = Base.metadata.tables["sys_meta"]
    # Sealers queue here: only they ever write this row, and writing it first (a row lock on MariaDB,
    # the write lock on SQLite) also makes what is read next the state committed by now, a concurrent
    # sealer's rows included.
    claimed = db.execute(update(meta).where(meta.c.key == SEAL_KEY).values(value=meta.c.value))
    if not getattr(claimed, "rowcount", 0):
        db.execute(meta.insert().values(key=SEAL_KEY, value=0))
    recorded = _recorded_head(db, lock=True) or 0
    head = db.execute(
        select(table.c.seal_seq, table.c.hash).where(table.c.seal_seq.is_not(None))
        .order_by(table.c.seal_seq.desc()).limit(1)
    ).first()
    last_seq, prev = (int(head[0]), str(head[1] or "")) if head else (0, "")
    # Sealed rows missing at the end of the chain leave their numbers unused: verify_chain still
    # sees the gap, instead of the chain silently going on from what is left.
    seq = max(last_seq, int(recorded))
    rows = db.execute(
        select(table).where(table.c.seal_seq.is_(None)).order_by(table.c.id).limit(batch)
    ).mappings().all()
    seals: list[tuple[int, int, str, str]] = []  # (id, seal_seq, prev_hash, hash)
    for row in rows:
        seq += 1
        digest = _row_hash(prev, dict(row))
        seals.append((int(row["id"]), seq, prev, digest))
        prev = digest
    for start in range(0, len(seals), SEAL_STATEMENT_ROWS):
        _write_seals(db, seals[start:start + SEAL_STATEMENT_ROWS])
    if rows:
        db.execute(update(meta).where(meta.c.key == SEAL_KEY).values(value=seq))
        count_daily(db, rows)
    return SealResult(len(rows), seq)


# ----- daily counts of the sealed rows (the analysis page) ------------------------------------------

DailyKey = tuple[dt.date, str, int, str, str, bool]  # day, username, user_id, action, resource, success


def daily_key(row: Mapping[str, Any], offset: dt.timedelta | None = None) -> DailyKey:
    """The counting key of one audit row: its company day (the fixed offset ``local_date_sql`` uses)."""
    if offset is None:
        offset = local_now().utcoffset() or dt.timedelta(0)
    at = _as_utc(row["occurred_at"])
    assert at is not None
    return ((at + offset).date(), str(row["username"] or ""), int(row["user_id"] or 0), str(row["action"]),
            str(row["resource"] or ""), bool(row["success"]))


def count_daily(db: Executor, rows: Iterable[Any]) -> None:
    """Add ``rows`` (being sealed, in the sealing transaction) to ``audit_daily``,
    ``audit_daily_user`` and ``audit_daily_user_total``. Only sealers write these tables, one at a time (they queue on the
    ``audit_seal`` row), so an insert-or-add per key is enough."""
    offset = local_now().utcoffset() or dt.timedelta(0)
    per_user = Counter(daily_key(row, offset) for row in rows)
    add_daily_counts(db, per_user)


def add_daily_counts(db: Executor, per_user: Mapping[DailyKey, int]) -> None:
    if not per_user:
        return
    totals: Counter[tuple[dt.date, str, str, bool]] = Counter()
    user_totals: Counter[tuple[dt.date, str, int]] = Counter()
    for (day, user, uid, action, resource, success), n in per_user.items():
        totals[(day, action, resource, success)] += n
        user_totals[(day, user, uid)] += n
    _upsert(db, "audit_daily", [
        {"day": day, "action": action, "resource": resource, "success": success, "n": n}
        for (day, action, resource, success), n in totals.items()])
    _upsert(db, "audit_daily_user", [
        {"day": day, "username": user, "user_id": uid, "action": action, "resource": resource,
         "success": success, "n": n}
        for (day, user, uid, action, resource, success), n in per_user.items()])
    _upsert(db, "audit_daily_user_total", [
        {"day": day, "username": user, "user_id": uid, "n": n} for (day, user, uid), n in user_totals.items()])


def _upsert(db: Executor, name: str, values: list[dict[str, Any]]) -> None:
    table = Base.metadata.tables[name]
    dialect = (db.get_bind() if isinstance(db, Session) else db).dialect.name
    stmt: Any
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update(n=table.c.n + stmt.inserted.n)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=[c.name for c in table.primary_key.columns],
                                          set_={"n": table.c.n + stmt.excluded.n})
    for start in range(0, len(values), SEAL_STATEMENT_ROWS):
        db.execute(stmt, values[start:start + SEAL_STATEMENT_ROWS])


def _write_seals(db: Executor, seals: list[tuple[int, int, str, str]]) -> None:
    """Each row by its primary key, sent as one batch (executemany).

    By primary key only, each row on its own: a condition on ``seal_seq`` or a list of ids lets
    MariaDB scan (the NULL range of the index, or the whole table when it is small) and lock rows of
    open business transactions, which would make the sealer wait for them (and them for it). Rows
    sealed meanwhile by another sealer cannot be overwritten: sealers queue on the ``audit_seal``
    row, and on a cluster the loser of two sealers fails at commit."""
    table = Base.metadata.tables["audit_log"]
    done = db.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values(seal_seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")),
        [{"b_id": i, "b_seq": seq, "b_prev": prev, "b_hash": digest} for i, seq, prev, digest in seals],
    )
    matched = getattr(done, "rowcount", -1)
    if matched not in (-1, len(seals)):
        raise SealConflict("audit rows went missing while being sealed")


def seal_pending(db: Executor, *, batch: int = 2000, limit: int | None = None) -> SealResult:
    """Chain every committed unsealed audit row, in id order, after the newest sealed one.

    Each row gets the next ``seal_seq`` and its hash (the previous sealed row's hash and its own
    content). One transaction per ``batch`` rows on ``db``, committed here: this is a unit of work
    of its own (the scheduler's sealing job, ``crm-admin audit seal``). The chain order is the seal
    order, not the id order: a row committed after rows with higher ids (ids are handed out at insert,
    and on a cluster interleaved between nodes) is simply sealed by a later pass. A second sealer
    running at the same moment waits for the first (``sys_meta`` row ``audit_seal``), or, on another
    cluster node, fails at commit and changes nothing (``seal_seq`` is unique).
    """
    total = 0
    head = SealResult(0, 0)
    while True:
        size = batch if limit is None else min(batch, limit - total)
        if size <= 0:
            break
        try:
            head = _seal_batch(db, size)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        total += head.sealed
        if head.sealed < size:
            break
    return SealResult(total, head.head_seq)


@dataclass
class ChainReport:
    """What ``verify_chain`` found: the sealed part checked, and the unsealed tail."""

    checked: int = 0  # sealed rows whose hash and link were checked
    broken_id: int | None = None  # the first sealed row that does not fit the chain
    problem: str | None = None  # changed / missing / missing_end (see ``describe_problem``)
    missing: int = 0  # sealed rows missing (before broken_id, or at the end)
    head_seq: int = 0  # the newest sealed row's number, as the sealer recorded it
    unsealed: int = 0  # rows not sealed yet (the tail)
    oldest_unsealed_at: dt.datetime | None = None
    now: dt.datetime = field(default_factory=utcnow)

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def tail_age(self) -> dt.timedelta | None:
        if self.oldest_unsealed_at is None:
            return None
        return max(dt.timedelta(0), self.now - self.oldest_unsealed_at)

    @property
    def sealing_stalled(self) -> bool:
        """Unsealed rows older than ``SEAL_STALE_AFTER``: the sealing job is not running."""
        age = self.tail_age
        return age is not None and age > SEAL_STALE_AFTER


def unsealed_tail(db: Executor) -> tuple[int, dt.datetime | None]:
    """How many audit rows are not sealed yet, and when the oldest of them was written."""
    table = Base.metadata.tables["audit_log"]
    count, oldest = db.execute(
        select(func.count(), func.min(table.c.occurred_at)).where(table.c.seal_seq.is_(None))
    ).one()
    return int(count or 0), _as_utc(oldest)


def chain_status(db: Executor) -> ChainReport:
    """The chain's head and unsealed tail, without walking it (cheap: for a page)."""
    report = ChainReport(head_seq=int(_recorded_head(db, lock=False) or 0))
    report.unsealed, report.oldest_unsealed_at = unsealed_tail(db)
    return report


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands aggregates back as text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def verify_chain(db: Executor, batch: int = 5000) -> ChainReport:
    """Walk the sealed rows in seal order and report the first one that breaks the chain: a changed
    row (its hash does not match its content), removed rows (a gap in the seal numbers, or a link to
    a hash that is not the previous row's), removed rows at the end (fewer than the sealer recorded).
    Also counts the unsealed tail. One read transaction, so the walk sees one consistent state."""
    table = Base.metadata.tables["audit_log"]
    report = ChainReport(head_seq=int(_recorded_head(db, lock=False) or 0))
    report.unsealed, report.oldest_unsealed_at = unsealed_tail(db)
    prev = ""
    last_seq = 0
    while True:
        rows = db.execute(
            select(table).where(table.c.seal_seq > last_seq).order_by(table.c.seal_seq).limit(batch)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            data = dict(row)
            seq = int(data["seal_seq"])
            if seq != last_seq + 1:
                report.broken_id, report.problem, report.missing = int(data["id"]), "missing", seq - last_seq - 1
                return report
            if _row_hash(str(data["prev_hash"] or ""), data) != data["hash"]:
                report.broken_id, report.problem = int(data["id"]), "changed"
                return report
            if data["prev_hash"] != prev:
                report.broken_id, report.problem = int(data["id"]), "missing"
                return report
            prev = str(data["hash"])
            last_seq = seq
            report.checked += 1
    if last_seq < report.head_seq:
        report.problem, report.missing = "missing_end", report.head_seq - last_seq
    return report


def describe_problem(report: ChainReport) -> str:
    """The verdict on the sealed part, for people (Chinese; English through the message catalog)."""
    if report.problem is None:
        return _("审计日志完整:已校验 {checked} 条已封存的记录。").format(checked=report.checked)
    if report.problem == "changed":
        return _("审计日志被篡改:第 {n} 条已封存的记录(id={id})的内容与封存时不同(该记录被修改)。").format(
            n=report.checked + 1, id=report.broken_id)
    if report.problem == "missing":
        return _("审计日志被篡改:已封存的记录(id={id})之前缺少记录(有记录被删除,或被修改了封存信息)。").format(
            id=report.broken_id)
    return _("审计日志被篡改:最后 {n} 条已封存的记录不见了(被删除)。").format(n=report.missing)


def describe_head(report: ChainReport) -> str:
    return _("哈希链:已封存 {n} 条记录(逐条完整校验在服务器上运行,见说明文档)。").format(n=report.head_seq)


def describe_tail(report: ChainReport) -> str:
    """The unsealed tail, for people: normal when small and recent, a warning when the job is not running."""
    if not report.unsealed:
        return _("未封存的尾部:无。")
    age = report.tail_age or dt.timedelta(0)
    seconds = int(age.total_seconds())
    text = _("未封存的尾部:{n} 条记录,最早的写于 {age}前(封存任务每隔几秒把新记录接入哈希链)。").format(
        n=report.unsealed, age=_duration(seconds))
    if report.sealing_stalled:
        text += _("超过 {minutes} 分钟仍未封存:封存任务没有运行,请检查定时任务。").format(
            minutes=int(SEAL_STALE_AFTER.total_seconds() // 60))
    return text


def _duration(seconds: int) -> str:
    if seconds < 120:
        return _("{n} 秒").format(n=seconds)
    if seconds < 7200:
        return _("{n} 分钟").format(n=seconds // 60)
    return _("{n} 小时").format(n=seconds // 3600)
