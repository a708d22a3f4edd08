"""Public pools (公海): return customers to a pool, claim (领取) and assign (分配) them from it.

Exactly once under concurrency: a customer leaves a pool by one conditional UPDATE (``WHERE id IN …
AND pool_id = ? AND manager_id IS NULL``) whose row count decides; of two users claiming the same
customer at once one gets it, the other a message. A user's holding and daily claim limits are
counted while that user's ``sys_user`` row is locked (a write to it), so two claims by the same user
at once are counted one after the other. Every move writes a ``customer_transfer`` row (the manager's
history), a ``customer_pool_log`` row (the pool's history, daily counts, the report) and an audit row,
hands what follows the manager over (``core.customer_records.hand_over_open_work``) and keeps the
records that carry the customer's manager equal to it (``follow_customers``), all in the caller's
transaction. Services never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, SysDept, SysRole, SysUser
from crm_admin.contacts.models import Linkman
from crm_admin.core import audit, customer_records, masking, notify, search
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.formatting import day_start_utc, local_date_sql, local_today, to_local
from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.core.scope import ASSIGN as ASSIGN_PURPOSE
from crm_admin.core.scope import check_assignee, scoped
from crm_admin.customers.models import Customer, follow_customers
from crm_admin.db import utcnow
from crm_admin.orders.models import CustomerOrder
from crm_admin.pools.models import (
    ASSIGN,
    CLAIM,
    RECLAIM,
    RETURN,
    CustomerPool,
    CustomerPoolAccess,
    CustomerPoolLimit,
    CustomerPoolLog,
)
from crm_admin.transfers.models import CustomerTransfer

RESOURCE = "pool"
REASON_MIN = 2
REASON_MAX = 500
MAX_BATCH = 500  # customers per claim, assignment or return
CLAIM_REASON = "从公海领取"
ASSIGN_REASON = "从公海分配"
RETURN_PREFIX = "退回公海:"
RECLAIM_PREFIX = "自动回收:"


@dataclass
class PoolResult:
    pool_id: int
    customers: list[int] = field(default_factory=list)
    # what followed the manager: hand-over key ("care_tasks") → rows
    handed_over: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.customers)


@dataclass(frozen=True)
class Limits:
    """A user's limits on a pool (None: unlimited)."""

    hold: int | None
    daily: int | None


# ----- who may use a pool ------------------------------------------------------------------------

def manages_pools(principal: Principal) -> bool:
    """Administrators of pools see every pool, active or not, and its customers."""
    return principal.can(RESOURCE, "edit")


def _dept_and_ancestors(session: Session, dept_id: int | None) -> set[int]:
    if dept_id is None:
        return set()
    parents = dict(session.execute(select(SysDept.id, SysDept.parent_id)).tuples().all())
    found: set[int] = set()
    current: int | None = dept_id
    while current is not None and current not in found:
        found.add(current)
        current = parents.get(current)
    return found


def usable_pools(session: Session, principal: Principal, action: str = "list") -> list[CustomerPool]:
    """The pools ``principal`` may use for ``action`` (list, view, claim, assign, return), by name:
    every pool for who manages pools (active ones only for claim, assign, return); otherwise the
    active pools whose access rows let the user in (none: open to everyone)."""
    if not principal.can(RESOURCE, action):
        return []
    stmt = select(CustomerPool).order_by(CustomerPool.name, CustomerPool.id)
    if manages_pools(principal):
        if action in ("claim", "assign", "return"):
            stmt = stmt.where(CustomerPool.is_active.is_(True))
        return list(session.execute(stmt).scalars())
    pools = list(session.execute(stmt.where(CustomerPool.is_active.is_(True))).scalars())
    if not pools:
        return []
    rules: dict[int, list[tuple[int | None, int | None]]] = {}
    for pool_id, dept_id, role_id in session.execute(
        select(CustomerPoolAccess.pool_id, CustomerPoolAccess.dept_id, CustomerPoolAccess.role_id)
        .where(CustomerPoolAccess.pool_id.in_([p.id for p in pools]))
    ):
        rules.setdefault(pool_id, []).append((dept_id, role_id))
    if not rules:
        return pools
    depts = _dept_and_ancestors(session, principal.dept_id)
    role_ids = set(session.execute(select(SysRole.id).where(SysRole.code.in_(sorted(principal.roles)))).scalars())
    out = []
    for pool in pools:
        listed = rules.get(pool.id)
        if not listed:
            out.append(pool)
            continue
        want_depts = {d for d, _r in listed if d is not None}
        want_roles = {r for _d, r in listed if r is not None}
        if (not want_depts or depts & want_depts) and (not want_roles or role_ids & want_roles):
            out.append(pool)
    return out


def usable_pool(session: Session, principal: Principal, pool_id: Any, action: str = "list") -> CustomerPool:
    """The pool ``pool_id`` if ``principal`` may use it for ``action``; NotFound otherwise (as if it
    did not exist)."""
    try:
        wanted = int(str(pool_id).strip())
    except (TypeError, ValueError):
        raise NotFound("公海不存在或您无权访问。") from None
    for pool in usable_pools(session, principal, action):
        if pool.id == wanted:
            return pool
    raise NotFound("公海不存在或您无权访问。")


# ----- limits --------------------------------------------------------------------------------------

def _most_generous(values: list[int | None]) -> int | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def limits_for(session: Session, pool: CustomerPool, user_id: int) -> Limits:
    """The user's limits on ``pool``: per role, the role's row or else the pool's default; of several
    roles the most generous (an unlimited one wins). A user without roles has the pool's defaults."""
    codes = _role_codes(session, user_id)
    roles = dict(session.execute(select(SysRole.code, SysRole.id).where(SysRole.code.in_(sorted(codes)))).tuples().all())
    rows = {r.role_id: r for r in session.execute(
        select(CustomerPoolLimit).where(CustomerPoolLimit.pool_id == pool.id,
                                        CustomerPoolLimit.role_id.in_(sorted(roles.values())))
    ).scalars()} if roles else {}
    if not roles:
        return Limits(pool.hold_limit, pool.daily_claim_limit)
    hold: list[int | None] = []
    daily: list[int | None] = []
    for role_id in roles.values():
        row = rows.get(role_id)
        hold.append(row.hold_limit if row is not None else pool.hold_limit)
        daily.append(row.daily_claim_limit if row is not None else pool.daily_claim_limit)
    return Limits(_most_generous(hold), _most_generous(daily))


def _role_codes(session: Session, user_id: int) -> set[str]:
    subjects = session.execute(
        select(CasbinRule.v1).where(CasbinRule.ptype == "g", CasbinRule.v0 == f"u:{user_id}")
    ).scalars()
    return {str(s).removeprefix("role:") for s in subjects}


def held_count(session: Session, user_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(Customer).where(Customer.manager_id == user_id))
               .scalar_one())


def claimed_today(session: Session, pool_id: int, user_id: int, now: dt.datetime | None = None) -> int:
    """Customers ``user_id`` claimed from the pool since the start of the company day (Asia/Shanghai)."""
    start = day_start_utc(local_today()) if now is None else _company_day_start(now)
    return int(session.execute(
        select(func.count()).select_from(CustomerPoolLog).where(
            CustomerPoolLog.user_id == user_id, CustomerPoolLog.kind == CLAIM,
            CustomerPoolLog.at >= start, CustomerPoolLog.pool_id == pool_id)
    ).scalar_one())


def _company_day_start(now: dt.datetime) -> dt.datetime:
    return day_start_utc(to_local(now).date())


def _lock_user(session: Session, user_id: int) -> None:
    """Hold the user's row until the end of the transaction: claims by the same user queue here (a
    write, so that SQLite takes its write lock now too). It must come before the transaction's first
    read: on MariaDB (REPEATABLE READ) that read fixes the snapshot the limits are counted in, which
    must include what the claim queued behind committed."""
    session.execute(update(SysUser).where(SysUser.id == user_id).values(updated_at=SysUser.updated_at))


def _check_limits(session: Session, pool: CustomerPool, user: SysUser, adding: int, *, daily: bool,
                  now: dt.datetime) -> None:
    limits = limits_for(session, pool, user.id)
    if limits.hold is not None:
        held = held_count(session, user.id)
        if held + adding > limits.hold:
            left = max(limits.hold - held, 0)
            raise UserError(
                f"{user} 已负责 {held} 个客户,在公海“{pool.name}”的持有上限为 {limits.hold} 个,"
                f"本次最多还能再领取 {left} 个。", field="customer_id")
    if daily and limits.daily is not None:
        done = claimed_today(session, pool.id, user.id, now)
        if done + adding > limits.daily:
            left = max(limits.daily - done, 0)
            raise UserError(
                f"今天已从公海“{pool.name}”领取 {done} 个客户,每日领取上限为 {limits.daily} 个,"
                f"今天最多还能再领取 {left} 个。", field="customer_id")


# ----- moving customers out of a pool ----------------------------------------------------------------

def _ids(customer_ids: Iterable[Any]) -> list[int]:
    ids: set[int] = set()
    for value in customer_ids:
        parsed = parse_id(str(value).strip())
        if parsed is None:
            raise UserError("所选客户无效,请刷新页面后重试。", field="customer_id")
        ids.add(parsed)
    if not ids:
        raise UserError("请至少选择一个客户。", field="customer_id")
    if len(ids) > MAX_BATCH:
        raise UserError(f"一次最多处理 {MAX_BATCH} 个客户。", field="customer_id")
    return sorted(ids)


def _take(session: Session, principal: Principal, pool: CustomerPool, ids: list[int], user: SysUser,
          kind: str, reason: str, now: dt.datetime) -> PoolResult:
    """Give ``ids`` (all in ``pool``) to ``user``: all of them or none."""
    in_pool = dict(session.execute(
        select(Customer.id, Customer.name).where(Customer.id.in_(ids), Customer.pool_id == pool.id)
    ).tuples().all())
    if len(in_pool) != len(ids):
        raise NotFound("所选客户已不在该公海中(可能刚被他人领取或分配),请刷新页面后重试。")
    moved = session.execute(
        update(Customer)
        .where(Customer.id.in_(ids), Customer.pool_id == pool.id, Customer.manager_id.is_(None))
        .values(manager_id=user.id, pool_id=None, pool_entered_at=None, version=Customer.version + 1,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(moved.rowcount or 0) != len(ids):  # type: ignore[attr-defined]
        # someone else took one of them between the read above and this update: nothing is kept
        raise Conflict("所选客户刚刚已被他人领取或分配,本次操作未执行,请刷新页面后重试。")
    follow_customers(session.connection(), ids)
    session.execute(insert(CustomerTransfer), [
        {"customer_id": i, "old_manager_id": None, "new_manager_id": user.id, "reason": reason,
         "transferred_at": now, "operator_id": principal.id, "created_at": now, "updated_at": now}
        for i in ids
    ])
    session.execute(insert(CustomerPoolLog), [
        {"customer_id": i, "pool_id": pool.id, "kind": kind, "user_id": user.id, "operator_id": principal.id,
         "reason": reason, "at": now, "created_at": now, "updated_at": now}
        for i in ids
    ])
    handed = customer_records.hand_over_open_work(session, ids, user.id, now)
    verb = "领取" if kind == CLAIM else f"分配给 {user}"
    _audit(session, kind, ids, handed, [
        audit.Entry(kind, "customer", str(i),
                    {"pool_id": pool.id, "manager_id": [None, user.id], "pool": pool.name, "reason": reason},
                    f"从公海“{pool.name}”{verb}客户“{in_pool[i]}”(联系方式随之可见)")
        for i in ids
    ])
    if kind == ASSIGN and user.id != principal.id:
        names = [in_pool[i] for i in ids]
        body = "、".join(names[:10]) + (f" 等 {len(names)} 个客户" if len(names) > 10 else "")
        link = (notify.Link("admin:view-customer-customer_360", {"pk": ids[0]}) if len(ids) == 1
                else notify.Link("admin:list", {"identity": "customer"}))
        notify.notify(session, "transferred", [user.id], f"从公海“{pool.name}”分配给您 {len(ids)} 个客户", body,
                      link, dedupe_key=f"pool_assign:{user.id}:{ids[0]}:{now.isoformat()}")
    return PoolResult(pool_id=pool.id, customers=ids, handed_over=handed)


def _audit(session: Session, kind: str, ids: list[int], handed: dict[str, int], entries: list[audit.Entry]) -> None:
    """One audit row per customer, in the caller's transaction; what moved with them (pending care
    tasks …) in the row of a single customer, or in one summary row of a batch."""
    if len(entries) == 1 and entries[0].changes is not None:
        entries[0].changes.update(handed)
    elif any(handed.values()):
        entries.append(audit.Entry(kind, "customer", ",".join(map(str, ids))[:64],
                                   {"customers": ids, **handed}, f"随 {len(ids)} 个客户移交的工作"))
    audit.write_entries(session.connection(), entries)


def claim_customers(
    session: Session,
    principal: Principal,
    *,
    pool_id: int,
    customer_ids: Iterable[Any],
    now: dt.datetime | None = None,
) -> PoolResult:
    """``principal`` claims (领取) ``customer_ids`` from the pool: all of them or none, within the
    claimer's holding limit and daily claim limit; of two claims of one customer at once exactly one
    succeeds, the other raises Conflict."""
    if not principal.can(RESOURCE, "claim"):
        raise Forbidden("您没有从公海领取客户的权限。")
    ids = _ids(customer_ids)
    _lock_user(session, principal.id)
    pool = usable_pool(session, principal, pool_id, "claim")
    now = now or utcnow()
    user = session.get(SysUser, principal.id)
    if user is None or not user.is_active:
        raise Forbidden("您的账号已停用。")
    _check_limits(session, pool, user, len(ids), daily=True, now=now)
    return _take(session, principal, pool, ids, user, CLAIM, CLAIM_REASON, now)


def assign_from_pool(
    session: Session,
    principal: Principal,
    *,
    pool_id: int,
    customer_ids: Iterable[Any],
    user_id: Any,
    now: dt.datetime | None = None,
) -> PoolResult:
    """A lead or an administrator gives (分配) ``customer_ids`` from the pool to ``user_id``, someone
    within their ``customer`` / ``assign`` scope who may own customers. The assignee's holding limit
    applies; the daily claim limit does not (it limits what one takes oneself) — unless the assignee is
    the principal, whose assignment to themselves is a claim."""
    if not principal.can(RESOURCE, "assign"):
        raise Forbidden("您没有从公海分配客户的权限。")
    ids = _ids(customer_ids)
    if user_id in (None, ""):
        raise UserError("请选择要分配给的客户经理。", field="user_id")
    wanted = parse_id(user_id)
    if wanted is not None:
        _lock_user(session, wanted)
    pool = usable_pool(session, principal, pool_id, "assign")
    user = check_assignee(session, principal, user_id, purpose=ASSIGN_PURPOSE, field="user_id")
    now = now or utcnow()
    if user.id == principal.id:
        # giving oneself customers is claiming them: the daily claim limit applies and the log says so
        _check_limits(session, pool, user, len(ids), daily=True, now=now)
        return _take(session, principal, pool, ids, user, CLAIM, CLAIM_REASON, now)
    _check_limits(session, pool, user, len(ids), daily=False, now=now)
    return _take(session, principal, pool, ids, user, ASSIGN, ASSIGN_REASON, now)


# ----- moving customers into a pool -------------------------------------------------------------

def clean_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if len(text) < REASON_MIN:
        raise UserError(f"请填写退回原因(至少 {REASON_MIN} 个字)。", field="reason")
    if len(text) > REASON_MAX:
        raise UserError(f"退回原因不能超过 {REASON_MAX} 个字。", field="reason")
    return text


def put_in_pool(
    session: Session,
    *,
    pool: CustomerPool,
    customers: list[tuple[int, int | None]],
    kind: str,
    reason: str,
    operator_id: int | None,
    now: dt.datetime,
) -> PoolResult:
    """Move ``customers`` — (id, its manager now), already locked and checked by the caller — into
    ``pool``: no manager, a transfer row to nobody ("退回公海:…" / "自动回收:…"), a pool log row, the
    open work handed over as the customer form does when the manager is removed (pending care tasks and
    open work keep no owner until someone claims the customer), one audit row per customer labelled
    ``kind`` (RETURN or RECLAIM). For the reclaim job too (``operator_id`` None)."""
    if kind not in (RETURN, RECLAIM):
        raise ValueError(f"not a way into a pool: {kind!r}")
    if not customers:
        return PoolResult(pool_id=pool.id)
    ids = sorted(i for i, _m in customers)
    olds = dict(customers)
    prefix = RETURN_PREFIX if kind == RETURN else RECLAIM_PREFIX
    moved = session.execute(
        update(Customer).where(Customer.id.in_(ids), Customer.pool_id.is_(None))
        .values(manager_id=None, pool_id=pool.id, pool_entered_at=now, version=Customer.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(moved.rowcount or 0) != len(ids):  # type: ignore[attr-defined]
        raise Conflict("所选客户刚刚已被他人放入公海,本次操作未执行,请刷新页面后重试。")
    follow_customers(session.connection(), ids)
    session.execute(insert(CustomerTransfer), [
        {"customer_id": i, "old_manager_id": olds[i], "new_manager_id": None, "reason": (prefix + reason)[:500],
         "transferred_at": now, "operator_id": operator_id, "created_at": now, "updated_at": now}
        for i in ids
    ])
    session.execute(insert(CustomerPoolLog), [
        {"customer_id": i, "pool_id": pool.id, "kind": kind, "user_id": olds[i], "operator_id": operator_id,
         "reason": reason[:500], "at": now, "created_at": now, "updated_at": now}
        for i in ids
    ])
    handed = customer_records.hand_over_open_work(session, ids, None, now)
    label = "退回" if kind == RETURN else "自动回收"
    _audit(session, kind, ids, handed, [
        audit.Entry(kind, "customer", str(i),
                    {"pool_id": pool.id, "manager_id": [olds[i], None], "pool": pool.name, "reason": reason},
                    f"客户{label}公海“{pool.name}”:{reason}"[:1000])
        for i in ids
    ])
    return PoolResult(pool_id=pool.id, customers=ids, handed_over=handed)


def return_to_pool(
    session: Session,
    principal: Principal,
    *,
    pool_id: int,
    customer_ids: Iterable[Any],
    reason: str | None,
    now: dt.datetime | None = None,
) -> PoolResult:
    """Return (退回) ``customer_ids`` — customers within the principal's ``pool`` / ``return`` scope —
    to a pool the principal may use, with a reason (2–500 characters): all of them or none."""
    if not principal.can(RESOURCE, "return"):
        raise Forbidden("您没有把客户退回公海的权限。")
    ids = _ids(customer_ids)
    text = clean_reason(reason)
    if not pool_id:
        raise UserError("请选择要退回的公海。", field="pool_id")
    pool = usable_pool(session, principal, pool_id, "return")
    rows = session.execute(
        scoped(select(Customer.id, Customer.name, Customer.manager_id, Customer.pool_id)
               .where(Customer.id.in_(ids)), Customer, principal, "return", resource=RESOURCE)
        .order_by(Customer.id).with_for_update()
    ).all()
    if len(rows) != len(ids):
        raise NotFound("所选客户不存在、已被转移,或不在您的数据范围内,请刷新页面后重试。")
    for row in rows:
        if row.pool_id is not None:
            raise UserError(f"客户“{row.name}”已在公海中。", field="customer_id")
    return put_in_pool(session, pool=pool, customers=[(r.id, r.manager_id) for r in rows], kind=RETURN,
                       reason=text, operator_id=principal.id, now=now or utcnow())


# ----- reading ---------------------------------------------------------------------------------------

PAGE_SIZE = 50
SORTS = ("oldest", "newest")


@dataclass
class PoolFilter:
    q: str = ""  # name, pinyin, phone digits or code (core.search)
    industry: str = ""
    level: str = ""
    region: str = ""
    min_days: int | None = None  # in the pool at least this many days
    sort: str = "oldest"


def pool_counts(session: Session, pool_ids: list[int]) -> dict[int, int]:
    """pool id → customers in it (one grouped count over the pool index)."""
    if not pool_ids:
        return {}
    rows = session.execute(
        select(Customer.pool_id, func.count()).where(Customer.pool_id.in_(pool_ids)).group_by(Customer.pool_id)
    ).tuples().all()
    return {int(p): int(n) for p, n in rows if p is not None}


def _filtered(session: Session, stmt: Any, pool: CustomerPool, flt: PoolFilter, now: dt.datetime) -> Any:
    stmt = stmt.where(Customer.pool_id == pool.id)
    if flt.q and (found := search.match(session.connection(), Customer, flt.q)) is not None:
        stmt = stmt.where(found)
    if flt.industry:
        stmt = stmt.where(Customer.industry == flt.industry)
    if flt.level:
        stmt = stmt.where(Customer.level == flt.level)
    if flt.region:
        stmt = stmt.where(Customer.region.like(f"{_escape_like(flt.region)}%", escape="\\"))
    if flt.min_days:
        stmt = stmt.where(Customer.pool_entered_at <= now - dt.timedelta(days=flt.min_days))
    return stmt


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def pool_customers(session: Session, principal: Principal, pool: CustomerPool, flt: PoolFilter, *,
                   page: int = 1, page_size: int = PAGE_SIZE,
                   now: dt.datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of the pool's customers (the caller checked the pool with ``usable_pool``) and how many
    match: the page's rows, its last owners and its masking each read once for the whole page."""
    now = now or utcnow()
    order = (Customer.pool_entered_at.desc(), Customer.id.desc()) if flt.sort == "newest" else (
        Customer.pool_entered_at.asc(), Customer.id.asc())
    total = int(session.execute(_filtered(session, select(func.count()).select_from(Customer), pool, flt, now))
                .scalar_one())
    rows = session.execute(
        _filtered(session, select(Customer.id, Customer.code, Customer.name, Customer.industry, Customer.level,
                                  Customer.region, Customer.status, Customer.phone, Customer.email,
                                  Customer.pool_entered_at, Customer.last_contact_at), pool, flt, now)
        .order_by(*order).limit(page_size).offset((max(page, 1) - 1) * page_size)
    ).all()
    ids = [r.id for r in rows]
    last = _last_entries(session, ids, pool.id)
    names = user_names(session, {e.user_id for e in last.values() if e.user_id})
    masked = masking.customers_masked_for(session, principal, ids)
    out = []
    for r in rows:
        entry = last.get(r.id)
        hide = r.id in masked
        out.append({
            "id": r.id, "code": r.code, "name": r.name, "industry": r.industry, "level": r.level,
            "region": r.region or "", "status": r.status,
            "phone": (masking.mask_phone(r.phone) if hide else r.phone) or "",
            "email": (masking.mask_email(r.email) if hide else r.email) or "",
            "entered_at": r.pool_entered_at, "last_contact_at": r.last_contact_at,
            "days": (now - r.pool_entered_at).days if r.pool_entered_at else None,
            "last_owner": names.get(entry.user_id or 0, "") if entry else "",
            "last_kind": entry.kind if entry else "", "last_reason": (entry.reason or "") if entry else "",
        })
    return out, total


def _last_entries(session: Session, ids: list[int], pool_id: int) -> dict[int, Any]:
    """customer id → its latest way into the pool (return or reclaim)."""
    if not ids:
        return {}
    rows = session.execute(
        select(CustomerPoolLog.customer_id, CustomerPoolLog.kind, CustomerPoolLog.user_id, CustomerPoolLog.reason)
        .where(CustomerPoolLog.customer_id.in_(ids), CustomerPoolLog.pool_id == pool_id,
               CustomerPoolLog.kind.in_((RETURN, RECLAIM)))
        .order_by(CustomerPoolLog.customer_id, CustomerPoolLog.at.desc(), CustomerPoolLog.id.desc())
    ).all()
    out: dict[int, Any] = {}
    for row in rows:
        out.setdefault(row.customer_id, row)
    return out


def user_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {
        uid: (real or username) for uid, username, real in session.execute(
            select(SysUser.id, SysUser.username, SysUser.real_name).where(SysUser.id.in_(wanted)))
    }


def pool_customer(session: Session, principal: Principal, pool: CustomerPool, customer_id: int) -> dict[str, Any]:
    """A customer of the pool as its pool page shows it: the profile (phone, e-mail, address and the
    contacts masked as ``core.masking`` says), and its history — who had it, when, why it came back."""
    customer = session.execute(
        select(Customer).where(Customer.id == customer_id, Customer.pool_id == pool.id)
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound("该客户不在此公海中(可能已被领取),或不存在。")
    hide = customer.id in masking.customers_masked_for(session, principal, [customer.id])
    contacts = [
        {"name": name, "position": position or "",
         "mobile": (masking.mask_phone(mobile) if hide else mobile) or "",
         "phone": (masking.mask_phone(phone) if hide else phone) or "",
         "email": (masking.mask_email(email) if hide else email) or ""}
        for name, position, mobile, phone, email in session.execute(
            select(Linkman.name, Linkman.position, Linkman.mobile, Linkman.phone, Linkman.email)
            .where(Linkman.customer_id == customer.id).order_by(Linkman.is_primary.desc(), Linkman.id).limit(50)
        ).tuples()
    ]
    transfers = session.execute(
        select(CustomerTransfer.transferred_at, CustomerTransfer.old_manager_id, CustomerTransfer.new_manager_id,
               CustomerTransfer.reason, CustomerTransfer.operator_id)
        .where(CustomerTransfer.customer_id == customer.id)
        .order_by(CustomerTransfer.transferred_at.desc(), CustomerTransfer.id.desc()).limit(200)
    ).all()
    moves = session.execute(
        select(CustomerPoolLog.at, CustomerPoolLog.kind, CustomerPoolLog.user_id, CustomerPoolLog.operator_id,
               CustomerPoolLog.reason, CustomerPool.name)
        .join(CustomerPool, CustomerPool.id == CustomerPoolLog.pool_id)
        .where(CustomerPoolLog.customer_id == customer.id)
        .order_by(CustomerPoolLog.at.desc(), CustomerPoolLog.id.desc()).limit(200)
    ).all()
    names = user_names(session, [t.old_manager_id for t in transfers] + [t.new_manager_id for t in transfers]
                       + [t.operator_id for t in transfers] + [m.user_id for m in moves]
                       + [m.operator_id for m in moves])
    return {
        "customer": customer, "masked": hide,
        "phone": (masking.mask_phone(customer.phone) if hide else customer.phone) or "",
        "email": (masking.mask_email(customer.email) if hide else customer.email) or "",
        "address": (masking.mask_text(customer.address) if hide else customer.address) or "",
        "contacts": contacts,
        "transfers": [{"at": t.transferred_at, "old": names.get(t.old_manager_id or 0, ""),
                       "new": names.get(t.new_manager_id or 0, ""), "reason": t.reason or "",
                       "operator": names.get(t.operator_id or 0, "")} for t in transfers],
        "moves": [{"at": m.at, "kind": m.kind, "user": names.get(m.user_id or 0, ""),
                   "operator": names.get(m.operator_id or 0, ""), "reason": m.reason or "", "pool": m.name}
                  for m in moves],
    }


# ----- the report -------------------------------------------------------------------------------------

@dataclass
class ReportRow:
    pool_id: int
    pool: str
    month: str  # "2026-12", company time
    returned: int = 0
    reclaimed: int = 0
    claimed: int = 0
    assigned: int = 0
    dealt: int = 0  # of the claimed and assigned: an order since, or now a deal customer (成交客户)

    @property
    def came_in(self) -> int:
        return self.returned + self.reclaimed

    @property
    def went_out(self) -> int:
        return self.claimed + self.assigned

    @property
    def deal_rate(self) -> str:
        return f"{self.dealt * 100 / self.went_out:.1f}%" if self.went_out else "—"


def pool_report(session: Session, pools: list[CustomerPool], *, since: dt.date) -> list[ReportRow]:
    """Per pool and month (company time) since ``since``: customers in (returned, reclaimed), out
    (claimed, assigned), and how many of those that went out became deals — an order dated on or after
    the day they left the pool, or the status 成交客户 now. Two grouped statements, whatever the number
    of pools and months."""
    if not pools:
        return []
    by_id = {p.id: p for p in pools}
    day = local_date_sql(CustomerPoolLog.at)
    start = day_start_utc(since)
    counts = session.execute(
        select(CustomerPoolLog.pool_id, day, CustomerPoolLog.kind, func.count())
        .where(CustomerPoolLog.pool_id.in_(sorted(by_id)), CustomerPoolLog.at >= start)
        .group_by(CustomerPoolLog.pool_id, day, CustomerPoolLog.kind)
    ).tuples().all()
    deal = or_(Customer.status == "active", exists().where(
        CustomerOrder.customer_id == CustomerPoolLog.customer_id, CustomerOrder.order_date >= day))
    deals = session.execute(
        select(CustomerPoolLog.pool_id, day, func.count())
        .join(Customer, Customer.id == CustomerPoolLog.customer_id)
        .where(CustomerPoolLog.pool_id.in_(sorted(by_id)), CustomerPoolLog.at >= start,
               CustomerPoolLog.kind.in_((CLAIM, ASSIGN)), deal)
        .group_by(CustomerPoolLog.pool_id, day)
    ).tuples().all()
    rows: dict[tuple[int, str], ReportRow] = {}

    def row(pool_id: int, when: Any) -> ReportRow:
        month = str(when)[:7]
        key = (pool_id, month)
        if key not in rows:
            rows[key] = ReportRow(pool_id=pool_id, pool=by_id[pool_id].name, month=month)
        return rows[key]

    for pool_id, when, kind, n in counts:
        r = row(pool_id, when)
        if kind == RETURN:
            r.returned += n
        elif kind == RECLAIM:
            r.reclaimed += n
        elif kind == CLAIM:
            r.claimed += n
        elif kind == ASSIGN:
            r.assigned += n
    for pool_id, when, n in deals:
        row(pool_id, when).dealt += n
    return sorted(rows.values(), key=lambda r: (r.pool, r.month), reverse=False)


# ----- setting pools up (administrators) --------------------------------------------------------------

LIMIT_MAX = 1_000_000


@dataclass
class PoolForm:
    """A pool's settings as the form posts them (text, checked later)."""

    name: str = ""
    remark: str = ""
    is_active: bool = True
    mask_contacts: bool = True
    hold_limit: str = ""
    daily_claim_limit: str = ""
    dept_ids: list[str] = field(default_factory=list)
    role_ids: list[str] = field(default_factory=list)
    # role id (text) → (holding limit, daily claim limit) as typed; both empty: the pool's defaults
    role_limits: dict[str, tuple[str, str]] = field(default_factory=dict)


def _limit(text: str, field_name: str, label: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > LIMIT_MAX:
        raise UserError(f"{label}应为 0 至 {LIMIT_MAX} 之间的整数,留空表示不限。", field=field_name)
    return int(text)


def _existing_ids(session: Session, model: Any, values: list[str], label: str) -> list[int]:
    ids: set[int] = set()
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        if not text.isdigit():
            raise UserError(f"所选的{label}无效,请重新选择。")
        ids.add(int(text))
    if ids:
        found = set(session.execute(select(model.id).where(model.id.in_(sorted(ids)))).scalars())
        if found != ids:
            raise UserError(f"所选的{label}不存在,请刷新页面后重新选择。")
    return sorted(ids)


def save_pool(session: Session, principal: Principal, *, pool_id: int | None, form: PoolForm) -> CustomerPool:
    """Create (``pool_id`` None) or change a pool with who may use it and its limits; every row written
    through the ORM, so each change has its audit row."""
    if not principal.can(RESOURCE, "create" if pool_id is None else "edit"):
        raise Forbidden("您没有设置公海的权限。")
    name = (form.name or "").strip()
    if not name:
        raise UserError("请填写公海名称。", field="name")
    if len(name) > 64:
        raise UserError("公海名称不能超过 64 个字。", field="name")
    remark = (form.remark or "").strip()
    if len(remark) > 500:
        raise UserError("备注不能超过 500 个字。", field="remark")
    hold = _limit(form.hold_limit, "hold_limit", "持有上限")
    daily = _limit(form.daily_claim_limit, "daily_claim_limit", "每日领取上限")
    dept_ids = _existing_ids(session, SysDept, form.dept_ids, "部门")
    role_ids = _existing_ids(session, SysRole, form.role_ids, "角色")
    limit_roles = _existing_ids(session, SysRole, list(form.role_limits), "角色")
    role_limits = {
        int(rid): (_limit(h, f"hold_{rid}", "角色持有上限"), _limit(d, f"daily_{rid}", "角色每日领取上限"))
        for rid, (h, d) in form.role_limits.items() if int(rid) in limit_roles and (h.strip() or d.strip())
    }
    clash = session.execute(select(CustomerPool.id).where(CustomerPool.name == name)).scalar()
    if clash is not None and clash != pool_id:
        raise UserError(f"已有名为“{name}”的公海,请换一个名称。", field="name")
    if pool_id is None:
        pool = CustomerPool()
        session.add(pool)
    else:
        found = session.get(CustomerPool, pool_id, with_for_update=True)
        if found is None:
            raise NotFound("公海不存在。")
        pool = found
    pool.name, pool.remark = name, remark or None
    pool.is_active, pool.mask_contacts = bool(form.is_active), bool(form.mask_contacts)
    pool.hold_limit, pool.daily_claim_limit = hold, daily
    session.flush()

    wanted_access = {(d, None) for d in dept_ids} | {(None, r) for r in role_ids}
    for row in session.execute(select(CustomerPoolAccess).where(CustomerPoolAccess.pool_id == pool.id)).scalars():
        key = (row.dept_id, row.role_id)
        if key in wanted_access:
            wanted_access.discard(key)
        else:
            session.delete(row)
    for dept_id, role_id in sorted(wanted_access, key=str):
        session.add(CustomerPoolAccess(pool_id=pool.id, dept_id=dept_id, role_id=role_id))

    current = {row.role_id: row for row in session.execute(
        select(CustomerPoolLimit).where(CustomerPoolLimit.pool_id == pool.id)).scalars()}
    for role_id, old in current.items():
        if role_id not in role_limits:
            session.delete(old)
    for role_id, (h, d) in role_limits.items():
        limit = current.get(role_id) or CustomerPoolLimit(pool_id=pool.id, role_id=role_id)
        limit.hold_limit, limit.daily_claim_limit = h, d
        session.add(limit)
    session.flush()
    return pool


def pool_settings(session: Session, pool: CustomerPool | None) -> dict[str, Any]:
    """What the settings form shows: the pool's access rows and role limits, and every department and role."""
    access = list(session.execute(
        select(CustomerPoolAccess.dept_id, CustomerPoolAccess.role_id)
        .where(CustomerPoolAccess.pool_id == pool.id)).tuples()) if pool is not None else []
    limits = {r.role_id: r for r in session.execute(
        select(CustomerPoolLimit).where(CustomerPoolLimit.pool_id == pool.id)).scalars()} if pool is not None else {}
    return {
        "depts": [(i, n) for i, n in session.execute(select(SysDept.id, SysDept.name).order_by(SysDept.name))],
        "roles": [(i, n) for i, n in session.execute(
            select(SysRole.id, SysRole.name).where(SysRole.is_active.is_(True)).order_by(SysRole.id))],
        "dept_ids": {d for d, _r in access if d is not None},
        "role_ids": {r for _d, r in access if r is not None},
        "limits": {rid: ("" if r.hold_limit is None else str(r.hold_limit),
                         "" if r.daily_claim_limit is None else str(r.daily_claim_limit))
                   for rid, r in limits.items()},
    }
