"""The home dashboard's numbers: what each role needs on landing, all within the user's scope."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.audit.models import AuditLog
from crm_admin.care import service as care
from crm_admin.care.models import CustomerCare
from crm_admin.churn.models import ChurnAlert
from crm_admin.contacts.models import Linkman
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped, sees_everyone
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.dashboard.cache import TableCache, read_marks
from crm_admin.dictionary import service as dictionary
from crm_admin.followups.service import due_follow_ups
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.opportunities.service import open_by_stage
from crm_admin.orders.models import CustomerOrder


@dataclass
class Dashboard:
    today: dt.date
    is_admin: bool
    care_today: int = 0
    care_overdue: int = 0
    care_today_rows: list[care.TaskRow] = field(default_factory=list)
    follow_ups_due: int = 0
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    at_risk: list[dict[str, Any]] = field(default_factory=list)
    at_risk_total: int = 0
    alerts_open: dict[str, int] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    care_completion: float = 0.0
    care_completion_base: int = 0
    failed_logins: list[dict[str, Any]] = field(default_factory=list)


def _count(session: Session, stmt: Any) -> int:
    return int(session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


@dataclass(frozen=True)
class _Ask:
    """What every part of the board needs to know."""

    principal: Principal
    today: dt.date
    today_end: dt.datetime
    mine: bool  # a manager sees their own work; a sales lead their team's (the scope does the rest)


# Each part reads on its own connection and fills its own fields of the board, so the parts run side by
# side: the page takes as long as its slowest part instead of the sum of them. The pool is shared by all
# requests, which bounds how many dashboard queries run at once.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dashboard")


def _care(session: Session, ask: _Ask, board: Dashboard) -> None:
    principal, today = ask.principal, ask.today
    tasks = select(CustomerCare.id).where(CustomerCare.status == "pending")
    if (where_scope := care.pending_scope(principal)) is not None:
        tasks = tasks.where(where_scope)
    if ask.mine:
        tasks = tasks.where(CustomerCare.manager_id == principal.id)
    today_n, overdue_n = session.execute(tasks.with_only_columns(
        func.coalesce(func.sum(case((CustomerCare.due_date == today, 1), else_=0)), 0),
        func.coalesce(func.sum(case((CustomerCare.due_date < today, 1), else_=0)), 0),
    ).where(CustomerCare.due_date <= today)).one()
    board.care_today, board.care_overdue = int(today_n), int(overdue_n)
    board.care_today_rows = care.due_today(session, principal, today,
                                           manager_id=principal.id if ask.mine else None, limit=10)


def _follow_ups(session: Session, ask: _Ask, board: Dashboard) -> None:
    if ask.principal.can("follow_up", "list"):
        board.follow_ups_due = _count(session, due_follow_ups(ask.principal, today_end=ask.today_end,
                                                              mine_only=ask.mine))


def _pipeline(session: Session, ask: _Ask, board: Dashboard) -> None:
    if not ask.principal.can("opportunity", "list"):
        return
    by_stage = {s: (sums.count, sums.amount) for s, sums in open_by_stage(session, ask.principal).items()}
    order = [v for v, _label in dictionary.choices("opportunity_stage", blank=False)]
    order += [s for s in by_stage if s not in order]
    board.pipeline = [
        {"stage": s, "label": dictionary.label("opportunity_stage", s), "count": by_stage[s][0],
         "amount": by_stage[s][1]}
        for s in order if s in by_stage
    ]


def _risk(session: Session, ask: _Ask, board: Dashboard) -> None:
    risky = scoped(select(Customer).where(Customer.status == "at_risk"), Customer, ask.principal, "list")
    board.at_risk_total = _count(session, risky)
    board.at_risk = [
        {"id": c.id, "name": c.name, "code": c.code, "last_contact_at": c.last_contact_at}
        for c in session.execute(risky.order_by(Customer.last_contact_at).limit(10)).scalars()
    ]
    levels = session.execute(
        by_customer_manager(select(ChurnAlert.risk_level, func.count()).where(ChurnAlert.open_key == 1), ChurnAlert,
                            ask.principal, "list").group_by(ChurnAlert.risk_level)
    ).all()
    board.alerts_open = {lvl: int(n) for lvl, n in levels}


def _customer_total(session: Session, ask: _Ask, board: Dashboard) -> None:
    board.totals["customers"] = _count(session, scoped(select(Customer.id), Customer, ask.principal, "list"))


def _linkman_total(session: Session, ask: _Ask, board: Dashboard) -> None:
    board.totals["linkmen"] = _count(session, scoped(select(Linkman.id), Linkman, ask.principal, "list"))


def _orders_month(session: Session, ask: _Ask, board: Dashboard) -> None:
    orders, amount = session.execute(scoped(
        select(func.count(), func.coalesce(func.sum(
            case((CustomerOrder.status != "cancelled", CustomerOrder.amount), else_=0)), 0))
        .where(CustomerOrder.order_date >= ask.today.replace(day=1)), CustomerOrder, ask.principal, "list")).one()
    board.totals["orders_month"] = int(orders)
    board.totals["order_amount_month"] = Decimal(amount)
    if not ask.principal.can("opportunity", "list"):  # otherwise the pipeline's stages add up to it
        board.totals["open_opportunities"] = _count(session, scoped(
            select(SalesOpportunity.id).where(SalesOpportunity.status == "open"), SalesOpportunity, ask.principal,
            "list"))


def _care_completion(session: Session, ask: _Ask, board: Dashboard) -> None:
    done, base = care.completion_totals(session, ask.principal, ask.today - dt.timedelta(days=30), ask.today)
    board.care_completion = round(done * 100.0 / base, 1) if base else 0.0
    board.care_completion_base = base


def _failed_logins(session: Session, ask: _Ask, board: Dashboard) -> None:
    if not ask.principal.can("audit", "list"):
        return
    failures = list(session.execute(
        select(AuditLog).where(AuditLog.action == "login_failed").order_by(AuditLog.id.desc()).limit(10)
    ).scalars())
    # a failed attempt is written before anyone is signed in: the account is in resource_id
    ids = {int(r.resource_id) for r in failures if (r.resource_id or "").isdigit()}
    names = dict(session.execute(select(SysUser.id, SysUser.username).where(SysUser.id.in_(ids))).all()) \
        if ids else {}
    board.failed_logins = [
        {"occurred_at": r.occurred_at, "ip": r.ip, "detail": r.detail or "",
         "username": r.username or names.get(int(r.resource_id) if r.resource_id.isdigit() else 0, "")}
        for r in failures
    ]


# what the everyone's-view parts count from: while these tables are unchanged their numbers are reused
_TABLES: dict[Callable[[Session, _Ask, Dashboard], None], tuple[str, ...]] = {
    _linkman_total: ("linkman",),
    _pipeline: ("sales_opportunity", "dict_item"),  # stage names come from the dictionary
    _care_completion: ("customer_care",),
    _orders_month: ("customer_order",),
    _follow_ups: ("follow_up",),
    _customer_total: ("customer",),
    _care: ("customer_care", "customer", "linkman", "sys_user"),  # the task rows show their names
}
_CACHE = TableCache()
# the resources whose rows the parts above count: the cache is for principals who see all of them
_SCOPED_PARTS = ("customer", "linkman", "opportunity", "order", "follow_up", "customer_care", "churn_alert")


def _filled_by(part: Callable[[Session, _Ask, Dashboard], None], session: Session, ask: _Ask) -> dict[str, Any]:
    """The board fields ``part`` fills, as a dict (to keep and to hand to another board)."""
    blank = Dashboard(today=ask.today, is_admin=ask.principal.is_admin)
    scratch = Dashboard(today=ask.today, is_admin=ask.principal.is_admin)
    part(session, ask, scratch)
    out: dict[str, Any] = {name: value for name, value in vars(scratch).items()
                           if name != "totals" and value != getattr(blank, name)}
    out["totals"] = dict(scratch.totals)
    return out


def _fill(board: Dashboard, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "totals":
            board.totals.update(value)
        else:
            setattr(board, name, value)


def build(open_session: Callable[[], Session], principal: Principal, *, today: dt.date,
          today_end: dt.datetime) -> Dashboard:
    """The board of ``principal``: its parts read concurrently, each on a session from ``open_session``."""
    board = Dashboard(today=today, is_admin=principal.is_admin)
    ask = _Ask(principal, today, today_end, mine=not principal.is_admin and principal.scope == "self")
    # the slowest parts first, so the quick ones fill in around them
    parts: list[Callable[[Session, _Ask, Dashboard], None]] = [_pipeline, _follow_ups, _care, _risk]
    if principal.is_admin:  # the overview: company totals instead of a to-do list of follow-ups
        parts = [_linkman_total, _pipeline, _care_completion, _customer_total, _orders_month, _care, _risk,
                 _failed_logins]
    marks = None
    # company-wide numbers may be reused only when every part reads everyone's rows
    everyone = all(sees_everyone(principal, resource, "list") for resource in _SCOPED_PARTS)
    if everyone and not ask.mine:
        with open_session() as session:
            marks = read_marks(session, {t for tables in _TABLES.values() for t in tables})
    grants = frozenset(principal.permissions)

    def run(part: Callable[[Session, _Ask, Dashboard], None]) -> None:
        with open_session() as session:
            tables = _TABLES.get(part)
            if marks is None or tables is None:
                part(session, ask, board)
                return
            key = (part.__name__, today, today_end, grants)
            _fill(board, _CACHE.get(key, tables, marks, lambda: _filled_by(part, session, ask)))

    # each part in a copy of this request's context (its actor, its SQL clock), as anyio's threads do
    for future in [_POOL.submit(contextvars.copy_context().run, run, part) for part in parts]:
        future.result()
    if principal.is_admin and principal.can("opportunity", "list"):
        board.totals["open_opportunities"] = sum(p["count"] for p in board.pipeline)
    return board
