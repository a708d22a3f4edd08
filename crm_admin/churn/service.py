"""Churn warning (客户流失): rule evaluation, handling, analysis.

The evaluation is set-based (one INSERT … SELECT per rule), so it scales to hundreds of thousands of
customers. ``uq_churn_alert_open`` (customer, rule, open_key=1) keeps one open alert per customer and
rule however often it runs. An alert nobody has touched is dismissed when its condition no longer
holds; an alert a person is following is never closed by the job. Services never commit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    not_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session, aliased

from crm_admin.accounts.models import SysUser
from crm_admin.churn.models import CHURN_METRICS, RISK_LEVELS, ChurnAlert, ChurnRule
from crm_admin.core import audit, notify
from crm_admin.core.errors import Forbidden, NotFound, UserError
from crm_admin.core.formatting import local_date_sql, local_today
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.core.scope import owner_partition, scoped
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.db import utcnow
from crm_admin.dictionary import service as dictionary
from crm_admin.followups.models import FollowUp
from crm_admin.orders.models import CustomerOrder

METRIC_LABELS = Labels({
    "days_since_contact": "未联系天数",
    "days_since_order": "未下单天数",
    "order_amount_drop_pct": "订单金额环比下降(%)",
})
LEVEL_LABELS = Labels({"medium": "中风险", "high": "高风险"})
STATUS_LABELS = Labels({"open": "待处理", "following": "跟进中", "retained": "已挽回", "lost": "已流失",
                 "dismissed": "已解除"})
COUNTED_ORDER_STATUSES = ("confirmed", "completed")
TEXT_MAX = 2000


# ----- rules -------------------------------------------------------------------------------------

def validate_rule(metric: str, threshold: Decimal | None, risk_level: str) -> None:
    if metric not in CHURN_METRICS:
        raise UserError("指标无效,请选择:未联系天数、未下单天数或订单金额环比下降。", field="metric")
    if risk_level not in RISK_LEVELS:
        raise UserError("风险等级无效,请选择中风险或高风险。", field="risk_level")
    if threshold is None or threshold <= 0:
        raise UserError("阈值必须大于 0。", field="threshold")
    if metric == "order_amount_drop_pct" and threshold > 100:
        raise UserError("下降百分比阈值不能超过 100。", field="threshold")
    if metric != "order_amount_drop_pct" and (threshold > 3650 or threshold != threshold.to_integral_value()):
        raise UserError("天数阈值须为 1 到 3650 之间的整数。", field="threshold")


def quarter_bounds(today: dt.date) -> tuple[dt.date, dt.date]:
    """(start of this quarter, start of the previous quarter) — calendar quarters of the business day."""
    start = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    prev_month = start.month - 3
    prev = dt.date(start.year, prev_month, 1) if prev_month >= 1 else dt.date(start.year - 1, prev_month + 12, 1)
    return start, prev


def matching_customers(rule: ChurnRule, today: dt.date, now: dt.datetime) -> Select[Any]:
    """``SELECT customer.id`` of the customers for which ``rule`` holds right now."""
    # a customer in a public pool has nobody to warn: its alerts wait until someone claims it (an open,
    # unhandled one is dismissed by the next run, and opens again after the claim if the condition holds)
    active = and_(Customer.status != "lost", Customer.pool_id.is_(None))
    if rule.metric in ("days_since_contact", "days_since_order"):
        cutoff = now - dt.timedelta(days=int(rule.threshold))
        if rule.metric == "days_since_contact":
            recent = exists().where(FollowUp.customer_id == Customer.id, FollowUp.contacted_at >= cutoff)
            since = func.coalesce(Customer.last_contact_at, Customer.created_at)
        else:
            cutoff_day = today - dt.timedelta(days=int(rule.threshold))
            recent = exists().where(
                CustomerOrder.customer_id == Customer.id, CustomerOrder.order_date >= cutoff_day,
                CustomerOrder.status.in_(COUNTED_ORDER_STATUSES),
            )
            since = func.coalesce(Customer.last_order_at, Customer.created_at)
        return select(Customer.id).where(active, since < cutoff, not_(recent))
    if rule.metric == "order_amount_drop_pct":
        q_start, prev_start = quarter_bounds(today)
        cur = func.sum(case((CustomerOrder.order_date >= q_start, CustomerOrder.amount), else_=0))
        prev = func.sum(case((CustomerOrder.order_date < q_start, CustomerOrder.amount), else_=0))
        drops = (
            select(CustomerOrder.customer_id)
            .where(CustomerOrder.order_date >= prev_start, CustomerOrder.order_date <= today,
                   CustomerOrder.status.in_(COUNTED_ORDER_STATUSES))
            .group_by(CustomerOrder.customer_id)
            .having(and_(prev > 0, (prev - cur) * 100 >= prev * literal(rule.threshold)))
        )
        return select(Customer.id).where(active, Customer.id.in_(drops))
    raise ValueError(f"unknown metric {rule.metric!r}")


CHUNK = 2000
BULK_SERVER_SIDE = 5000


def _insert_alerts_from_select(session: Session, rule: ChurnRule, today: dt.date, now: dt.datetime) -> int:
    """INSERT … SELECT of the rule's matching customers that have no open alert for it yet."""
    ts: Any = ChurnAlert.__table__.c.detected_at.type
    cid = matching_customers(rule, today, now).subquery().c.id
    has_open = exists().where(ChurnAlert.customer_id == cid, ChurnAlert.rule_id == rule.id, ChurnAlert.open_key == 1)
    # the alert carries its customer's manager (customers.models.CarriesCustomerManager); on MariaDB the
    # INSERT … SELECT reads the customers with shared locks (repeatable read), so no transfer slips in between
    owner = aliased(Customer)
    manager = select(owner.manager_id).where(owner.id == cid).scalar_subquery()
    src = select(cid, manager, literal(rule.id), literal(rule.risk_level), literal(now, type_=ts), literal("open"),
                 literal(1), literal(now, type_=ts), literal(now, type_=ts)).where(not_(has_open))
    cols = ["customer_id", "customer_manager_id", "rule_id", "risk_level", "detected_at", "status", "open_key",
            "created_at", "updated_at"]
    table: Any = ChurnAlert.__table__
    if session.get_bind().dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table).from_select(cols, src).on_conflict_do_nothing()
    else:
        stmt = mysql.insert(table).from_select(cols, src).prefix_with("IGNORE")
    return _affected(session.execute(stmt))


def _insert_alerts(session: Session, rule: ChurnRule, customer_ids: list[int], now: dt.datetime) -> int:
    """Open alerts for ``customer_ids``; a row another run inserted meanwhile is skipped (unique key)."""
    table: Any = ChurnAlert.__table__
    if session.get_bind().dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing()
    else:
        stmt = mysql.insert(table).prefix_with("IGNORE")
    created = 0
    for start in range(0, len(customer_ids), CHUNK):
        part = customer_ids[start:start + CHUNK]
        # the alert carries its customer's manager (customers.models.CarriesCustomerManager), read locked
        managers = dict(session.execute(
            select(Customer.id, Customer.manager_id).where(Customer.id.in_(part)).order_by(Customer.id)
            .with_for_update(read=True)
        ).tuples().all())
        rows = [
            {"customer_id": cid, "customer_manager_id": managers.get(cid), "rule_id": rule.id,
             "risk_level": rule.risk_level, "detected_at": now, "status": "open", "open_key": 1, "created_at": now,
             "updated_at": now}
            for cid in part
        ]
        created += _affected(session.execute(stmt, rows))
    return created


@dataclass
class Evaluation:
    opened: int = 0
    dismissed: int = 0
    at_risk: int = 0
    restored: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)


def evaluate(session: Session, today: dt.date, now: dt.datetime | None = None) -> Evaluation:
    now = now or utcnow()
    result = Evaluation()
    rules = session.execute(select(ChurnRule).where(ChurnRule.is_active.is_(True)).order_by(ChurnRule.id)).scalars()
    dismissed_customers: set[int] = set()
    for rule in rules:
        # The condition is evaluated in SQL (one pass over the customers); comparing it with the open
        # alerts is a set difference here, so a daily run costs the same whether or not much changed.
        matching = set(session.execute(matching_customers(rule, today, now)).scalars())
        open_rows = session.execute(
            select(ChurnAlert.id, ChurnAlert.customer_id, ChurnAlert.status, ChurnAlert.handled_by)
            .where(ChurnAlert.rule_id == rule.id, ChurnAlert.open_key == 1)
        ).all()
        already = {row.customer_id for row in open_rows}
        new = matching - already
        if len(new) > BULK_SERVER_SIDE:
            # many at once (a rule just enabled): let the server copy them, no rows through Python
            opened = _insert_alerts_from_select(session, rule, today, now)
        else:
            opened = _insert_alerts(session, rule, sorted(new), now)
        # alerts nobody has started handling go away with their condition; a followed one stays
        stale = [row for row in open_rows
                 if row.customer_id not in matching and row.status == "open" and row.handled_by is None]
        dismissed = _dismiss(session, stale, now)
        dismissed_customers.update(row.customer_id for row in stale)
        result.per_rule[rule.name] = opened
        result.opened += opened
        result.dismissed += dismissed
    result.at_risk, result.restored = _settle_customers(session, dismissed_customers, now)
    if result.opened:
        notify_new_alerts(session, today, now)
    if result.opened or result.dismissed or result.at_risk or result.restored:
        audit.record(session, "update", resource="churn_alert", changes={
            "opened": result.opened, "dismissed": result.dismissed, "customers_at_risk": result.at_risk,
            "customers_restored": result.restored, "per_rule": result.per_rule,
        }, detail=f"流失预警评估 {today.isoformat()}")
    return result


def notify_new_alerts(session: Session, today: dt.date, now: dt.datetime) -> int:
    """Each manager whose customers got alerts in this run hears which (once per manager and day)."""
    rows = session.execute(
        select(ChurnAlert.customer_manager_id, Customer.name, ChurnAlert.risk_level)
        .join(Customer, Customer.id == ChurnAlert.customer_id)
        .where(ChurnAlert.detected_at == now, ChurnAlert.customer_manager_id.is_not(None))
        .order_by(ChurnAlert.customer_manager_id, ChurnAlert.id)
    ).all()
    by_manager: dict[int, list[Any]] = {}
    for row in rows:
        by_manager.setdefault(row.customer_manager_id, []).append(row)
    written = 0
    for manager_id, alerts in by_manager.items():
        names = "、".join(dict.fromkeys(a.name for a in alerts[:10]))
        high = sum(1 for a in alerts if a.risk_level == "high")
        body = names + (f" 等 {len(alerts)} 条" if len(alerts) > 10 else "") + (f"(其中高风险 {high} 条)" if high else "")
        written += notify.notify(session, "churn_alert", [manager_id], f"您的客户新增 {len(alerts)} 条流失预警", body,
                                 notify.Link("admin:view-churn-alerts"), dedupe_key=f"churn_alert:{now.isoformat()}")
    return written


def _dismiss(session: Session, stale: list[Any], now: dt.datetime) -> int:
    """Alerts nobody has started handling go away with their condition (a followed one stays)."""
    dismissed = 0
    for start in range(0, len(stale), CHUNK):
        part = stale[start:start + CHUNK]
        dismissed += _affected(session.execute(
            update(ChurnAlert)
            .where(ChurnAlert.id.in_([row.id for row in part]), ChurnAlert.status == "open",
                   ChurnAlert.handled_by.is_(None))
            .values(status="dismissed", open_key=None, handled_at=now, updated_at=now,
                    analysis="预警条件已不再满足,系统自动解除。")
            .execution_options(synchronize_session=False)
        ))
    return dismissed


def _settle_customers(session: Session, dismissed_customers: set[int], now: dt.datetime) -> tuple[int, int]:
    """Customers with an open alert become at risk; those whose last alert went away come back.
    Returns (now at risk, restored)."""
    open_alert = exists().where(ChurnAlert.customer_id == Customer.id, ChurnAlert.open_key == 1)
    at_risk = _affected(session.execute(
        update(Customer)
        .where(Customer.status.in_(("potential", "active")), open_alert)
        .values(status="at_risk", version=Customer.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    restored = 0
    ids = sorted(dismissed_customers)
    for start in range(0, len(ids), CHUNK):
        restored += _affected(session.execute(
            update(Customer)
            .where(Customer.id.in_(ids[start:start + CHUNK]), Customer.status == "at_risk", not_(open_alert))
            .values(status=case((Customer.last_order_at.is_not(None), "active"), else_="potential"),
                    version=Customer.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        ))
    return at_risk, restored


# ----- handling ----------------------------------------------------------------------------------

def _alert_for_update(session: Session, principal: Principal, alert_id: int) -> ChurnAlert:
    if not principal.can("churn_alert", "edit"):
        raise Forbidden("您没有处理流失预警的权限。")
    alert = session.execute(
        scoped(select(ChurnAlert).where(ChurnAlert.id == alert_id), ChurnAlert, principal, "edit").with_for_update()
    ).scalar_one_or_none()
    if alert is None:
        raise NotFound("流失预警不存在或您无权访问。")
    if alert.status not in ("open", "following"):
        raise UserError("该预警已处理完毕。")
    return alert


def _required(text: str | None, label: str, field: str) -> str:
    value = (text or "").strip()
    if not value:
        raise UserError(f"请填写{label}。", field=field)
    if len(value) > TEXT_MAX:
        raise UserError(f"{label}不能超过 {TEXT_MAX} 个字。", field=field)
    return value


def follow_alert(session: Session, principal: Principal, alert_id: int, *, measures: str | None) -> ChurnAlert:
    """Record the retention measures taken; the alert is now being followed (the job leaves it alone)."""
    alert = _alert_for_update(session, principal, alert_id)
    alert.measures = _required(measures, "挽留措施", "measures")
    alert.status = "following"
    alert.handled_by = principal.id
    alert.handled_at = utcnow()
    session.flush()
    return alert


def close_alert(
    session: Session, principal: Principal, alert_id: int, *, outcome: str, reason: str | None,
    analysis: str | None, measures: str | None = None,
) -> ChurnAlert:
    """Close as ``retained`` or ``lost`` with a reason (dictionary churn_reason) and an analysis."""
    if outcome not in ("retained", "lost"):
        raise UserError("请选择处理结果:已挽回或已流失。", field="outcome")
    alert = _alert_for_update(session, principal, alert_id)
    reason = (reason or "").strip() or None
    if outcome == "lost" and not reason:
        raise UserError("请选择流失原因。", field="reason")
    if reason and not dictionary.is_valid("churn_reason", reason, current=alert.reason):
        raise UserError("流失原因无效,请从下拉列表中选择。", field="reason")
    alert.analysis = _required(analysis, "原因分析", "analysis")
    if measures and measures.strip():
        alert.measures = _required(measures, "挽留措施", "measures")
    now = utcnow()
    alert.reason = reason
    alert.status = outcome
    alert.open_key = None
    alert.handled_by = principal.id
    alert.handled_at = now
    session.flush()
    customer = session.execute(select(Customer).where(Customer.id == alert.customer_id).with_for_update()).scalar_one()
    if outcome == "lost":
        customer.status = "lost"
        # the customer is gone: its other open alerts have nothing left to warn about
        for other in session.execute(
            select(ChurnAlert).where(ChurnAlert.customer_id == customer.id, ChurnAlert.open_key == 1)
        ).scalars():
            other.status, other.open_key, other.handled_by, other.handled_at = "dismissed", None, principal.id, now
            other.analysis = f"客户已流失(预警 #{alert.id}),随之关闭。"
    else:
        still_open = session.execute(
            select(ChurnAlert.id).where(ChurnAlert.customer_id == customer.id, ChurnAlert.open_key == 1).limit(1)
        ).first()
        if customer.status == "at_risk" and still_open is None:
            customer.status = "active"
    session.flush()
    return alert


def close_duplicates_of_merge(session: Session, *, keep_id: int, drop_id: int) -> int:
    """Before a merge moves ``drop_id``'s alerts onto ``keep_id``: one open alert per customer and rule,
    so the dropped customer's open alerts of rules the kept customer already has open are dismissed."""
    open_rules = set(session.execute(
        select(ChurnAlert.rule_id).where(ChurnAlert.customer_id == keep_id, ChurnAlert.open_key.is_not(None))
    ).scalars())
    if not open_rules:
        return 0
    return _affected(session.execute(
        update(ChurnAlert)
        .where(ChurnAlert.customer_id == drop_id, ChurnAlert.rule_id.in_(open_rules),
               ChurnAlert.open_key.is_not(None))
        .values(open_key=None, status="dismissed", analysis="客户合并时关闭的重复预警")
    ))


# ----- reading -----------------------------------------------------------------------------------

@dataclass
class AlertRow:
    id: int
    customer_id: int
    customer: str
    customer_code: str
    manager: str
    rule: str
    metric: str
    threshold: Decimal
    risk_level: str
    status: str
    detected_at: dt.datetime
    reason: str | None
    analysis: str | None
    measures: str | None
    handled_at: dt.datetime | None


def alert_query(principal: Principal) -> Select[*tuple[Any, ...]]:
    stmt = (
        select(ChurnAlert, Customer.name, Customer.code, ChurnRule.name, ChurnRule.metric, ChurnRule.threshold,
               func.coalesce(func.nullif(SysUser.real_name, ""), SysUser.username))
        .join(Customer, Customer.id == ChurnAlert.customer_id)
        .join(ChurnRule, ChurnRule.id == ChurnAlert.rule_id)
        .outerjoin(SysUser, SysUser.id == Customer.manager_id)
    )
    return scoped(stmt, ChurnAlert, principal, "list")


def _alert_rows(session: Session, stmt: Select[*tuple[Any, ...]]) -> list[AlertRow]:
    return [
        AlertRow(a.id, a.customer_id, cname, ccode, mgr or "", rname, metric, threshold, a.risk_level, a.status,
                 a.detected_at, a.reason, a.analysis, a.measures, a.handled_at)
        for a, cname, ccode, rname, metric, threshold, mgr in session.execute(stmt).all()
    ]


# A team's open alerts are found manager by manager up to this many managers (see _first_active_alerts).
PER_MANAGER_MAX = 64


def _first_active_alerts(principal: Principal, risk_level: str, limit: int) -> Select[Any] | None:
    """The ids of the first ``limit`` open or followed alerts in the handling page's order (high risk
    first, then newest), found from the first entries of each risk level — and of each manager of a
    team — in ``(customer_manager_id,) open_key, risk_level, detected_at`` (an index range each), instead
    of sorting every open alert of the scope. None where the scope is not divided by managers."""
    partition = owner_partition(ChurnAlert, principal, "list")
    owners: list[int | None] = [None]
    if partition is not None:
        if len(partition[1]) > PER_MANAGER_MAX:
            return None
        owners = list(sorted(partition[1]))
    levels = [risk_level] if risk_level else sorted(RISK_LEVELS, key=lambda level: level != "high")
    branches = []
    for rank, level in enumerate(levels):
        for owner in owners:
            first = (select(ChurnAlert.id.label("k"), ChurnAlert.detected_at.label("at"), literal(rank).label("r"))
                     .where(ChurnAlert.open_key == 1, ChurnAlert.risk_level == level)
                     .order_by(ChurnAlert.detected_at.desc(), ChurnAlert.id.desc()).limit(limit))
            if owner is not None:
                first = first.where(ChurnAlert.customer_manager_id == owner)
            sub = first.subquery()
            branches.append(select(*sub.c))
    if not branches:
        return None
    merged = union_all(*branches).subquery()
    return select(merged.c.k).order_by(merged.c.r, merged.c.at.desc(), merged.c.k.desc()).limit(limit)


def list_alerts(session: Session, principal: Principal, *, status: str = "active", risk_level: str = "",
                customer_id: int | None = None, limit: int = 200) -> list[AlertRow]:
    stmt = alert_query(principal)
    if status == "active" and not customer_id and (not risk_level or risk_level in RISK_LEVELS):
        # the open alerts are 1 in ``open_key``: their first keys by index, then the rows through the scope
        # (a team's are found by the manager each carries; one whose copy drifted is never shown outside it)
        first = _first_active_alerts(principal, risk_level, limit)
        if first is not None:
            stmt = stmt.where(ChurnAlert.id.in_(list(session.execute(first).scalars())))
    if status == "active":
        stmt = stmt.where(ChurnAlert.status.in_(("open", "following")))
    elif status:
        stmt = stmt.where(ChurnAlert.status == status)
    if risk_level:
        stmt = stmt.where(ChurnAlert.risk_level == risk_level)
    if customer_id:
        stmt = stmt.where(ChurnAlert.customer_id == customer_id)
    stmt = stmt.order_by(case((ChurnAlert.risk_level == "high", 0), else_=1), ChurnAlert.detected_at.desc(),
                         ChurnAlert.id.desc())
    return _alert_rows(session, stmt.limit(limit))


def get_alert(session: Session, principal: Principal, alert_id: int) -> AlertRow:
    rows = _alert_rows(session, alert_query(principal).where(ChurnAlert.id == alert_id))
    if not rows:
        raise NotFound("流失预警不存在或您无权访问。")
    return rows[0]


@dataclass
class Analysis:
    open_by_level: dict[str, int]
    by_status: dict[str, int]
    lost_by_reason: list[tuple[str, int]]
    by_level: dict[str, dict[str, int]]
    lost_by_manager: list[tuple[str, int]]
    by_month: list[tuple[str, int, int]]  # (YYYY-MM, lost, retained)
    retained: int
    lost: int

    @property
    def retention_rate(self) -> float:
        closed = self.retained + self.lost
        return round(self.retained * 100.0 / closed, 1) if closed else 0.0


def analysis(session: Session, principal: Principal, *, months: int = 12, today: dt.date | None = None) -> Analysis:
    """Counts only, grouped by the database: the alerts of the scope are found by the manager each one
    carries (``by_customer_manager``: one index range per manager of a team, counted in the index
    ``(customer_manager_id, status, risk_level, reason, handled_at)``)."""
    today = today or local_today()

    def in_scope(stmt: Any) -> Any:
        return by_customer_manager(stmt, ChurnAlert, principal, "list", resource="churn_analysis")

    by_status: Counter[str] = Counter()
    by_level: dict[str, dict[str, int]] = defaultdict(dict)
    open_by_level: Counter[str] = Counter()
    stmt = in_scope(select(ChurnAlert.status, ChurnAlert.risk_level, func.count()))
    for status, level, n in session.execute(stmt.group_by(ChurnAlert.status, ChurnAlert.risk_level)).all():
        by_status[status] += n
        by_level[level][status] = n
        if status in ("open", "following"):
            open_by_level[level] += n
    reasons = session.execute(
        in_scope(select(ChurnAlert.reason, func.count()).where(ChurnAlert.status == "lost"))
        .group_by(ChurnAlert.reason).order_by(func.count().desc())
    ).all()
    lost_by = in_scope(select(ChurnAlert.customer_manager_id.label("manager_id"), func.count().label("n"))
                       .where(ChurnAlert.status == "lost")).group_by(ChurnAlert.customer_manager_id).subquery()
    managers = session.execute(
        select(func.coalesce(func.nullif(SysUser.real_name, ""), SysUser.username), lost_by.c.n)
        .select_from(lost_by).outerjoin(SysUser, SysUser.id == lost_by.c.manager_id)
        .order_by(lost_by.c.n.desc(), lost_by.c.manager_id)
    ).all()
    first_month = (today.replace(day=1) - dt.timedelta(days=31 * (months - 1))).replace(day=1)
    since = dt.datetime.combine(first_month, dt.time.min, tzinfo=dt.UTC) - dt.timedelta(hours=14)
    monthly: dict[str, list[int]] = {}
    m = first_month
    while m <= today:
        monthly[m.strftime("%Y-%m")] = [0, 0]
        m = (m + dt.timedelta(days=32)).replace(day=1)
    day = local_date_sql(ChurnAlert.handled_at)
    closed = session.execute(
        in_scope(select(ChurnAlert.status, day, func.count())
                 .where(ChurnAlert.status.in_(("lost", "retained")), ChurnAlert.handled_at >= since))
        .group_by(ChurnAlert.status, day)
    ).all()
    for status, handled_on, n in closed:
        if isinstance(handled_on, str):  # SQLite hands dates back as text
            handled_on = dt.date.fromisoformat(handled_on)
        key = handled_on.strftime("%Y-%m") if handled_on else ""
        if key in monthly:
            monthly[key][0 if status == "lost" else 1] += int(n)
    return Analysis(
        open_by_level=dict(open_by_level),
        by_status=dict(by_status),
        lost_by_reason=[(dictionary.label("churn_reason", r) or "未填写", int(n)) for r, n in reasons],
        by_level={k: dict(v) for k, v in by_level.items()},
        lost_by_manager=[(name or "未分配", int(n)) for name, n in managers],
        by_month=[(k, v[0], v[1]) for k, v in monthly.items()],
        retained=by_status.get("retained", 0),
        lost=by_status.get("lost", 0),
    )


def _affected(result: Any) -> int:
    """Rows matched by an UPDATE/INSERT (``CursorResult.rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)
