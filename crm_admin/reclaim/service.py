"""Reclaim rules (回收规则): which customers go back to a public pool, the warning before, the daily run.

A customer is due under a rule when it has a manager, is in no pool, has the rule's level (any level
when the rule names none), and

- the rule's N days have passed since its follow-up clock started, or its M days since its order
  clock started. Each clock starts at the latest of: the last follow-up (``last_contact_at``; the last
  order, ``last_order_at``), the customer's creation, and the moment its current manager received it
  (a transfer, a claim or an assignment from a pool) — a customer just claimed is not taken back the
  next night for what its previous manager neglected;
- nothing protects it: an open opportunity at the rule's protected stage or a later one (the order of
  the ``opportunity_stage`` dictionary), a pending care task when the rule says so.

The selection is set-based: one statement per condition of a rule over the indexed clock columns,
each candidate checked by index probes (transfers, pool log, opportunities, care), whatever the number
of customers. Rules apply in priority order; a customer due under several is reclaimed once, by the
first. The preview, the warning list, ``crm-admin reclaim --dry-run`` and the daily job all use
``evaluate``: what the preview shows is what the job does.

The daily job moves the due customers in bounded batches, each its own transaction, through the
pools' return path (``pools.service.return_to_pool``): the ``customer_transfer`` row with the reason
"自动回收:30 天未跟进", the open work handed over as a transfer does, the pool log row, the audit row
(system actor). ``reclaim_day`` makes it one run per company day whatever the number of processes, and
records days the servers missed as covered by the next run. Services never commit; the job does,
between batches.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.care.models import CustomerCare
from crm_admin.core import notify
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.core.scope import owner_clause
from crm_admin.customers.models import Customer
from crm_admin.db import utcnow
from crm_admin.dictionary import service as dictionary
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.pools import service as pools
from crm_admin.pools.models import ASSIGN, CLAIM, RECLAIM, CustomerPool, CustomerPoolLog
from crm_admin.reclaim.models import ReclaimDay, ReclaimRule
from crm_admin.transfers.models import CustomerTransfer

DAYS_MAX = 3650
WARN_MAX = 365
PRIORITY_MAX = 9999
NAME_MAX = 64
REMARK_MAX = 500
PREVIEW_ROWS = 100
BATCH = pools.MAX_BATCH  # customers moved per transaction by the daily job (500: the pools' own bound)
CHECK_CHUNK = 1000  # ids per look-up by key
CATCH_UP_DAYS = 31  # missed days recorded as covered by a run, at most this far back
REASON_PREFIX = pools.RECLAIM_PREFIX  # "自动回收:", written by the pools' return path


# ----- rules -------------------------------------------------------------------------------------

def _whole(value: Any, *, field_name: str, label: str, low: int, high: int, required: bool = False) -> int | None:
    if value in (None, ""):
        if required:
            raise UserError(f"请填写{label}。", field=field_name)
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UserError(f"{label}须为 {low} 到 {high} 之间的整数。", field=field_name) from None
    if str(number) != str(value).strip() or not low <= number <= high:
        raise UserError(f"{label}须为 {low} 到 {high} 之间的整数。", field=field_name)
    return number


def validate_rule(session: Session, rule: ReclaimRule) -> None:
    """Refuse a rule that cannot work, with a message naming the field; normalises what it reads."""
    rule.name = (rule.name or "").strip()
    if not rule.name:
        raise UserError("请填写规则名称。", field="name")
    if len(rule.name) > NAME_MAX:
        raise UserError(f"规则名称不能超过 {NAME_MAX} 个字。", field="name")
    pool = session.get(CustomerPool, rule.pool_id) if rule.pool_id else None
    if pool is None:
        raise UserError("请选择客户回收到的公海。", field="pool")
    if rule.level in ("", None):
        rule.level = None
    elif not dictionary.is_valid("customer_level", rule.level):
        raise UserError("客户等级无效,请从列表中选择(留空表示所有等级)。", field="level")
    rule.days_without_follow_up = _whole(rule.days_without_follow_up, field_name="days_without_follow_up",
                                         label="未跟进天数", low=1, high=DAYS_MAX)
    rule.days_without_order = _whole(rule.days_without_order, field_name="days_without_order",
                                     label="未下单天数", low=1, high=DAYS_MAX)
    if rule.days_without_follow_up is None and rule.days_without_order is None:
        raise UserError("未跟进天数和未下单天数至少填写一项。", field="days_without_follow_up")
    rule.warn_days = _whole(rule.warn_days, field_name="warn_days", label="提前提醒天数", low=0,
                            high=WARN_MAX) or 0
    shortest = min(d for d in (rule.days_without_follow_up, rule.days_without_order) if d is not None)
    if rule.warn_days >= shortest:
        raise UserError(f"提前提醒天数须小于回收天数({shortest} 天)。", field="warn_days")
    if rule.protect_from_stage in ("", None):
        rule.protect_from_stage = None
    elif not dictionary.is_valid("opportunity_stage", rule.protect_from_stage):
        raise UserError("商机阶段无效,请从列表中选择(留空表示商机不保护客户)。", field="protect_from_stage")
    rule.priority = _whole(rule.priority, field_name="priority", label="优先级", low=0, high=PRIORITY_MAX,
                           required=True) or 0
    rule.protect_pending_care = bool(rule.protect_pending_care)
    rule.is_active = bool(rule.is_active)
    rule.remark = (rule.remark or "").strip() or None
    if rule.remark and len(rule.remark) > REMARK_MAX:
        raise UserError(f"备注不能超过 {REMARK_MAX} 个字。", field="remark")
    if rule.is_active and not pool.is_active:
        raise UserError(f"公海“{pool.name}”已停用,不能启用回收到它的规则。", field="is_active")


def follow_up_text(days: int) -> str:
    return f"{days} 天未跟进"


def order_text(days: int) -> str:
    return f"{days} 天未下单"


def describe(rule: ReclaimRule) -> str:
    """The rule's condition in words: "30 天未跟进 或 90 天未下单"."""
    parts = []
    if rule.days_without_follow_up:
        parts.append(follow_up_text(rule.days_without_follow_up))
    if rule.days_without_order:
        parts.append(order_text(rule.days_without_order))
    return " 或 ".join(parts)


def _late_stages(stage: str | None) -> list[str]:
    """The stage and every later one, in the dictionary's order (disabled stages included)."""
    if not stage:
        return []
    stages = [e.value for e in dictionary.entries("opportunity_stage", include_inactive=True)]
    if stage not in stages:
        return [stage]
    return stages[stages.index(stage):]


# ----- the selection -----------------------------------------------------------------------------

def _received_since(cutoff: dt.datetime) -> ColumnElement[bool]:
    """The customer came to its current manager at or after ``cutoff``: a transfer, a claim, an assignment."""
    transferred = exists().where(CustomerTransfer.customer_id == Customer.id,
                                 CustomerTransfer.transferred_at >= cutoff,
                                 CustomerTransfer.new_manager_id.is_not(None))
    claimed = exists().where(CustomerPoolLog.customer_id == Customer.id, CustomerPoolLog.at >= cutoff,
                             CustomerPoolLog.kind.in_((CLAIM, ASSIGN)))
    return or_(transferred, claimed)


def _clock_before(column: Any, cutoff: dt.datetime) -> ColumnElement[bool]:
    """The clock started at ``column`` (the last follow-up or order), creation or receipt lies before ``cutoff``."""
    return and_(or_(column.is_(None), column < cutoff), Customer.created_at < cutoff, not_(_received_since(cutoff)))


def _protected(rule: ReclaimRule) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    stages = _late_stages(rule.protect_from_stage)
    if stages:
        out.append(exists().where(SalesOpportunity.customer_id == Customer.id, SalesOpportunity.status == "open",
                                  SalesOpportunity.stage.in_(stages)))
    if rule.protect_pending_care:
        out.append(exists().where(CustomerCare.customer_id == Customer.id, CustomerCare.status == "pending"))
    return out


def _owned_in_level(rule: ReclaimRule) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Customer.manager_id.is_not(None), Customer.pool_id.is_(None)]
    if rule.level:
        conds.append(Customer.level == rule.level)
    return conds


def condition_queries(rule: ReclaimRule, at: dt.datetime) -> list[tuple[str, Select[Any]]]:
    """(reason, ``SELECT customer.id``) for each condition of ``rule`` that customers meet at ``at``."""
    base = _owned_in_level(rule)
    unprotected = [not_(p) for p in _protected(rule)]
    out = []
    if rule.days_without_follow_up:
        cutoff = at - dt.timedelta(days=rule.days_without_follow_up)
        out.append((follow_up_text(rule.days_without_follow_up), select(Customer.id).where(
            *base, _clock_before(Customer.last_contact_at, cutoff), *unprotected)))
    if rule.days_without_order:
        cutoff = at - dt.timedelta(days=rule.days_without_order)
        out.append((order_text(rule.days_without_order), select(Customer.id).where(
            *base, _clock_before(Customer.last_order_at, cutoff), *unprotected)))
    return out


@dataclass
class RuleResult:
    rule_id: int
    name: str
    pool_id: int
    condition: str
    # customer id → reason ("30 天未跟进"; two conditions met: "30 天未跟进、90 天未下单")
    due: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.due)


def _due_under(session: Session, rule: ReclaimRule, at: dt.datetime, within: Any = None) -> dict[int, str]:
    """customer id → reason, of the customers due under ``rule`` at ``at`` (``within``: narrowed by a
    further condition on ``customer``, e.g. a scope or a batch of ids)."""
    due: dict[int, list[str]] = {}
    for reason, stmt in condition_queries(rule, at):
        if within is not None:
            stmt = stmt.where(within)
        for cid in session.execute(stmt).scalars():
            due.setdefault(int(cid), []).append(reason)
    return {cid: "、".join(reasons) for cid, reasons in due.items()}


def enabled_rules(session: Session) -> list[ReclaimRule]:
    return list(session.execute(
        select(ReclaimRule).where(ReclaimRule.is_active.is_(True))
        .order_by(ReclaimRule.priority, ReclaimRule.id)
    ).scalars())


def _ordered(rules: Iterable[ReclaimRule]) -> list[ReclaimRule]:
    return sorted(rules, key=lambda r: (r.priority, r.id or 0))


def evaluate(session: Session, rules: Sequence[ReclaimRule], at: dt.datetime, *, within: Any = None) -> list[RuleResult]:
    """What each rule reclaims at ``at``, in priority order; a customer due under several counts under
    the first. Reads only."""
    taken: set[int] = set()
    out = []
    for rule in _ordered(rules):
        started = time.perf_counter()
        due = {cid: why for cid, why in _due_under(session, rule, at, within).items() if cid not in taken}
        taken.update(due)
        out.append(RuleResult(rule.id, rule.name, rule.pool_id, describe(rule), due,
                              round(time.perf_counter() - started, 3)))
    return out


def standard_rules() -> list[ReclaimRule]:
    """The rules the benchmark evaluates on a database that has none enabled (never saved): one per
    customer level with a follow-up and an order condition and both protections, and an any-level
    order rule."""
    rules = [ReclaimRule(name=f"{level} 级 {days} 天未跟进", pool_id=None, level=level, days_without_follow_up=days,
                         days_without_order=365, warn_days=7, protect_from_stage="negotiation",
                         protect_pending_care=True, priority=10 + i, is_active=True)
             for i, (level, days) in enumerate((("A", 90), ("B", 60), ("C", 45), ("D", 30)))]
    rules.append(ReclaimRule(name="所有等级 180 天未下单", pool_id=None, level=None, days_without_follow_up=None,
                             days_without_order=180, warn_days=7, protect_from_stage="contract",
                             protect_pending_care=False, priority=50, is_active=True))
    return rules


# ----- the preview -------------------------------------------------------------------------------

@dataclass
class PreviewRow:
    customer_id: int
    code: str
    name: str
    level: str | None
    manager: str
    reason: str
    last_contact_at: dt.datetime | None
    last_order_at: dt.datetime | None


@dataclass
class Preview:
    rule: ReclaimRule
    pool: str
    condition: str
    count: int
    rows: list[PreviewRow]
    others_first: int  # customers this rule meets that a rule applied before it takes


def _rows(session: Session, due: dict[int, str], limit: int) -> list[PreviewRow]:
    ids = sorted(due)[:limit]
    if not ids:
        return []
    found = session.execute(
        select(Customer.id, Customer.code, Customer.name, Customer.level, Customer.last_contact_at,
               Customer.last_order_at, func.coalesce(func.nullif(SysUser.real_name, ""), SysUser.username))
        .outerjoin(SysUser, SysUser.id == Customer.manager_id).where(Customer.id.in_(ids)).order_by(Customer.id)
    ).all()
    return [PreviewRow(r[0], r[1], r[2], r[3], r[6] or "", due[r[0]], r[4], r[5]) for r in found]


def preview(session: Session, rule_id: int, now: dt.datetime | None = None, *, limit: int = PREVIEW_ROWS) -> Preview:
    """What ``rule_id`` would reclaim if it were enabled now, beside the enabled rules (in their order)."""
    rule = session.get(ReclaimRule, rule_id)
    if rule is None:
        raise NotFound("回收规则不存在。")
    now = now or utcnow()
    others = [r for r in enabled_rules(session) if r.id != rule.id]
    results = evaluate(session, [*others, rule], now)
    mine = next(r for r in results if r.rule_id == rule.id)
    alone = _due_under(session, rule, now)
    pool = session.get(CustomerPool, rule.pool_id)
    return Preview(rule=rule, pool=pool.name if pool else "", condition=describe(rule), count=mine.count,
                   rows=_rows(session, mine.due, limit), others_first=len(alone) - mine.count)


# ----- the warning -------------------------------------------------------------------------------

@dataclass
class Upcoming:
    customer_id: int
    code: str
    name: str
    manager: str
    days_left: int
    reason: str
    rule: str
    pool: str


def _last_received(session: Session, ids: list[int]) -> dict[int, dt.datetime]:
    out: dict[int, dt.datetime] = {}
    for stmt in (
        select(CustomerTransfer.customer_id, func.max(CustomerTransfer.transferred_at))
        .where(CustomerTransfer.customer_id.in_(ids), CustomerTransfer.new_manager_id.is_not(None))
        .group_by(CustomerTransfer.customer_id),
        select(CustomerPoolLog.customer_id, func.max(CustomerPoolLog.at))
        .where(CustomerPoolLog.customer_id.in_(ids), CustomerPoolLog.kind.in_((CLAIM, ASSIGN)))
        .group_by(CustomerPoolLog.customer_id),
    ):
        for cid, at in session.execute(stmt).all():
            if at is not None and (cid not in out or at > out[cid]):
                out[cid] = at
    return out


def _days_left(now: dt.datetime, starts: Iterable[dt.datetime | None], days: int) -> int:
    start = max(s for s in starts if s is not None)
    return max(0, math.ceil((start + dt.timedelta(days=days) - now).total_seconds() / 86400))


def _received_between(start: dt.datetime, end: dt.datetime) -> list[ColumnElement[bool]]:
    """The customer came to its current manager in [start, end) by a transfer, or by a claim or an
    assignment: each read from its table's time index (a short range), not customer by customer."""
    transferred = select(CustomerTransfer.customer_id).where(
        CustomerTransfer.transferred_at >= start, CustomerTransfer.transferred_at < end,
        CustomerTransfer.new_manager_id.is_not(None))
    claimed = select(CustomerPoolLog.customer_id).where(
        CustomerPoolLog.at >= start, CustomerPoolLog.at < end, CustomerPoolLog.kind.in_((CLAIM, ASSIGN)))
    return [Customer.id.in_(transferred), Customer.id.in_(claimed)]


def _clock_within(column: Any, start: dt.datetime, end: dt.datetime) -> list[ColumnElement[bool]]:
    """The clock (the latest of ``column``, creation, receipt) lies in [start, end), as conditions each
    led by one indexed range (the clock is one of them; the others lie before ``end``), read one by one."""
    before_end = [or_(column.is_(None), column < end), Customer.created_at < end, not_(_received_since(end))]
    leads = [column >= start, Customer.created_at >= start, *_received_between(start, end)]
    return [and_(lead, *before_end) for lead in leads]


def window_queries(rule: ReclaimRule, now: dt.datetime) -> list[tuple[str, Select[Any]]]:
    """(reason, ``SELECT customer.id``) of the customers ``rule``'s conditions will reach within its
    warning days but do not reach now: each clock in the window [now − N, now − N + K), read as a short
    range of its index rather than every neglected customer."""
    base = _owned_in_level(rule)
    unprotected = [not_(p) for p in _protected(rule)]
    out = []
    ahead = dt.timedelta(days=rule.warn_days)
    for days, column, text in ((rule.days_without_follow_up, Customer.last_contact_at, follow_up_text),
                               (rule.days_without_order, Customer.last_order_at, order_text)):
        if not days:
            continue
        start = now - dt.timedelta(days=days)
        for clock in _clock_within(column, start, start + ahead):
            out.append((text(days), select(Customer.id).where(*base, clock, *unprotected)))
    return out


def upcoming(session: Session, principal: Principal, now: dt.datetime | None = None, *,
             limit: int = 100, mine_only: bool = False) -> tuple[int, list[Upcoming]]:
    """Customers within ``principal``'s scope that an enabled rule will reclaim within its warning days
    (not due yet): (how many, the first ``limit`` by days left)."""
    now = now or utcnow()
    enabled = enabled_rules(session)
    rules = [r for r in enabled if r.warn_days]
    if not rules:
        return 0, []
    # whose customers: the owner alone, or the managers the scope reaches (one index range per manager)
    within: Any = Customer.manager_id == principal.id if mine_only else \
        owner_clause(Customer.manager_id, principal, resource="customer", action="list")
    soon: dict[int, tuple[ReclaimRule, str]] = {}
    for rule in _ordered(rules):
        found: dict[int, list[str]] = {}
        for reason, stmt in window_queries(rule, now):
            for cid in session.execute(stmt.where(within)).scalars():
                if reason not in found.setdefault(int(cid), []):
                    found[int(cid)].append(reason)
        for cid, reasons in found.items():
            soon.setdefault(cid, (rule, "、".join(reasons)))
    # one condition in its window but another already met (or another rule's): reclaimed tonight, so
    # no warning. Decided here from each candidate's clocks and protections, read by primary key in a
    # few statements, by the same rules as the SQL of ``condition_queries``.
    facts, received, care, stages = _candidate_facts(session, sorted(soon))
    late = {r.id: set(_late_stages(r.protect_from_stage)) for r in enabled}
    for cid in list(soon):
        fact = facts.get(cid)
        if fact is None or any(_due_now(r, fact, received.get(cid), cid in care, stages.get(cid, set()),
                                        late[r.id], now) for r in enabled):
            soon.pop(cid)
    if not soon:
        return 0, []
    pools_by_id = dict(session.execute(select(CustomerPool.id, CustomerPool.name)).tuples().all())
    rows = []
    for cid, (rule, why) in soon.items():
        fact = facts[cid]
        lefts = []
        if rule.days_without_follow_up:
            lefts.append(_days_left(now, (fact.last_contact_at, fact.created_at, received.get(cid)),
                                    rule.days_without_follow_up))
        if rule.days_without_order:
            lefts.append(_days_left(now, (fact.last_order_at, fact.created_at, received.get(cid)),
                                    rule.days_without_order))
        rows.append(Upcoming(cid, fact.code, fact.name, fact.manager or "", max(1, min(lefts)),
                             why, rule.name, pools_by_id.get(rule.pool_id, "")))
    rows.sort(key=lambda u: (u.days_left, u.customer_id))
    return len(soon), rows[:limit]


def _candidate_facts(session: Session, ids: list[int]) -> tuple[dict[int, Any], dict[int, dt.datetime],
                                                                 set[int], dict[int, set[str]]]:
    """Of ``ids``: the customer's columns, when its manager received it, whether it has a pending care
    task, the stages of its open opportunities — in chunks read by key."""
    facts: dict[int, Any] = {}
    received: dict[int, dt.datetime] = {}
    care: set[int] = set()
    stages: dict[int, set[str]] = {}
    for start in range(0, len(ids), CHECK_CHUNK):
        part = ids[start:start + CHECK_CHUNK]
        facts.update({r.id: r for r in session.execute(
            select(Customer.id, Customer.code, Customer.name, Customer.level, Customer.manager_id, Customer.pool_id,
                   Customer.created_at, Customer.last_contact_at, Customer.last_order_at,
                   func.coalesce(func.nullif(SysUser.real_name, ""), SysUser.username).label("manager"))
            .outerjoin(SysUser, SysUser.id == Customer.manager_id).where(Customer.id.in_(part))
        ).all()})
        received.update(_last_received(session, part))
        care.update(session.execute(select(CustomerCare.customer_id).where(
            CustomerCare.customer_id.in_(part), CustomerCare.status == "pending")).scalars())
        for cid, stage in session.execute(select(SalesOpportunity.customer_id, SalesOpportunity.stage).where(
                SalesOpportunity.customer_id.in_(part), SalesOpportunity.status == "open")).tuples():
            stages.setdefault(cid, set()).add(stage)
    return facts, received, care, stages


def _before(cutoff: dt.datetime, *starts: dt.datetime | None) -> bool:
    """The clock — the latest of ``starts`` — lies before ``cutoff`` (``_clock_before`` in Python)."""
    return max(s for s in starts if s is not None) < cutoff


def _due_now(rule: ReclaimRule, fact: Any, received: dt.datetime | None, pending_care: bool, stages: set[str],
             late: set[str], now: dt.datetime) -> bool:
    """Whether ``rule`` reclaims the customer ``fact`` at ``now`` (what ``condition_queries`` select)."""
    if fact.manager_id is None or fact.pool_id is not None or (rule.level and fact.level != rule.level):
        return False
    if (rule.protect_pending_care and pending_care) or (late and stages & late):
        return False
    return bool(
        (rule.days_without_follow_up and _before(now - dt.timedelta(days=rule.days_without_follow_up),
                                                 fact.last_contact_at, fact.created_at, received))
        or (rule.days_without_order and _before(now - dt.timedelta(days=rule.days_without_order),
                                                fact.last_order_at, fact.created_at, received)))


# ----- the daily run -----------------------------------------------------------------------------

@dataclass
class RunReport:
    day: dt.date
    moved: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)
    caught_up: list[dt.date] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        if self.skipped:
            return f"{self.day.isoformat()}:今天的自动回收已完成,本次跳过"
        text = f"{self.day.isoformat()}:自动回收 {self.moved} 个客户"
        if self.per_rule:
            text += "(" + ",".join(f"{name} {n} 个" for name, n in self.per_rule.items()) + ")"
        if self.caught_up:
            text += f";补上错过的 {len(self.caught_up)} 天"
        return text


def _take_day(session: Session, day: dt.date, now: dt.datetime) -> bool:
    """The day's row, taken for this run; False when the day is already done (another process, an
    earlier run). A run cut off half-way left the row ``running``: the next run goes on from there."""
    table: Any = ReclaimDay.__table__
    row = session.execute(select(ReclaimDay.status).where(ReclaimDay.day == day)).scalar()
    if row == "done":
        return False
    if row is None:
        try:
            with session.begin_nested():
                session.execute(insert(table).values(day=day, status="running", started_at=now, moved=0,
                                                     created_at=now, updated_at=now))
        except IntegrityError:  # another process took the day first
            return session.execute(select(ReclaimDay.status).where(ReclaimDay.day == day)).scalar() != "done"
    return True


def _missed_days(session: Session, day: dt.date) -> list[dt.date]:
    """Days before ``day`` since the last covered one that no run covered (at most ``CATCH_UP_DAYS``)."""
    last = session.execute(select(func.max(ReclaimDay.day)).where(ReclaimDay.day < day)).scalar()
    if last is None:
        return []
    first = max(last + dt.timedelta(days=1), day - dt.timedelta(days=CATCH_UP_DAYS))
    return [first + dt.timedelta(days=i) for i in range((day - first).days)]


def _finish_day(session: Session, day: dt.date, missed: list[dt.date], moved: int, detail: str,
                now: dt.datetime) -> None:
    table: Any = ReclaimDay.__table__
    session.execute(update(table).where(table.c.day == day).values(
        status="done", finished_at=now, moved=table.c.moved + moved, detail=detail[:2000], updated_at=now))
    for missed_day in missed:
        try:
            with session.begin_nested():
                session.execute(insert(table).values(
                    day=missed_day, status="done", started_at=now, finished_at=now, moved=0, covered_by=day,
                    detail=f"这一天未运行,由 {day.isoformat()} 的运行补上", created_at=now, updated_at=now))
        except IntegrityError:
            pass


def move_batch(session: Session, rule: ReclaimRule, reasons: dict[int, str], now: dt.datetime) -> int:
    """Return one batch of due customers to ``rule``'s pool through the pools' return path, in the
    caller's transaction. The customers are locked first and checked again: one whose follow-up was
    logged, or who changed hands, since the evaluation stays where it is."""
    ids = sorted(reasons)
    managers = dict(session.execute(
        select(Customer.id, Customer.manager_id).where(Customer.id.in_(ids)).order_by(Customer.id).with_for_update()
    ).tuples().all())
    still = _due_under(session, rule, now, Customer.id.in_(ids))
    pool = session.get(CustomerPool, rule.pool_id)
    if pool is None or not pool.is_active or not still:  # a pool closed since the rule was enabled takes no one
        return 0
    by_reason: dict[str, list[int]] = {}
    for cid, why in still.items():
        by_reason.setdefault(why, []).append(cid)
    moved = 0
    for why, group in sorted(by_reason.items()):
        result = pools.put_in_pool(session, pool=pool, customers=[(cid, managers.get(cid)) for cid in sorted(group)],
                                   kind=RECLAIM, reason=why, operator_id=None, now=now)
        moved += len(result.customers)
    return moved


def run_daily(session: Session, day: dt.date, now: dt.datetime, *, dry_run: bool = False,
              batch: int = BATCH) -> RunReport:
    """The daily reclaim of company day ``day``: every enabled rule's due customers to its pool, in
    batches of ``batch`` customers, each committed on its own (the job's unit of work; a crash leaves
    whole batches done and the next run goes on). ``dry_run``: evaluates only, writes nothing."""
    started = time.perf_counter()
    report = RunReport(day=day)
    if not dry_run:
        if not _take_day(session, day, now):
            report.skipped = True
            return report
        report.caught_up = _missed_days(session, day)
        session.commit()
    rules = enabled_rules(session)
    results = evaluate(session, rules, now)
    by_id = {r.id: r for r in rules}
    for result in results:
        report.per_rule[result.name] = result.count
        if dry_run or not result.due:
            continue
        rule = by_id[result.rule_id]
        ids = sorted(result.due)
        moved = 0
        for start in range(0, len(ids), batch):
            part = {cid: result.due[cid] for cid in ids[start:start + batch]}
            moved += move_batch(session, rule, part, now)
            session.commit()
        report.per_rule[result.name] = moved
        report.moved += moved
    if not dry_run:
        warn_owners(session, day, now)
        session.commit()
    report.seconds = round(time.perf_counter() - started, 2)
    if not dry_run:
        _finish_day(session, day, report.caught_up, report.moved, report.describe(), now)
        session.commit()
    return report


def warn_owners(session: Session, day: dt.date, now: dt.datetime) -> int:
    """Each manager with customers an enabled rule will reclaim within its warning days hears how many
    (once per manager and day); the list is the 即将回收 page."""
    owners: dict[int, set[int]] = {}
    for rule in _ordered(r for r in enabled_rules(session) if r.warn_days):
        for _reason, stmt in window_queries(rule, now):
            query = stmt.with_only_columns(Customer.id, Customer.manager_id).where(Customer.manager_id.is_not(None))
            for cid, manager_id in session.execute(query).tuples():
                owners.setdefault(int(manager_id or 0), set()).add(int(cid))
    written = 0
    for manager_id, ids in sorted(owners.items()):
        written += notify.notify(
            session, "reclaim_warning", [manager_id], f"您有 {len(ids)} 个客户即将被自动回收到公海",
            "跟进或成交后即不再回收;详见“即将回收”页面。", notify.Link("admin:view-reclaim-upcoming"),
            dedupe_key=f"reclaim_warning:{day.isoformat()}")
    return written


def recent_days(session: Session, limit: int = 14) -> list[ReclaimDay]:
    return list(session.execute(select(ReclaimDay).order_by(ReclaimDay.day.desc()).limit(limit)).scalars())

