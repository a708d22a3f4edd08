"""Sales opportunities (销售机会): validation, stage history, the pipeline and moves on it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, union_all
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.core import limits
from crm_admin.core.errors import Conflict, NotFound, UserError
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal, dept_subtree
from crm_admin.core.scope import in_scope, owner_clause, scoped, sees_everyone
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.customers.service import clean
from crm_admin.db import utcnow
from crm_admin.dictionary.service import entries, is_valid, label
from crm_admin.opportunities.models import (
    OPPORTUNITY_STATUSES,
    OpportunityOpenTotal,
    OpportunityStageHistory,
    SalesOpportunity,
)

STATUS_LABELS = Labels({"open": "进行中", "won": "赢单", "lost": "丢单"})


def to_decimal(value: Any, *, label: str = "金额", field_name: str = "amount",
               model: type = SalesOpportunity) -> Decimal:
    """Money as typed (``1,234.5``) → a Decimal with two places that fits ``model.field_name``'s
    column (range, sign, at most two decimals); blank is zero. Refused with a UserError naming ``label``."""
    number = limits.parse_decimal(value, model, field_name, label)
    return (number if number is not None else Decimal(0)).quantize(Decimal("0.01"))


def validate_opportunity(obj: SalesOpportunity, *, previous_stage: str | None = None) -> None:
    obj.title = clean(obj.title) or ""
    if not obj.title:
        raise UserError("机会名称不能为空。", field="title")
    if len(obj.title) > 128:
        raise UserError("机会名称不能超过 128 个字符。", field="title")
    obj.stage = clean(obj.stage) or ""
    if not obj.stage:
        raise UserError("请选择商机阶段。", field="stage")
    if not is_valid("opportunity_stage", obj.stage, current=previous_stage):
        raise UserError(f"商机阶段“{obj.stage}”不是有效的选项。", field="stage")
    obj.amount = to_decimal(obj.amount, label="预计成交金额")
    try:
        obj.probability = int(obj.probability if obj.probability not in (None, "") else 0)
    except (TypeError, ValueError):
        raise UserError("成交概率必须是 0–100 之间的整数。", field="probability") from None
    if not 0 <= obj.probability <= 100:
        raise UserError("成交概率必须在 0–100 之间。", field="probability")
    obj.status = obj.status or "open"
    if obj.status not in OPPORTUNITY_STATUSES:
        raise UserError("机会状态无效。", field="status")
    obj.lost_reason = clean(obj.lost_reason)
    if obj.status == "lost" and not obj.lost_reason:
        raise UserError("标记为丢单时必须填写丢单原因。", field="lost_reason")
    obj.next_step = clean(obj.next_step)
    if obj.next_step and len(obj.next_step) > 255:
        raise UserError("下一步计划不能超过 255 个字符。", field="next_step")


def record_stage_change(session: Session, obj: SalesOpportunity, *, from_stage: str | None,
                        from_status: str | None, user_id: int | None) -> None:
    """Keep the history of stage and status changes (a new opportunity gets its first row)."""
    if from_stage == obj.stage and from_status == obj.status:
        return
    session.add(OpportunityStageHistory(
        opportunity_id=obj.id, from_stage=from_stage, to_stage=obj.stage, from_status=from_status,
        to_status=obj.status, changed_by=user_id, changed_at=utcnow(),
    ))


def create_opportunity(session: Session, principal: Principal, *, customer_id: int, **fields: Any) -> SalesOpportunity:
    customer = session.execute(
        scoped(select(Customer).where(Customer.id == customer_id), Customer, principal, "create",
               resource="opportunity")
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound("客户不存在或您无权访问。")
    obj = SalesOpportunity(customer_id=customer_id, **fields)
    obj.manager_id = obj.manager_id or customer.manager_id or principal.id
    validate_opportunity(obj)
    session.add(obj)
    session.flush()
    record_stage_change(session, obj, from_stage=None, from_status=None, user_id=principal.id)
    session.flush()
    return obj


def move_stage(session: Session, principal: Principal, *, opportunity_id: int, stage: str,
               version: int | None = None) -> SalesOpportunity:
    """Move an open opportunity to another stage (from the pipeline board)."""

    obj = session.execute(
        scoped(select(SalesOpportunity).where(SalesOpportunity.id == opportunity_id), SalesOpportunity,
               principal, "edit").with_for_update()
    ).scalar_one_or_none()
    if obj is None:
        raise NotFound("销售机会不存在或您无权访问。")
    if version is not None and version != obj.version:
        raise Conflict("该销售机会已被他人修改,请刷新页面后再操作。")
    if obj.status != "open":
        raise UserError("只有进行中的销售机会可以调整阶段。")
    if not is_valid("opportunity_stage", stage):
        raise UserError(f"商机阶段“{stage}”不是有效的选项。")
    if obj.stage == stage:
        return obj
    before = obj.stage
    obj.stage = stage
    session.flush()
    record_stage_change(session, obj, from_stage=before, from_status=obj.status, user_id=principal.id)
    session.flush()
    return obj


@dataclass(frozen=True)
class StageChange:
    """One move of an opportunity as people read it: when, who, from which stage/status to which."""

    opportunity_id: int
    opportunity: str
    changed_at: dt.datetime
    changed_by: int | None
    who: str
    from_stage: str  # labels ("" for the first row: the opportunity was created there)
    to_stage: str
    from_status: str
    to_status: str

    @property
    def created(self) -> bool:
        return not self.from_stage and not self.from_status

    def describe(self) -> str:
        """"初步接洽 → 需求确认" and/or "进行中 → 赢单"; "创建于 初步接洽" for the first row."""
        if self.created:
            return f"创建于 {self.to_stage}"
        parts = []
        if self.from_stage != self.to_stage:
            parts.append(f"{self.from_stage} → {self.to_stage}")
        if self.from_status != self.to_status:
            parts.append(f"{self.from_status} → {self.to_status}")
        return ";".join(parts)


def _stage_changes(session: Session, stmt: Select[*tuple[Any, ...]]) -> list[StageChange]:
    def stage(value: str | None) -> str:
        return label("opportunity_stage", value) if value else ""

    def status(value: str | None) -> str:
        return STATUS_LABELS.get(value, value) if value else ""

    return [
        StageChange(h.opportunity_id, title, h.changed_at, h.changed_by, real_name or username or "",
                    stage(h.from_stage), stage(h.to_stage), status(h.from_status), status(h.to_status))
        for h, title, real_name, username in session.execute(stmt).all()
    ]


def _stage_change_select(principal: Principal | None) -> Select[*tuple[Any, ...]]:
    stmt = (
        select(OpportunityStageHistory, SalesOpportunity.title, SysUser.real_name, SysUser.username)
        .join(SalesOpportunity, SalesOpportunity.id == OpportunityStageHistory.opportunity_id)
        .outerjoin(SysUser, SysUser.id == OpportunityStageHistory.changed_by)
    )
    # history rows are read only through an opportunity the user may see
    return stmt if principal is None else scoped(stmt, SalesOpportunity, principal)


def stage_history(session: Session, principal: Principal, opportunity_id: int) -> list[StageChange]:
    """Every stage/status change of one opportunity, oldest first; NotFound outside the scope."""
    if not in_scope(session, SalesOpportunity, opportunity_id, principal):
        raise NotFound("销售机会不存在或您无权访问。")
    stmt = _stage_change_select(principal).where(OpportunityStageHistory.opportunity_id == opportunity_id)
    return _stage_changes(session, stmt.order_by(OpportunityStageHistory.changed_at, OpportunityStageHistory.id))


def customer_stage_changes(session: Session, customer_id: int, limit: int) -> list[StageChange]:
    """The latest moves of a customer's opportunities, newest first, for a customer the caller has
    checked through the scope (the 360° page); creations are left out: the opportunity itself is on
    the timeline."""
    stmt = _stage_change_select(None).where(
        SalesOpportunity.customer_id == customer_id,
        (OpportunityStageHistory.from_stage.is_not(None)) | (OpportunityStageHistory.from_status.is_not(None)),
    )
    return _stage_changes(session, stmt.order_by(OpportunityStageHistory.changed_at.desc(),
                                                 OpportunityStageHistory.id.desc()).limit(limit))


# ----- pipeline --------------------------------------------------------------------------------

@dataclass
class StageColumn:
    value: str
    label: str
    count: int = 0
    total: Decimal = Decimal("0.00")
    weighted: Decimal = Decimal("0.00")
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PipelineFilter:
    manager: int | None = None
    dept: int | None = None
    close_month: str = ""  # YYYY-MM

    def apply(self, stmt: Select[Any], session: Session) -> Select[Any]:
        if self.manager is not None:
            stmt = stmt.where(SalesOpportunity.manager_id == self.manager)
        if self.dept is not None:
            depts = sorted(dept_subtree(session.connection(), self.dept))
            stmt = stmt.where(SalesOpportunity.manager_id.in_(select(SysUser.id).where(SysUser.dept_id.in_(depts))))
        if self.close_month:
            try:
                first = dt.date.fromisoformat(self.close_month + "-01")
            except ValueError:
                raise UserError("预计成交月份格式应为 YYYY-MM。") from None
            nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            stmt = stmt.where(SalesOpportunity.expected_close_date >= first,
                              SalesOpportunity.expected_close_date < nxt)
        return stmt


# Bigger deals first, then likelier ones: the order of ix_sales_opportunity_status_stage_amount_probability.
_BY_AMOUNT = (SalesOpportunity.amount.desc(), SalesOpportunity.probability.desc(), SalesOpportunity.id.desc())


@dataclass(frozen=True)
class StageSums:
    count: int
    amount: Decimal  # the sum of the amounts
    weighted: Decimal  # the sum of amount × probability (percent)


def _open_in_scope(principal: Principal, resource: str) -> tuple[Select[Any], bool]:
    """The open opportunities ``principal`` lists (``resource``), and whether the scope limits them.

    A team's are found by the manager they carry (``customers.models.CarriesCustomerManager``): one range of
    the (customer_manager_id, status, stage, amount, probability) index per manager of the scope."""
    base = by_customer_manager(select(SalesOpportunity).where(SalesOpportunity.status == "open"), SalesOpportunity,
                               principal, "list", resource=resource)
    return base, not sees_everyone(principal, resource, "list")


def _sums_by_stage(session: Session, base: Select[Any], *, per_manager: bool) -> dict[str, StageSums]:
    """Count, amount and weighted amount per stage of ``base``'s opportunities. A scope's are summed per
    manager and stage, which is the order of its index ranges, and added up here: grouped by stage alone,
    MariaDB collects the ranges in a temporary table first (a department: 35 ms instead of 12 ms)."""
    sub = base.subquery()
    keys = [sub.c.customer_manager_id, sub.c.stage] if per_manager else [sub.c.stage]
    sums: dict[str, list[Any]] = {}
    for row in session.execute(
        select(*keys, func.count(), func.sum(sub.c.amount), func.sum(sub.c.amount * sub.c.probability)).group_by(*keys)
    ):
        stage, count, amount, weighted = row[-4:]
        acc = sums.setdefault(stage, [0, Decimal(0), Decimal(0)])
        acc[0] += int(count)
        acc[1] += Decimal(str(amount or 0))
        acc[2] += Decimal(str(weighted or 0))
    return {stage: StageSums(n, amount, weighted) for stage, (n, amount, weighted) in sums.items()}


def _kept_sums_by_stage(session: Session, principal: Principal, resource: str) -> dict[str, StageSums]:
    """What ``_sums_by_stage`` gives for all open opportunities of the scope, read from the totals kept
    per customer manager and stage (``OpportunityOpenTotal``, exact: kept in the transaction of every
    write): a few hundred rows instead of every open opportunity (everyone's: 180,000)."""
    t = OpportunityOpenTotal
    stmt = (select(t.stage, func.sum(t.open_count), func.sum(t.amount_cents), func.sum(t.weighted_cents))
            .where(t.open_count > 0).group_by(t.stage))
    if not sees_everyone(principal, resource, "list"):
        # the same owners as ``by_customer_manager``: one range of the primary key per manager
        stmt = stmt.where(owner_clause(t.customer_manager_id, principal, resource=resource, action="list"))
    return {stage: StageSums(int(count), Decimal(int(cents or 0)).scaleb(-2), Decimal(int(weighted or 0)).scaleb(-2))
            for stage, count, cents, weighted in session.execute(stmt) if count}


def open_by_stage(session: Session, principal: Principal) -> dict[str, StageSums]:
    """The open opportunities ``principal`` lists, per stage (the home page's pipeline)."""
    return _kept_sums_by_stage(session, principal, "opportunity")


def pipeline(session: Session, principal: Principal, flt: PipelineFilter, *, items_per_stage: int = 20) -> list[StageColumn]:
    """Open opportunities by stage (dictionary order): count, total and probability-weighted amount, and
    each stage's biggest: everyone's straight from the (status, stage, amount, probability) index read
    backwards, a team's from the ranges of its managers; the shown rows are then loaded through the
    customer scope."""
    columns = {e.value: StageColumn(e.value, e.display()) for e in entries("opportunity_stage")}
    base, per_manager = _open_in_scope(principal, "pipeline")
    filtered = flt.manager is not None or flt.dept is not None or bool(flt.close_month)
    base = flt.apply(base, session)
    sums_by_stage = (_sums_by_stage(session, base, per_manager=per_manager) if filtered
                     else _kept_sums_by_stage(session, principal, "pipeline"))
    for stage, sums in sums_by_stage.items():
        col = columns.get(stage)
        if col is None:
            col = columns[stage] = StageColumn(stage, label("opportunity_stage", stage))
        col.count = sums.count
        col.total = sums.amount.quantize(Decimal("0.01"))
        col.weighted = (sums.weighted / 100).quantize(Decimal("0.01"))
    # each stage's biggest, all stages in one statement
    tops = [select(top.c.id) for top in (
        base.with_only_columns(SalesOpportunity.id).where(SalesOpportunity.stage == col.value)
        .order_by(*_BY_AMOUNT).limit(items_per_stage).subquery()
        for col in columns.values() if col.count)]
    ids = list(session.execute(tops[0] if len(tops) == 1 else union_all(*tops)).scalars()) if tops else []
    if ids:
        # then only those rows, with the customer's name (joined in the ranking, MariaDB would sort them all),
        # through the customer scope
        stmt = (select(SalesOpportunity, Customer.name.label("customer_name"))
                .join(Customer, Customer.id == SalesOpportunity.customer_id)
                .where(SalesOpportunity.id.in_(ids),
                       owner_clause(Customer.manager_id, principal, resource="pipeline", action="list"))
                .order_by(*_BY_AMOUNT))
        for opp, customer_name in session.execute(stmt):
            columns[opp.stage].items.append({
                "id": opp.id, "title": opp.title, "customer": customer_name, "amount": opp.amount,
                "probability": opp.probability, "expected_close_date": opp.expected_close_date,
                "version": opp.version,
            })
    return list(columns.values())
