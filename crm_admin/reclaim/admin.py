"""Admin views of reclaim rules: the rules themselves, the preview before enabling one, and the
customers about to be reclaimed (the owner's warning)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.requests import Request
from starlette.responses import Response
from wtforms import IntegerField

from crm_admin.core.errors import NotFound
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.pages import base_context, run_sync
from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, CrmModelView, principal_of
from crm_admin.db import session_factory
from crm_admin.dictionary import service as dictionary
from crm_admin.dictionary.service import DictSelectField
from crm_admin.reclaim import service
from crm_admin.reclaim.models import ReclaimRule

CATEGORY = "客户管理"  # beside the pools' own page (公海客户)


def _level(m: Any, _a: Any = None) -> str:
    return dictionary.label("customer_level", m.level) if m.level else "所有等级"


def _days(value: int | None) -> str:
    return f"{value} 天" if value else "—"


class ReclaimRuleAdmin(CrmModelView, model=ReclaimRule):
    name = "回收规则"
    icon = "fa-solid fa-recycle"
    category = CATEGORY
    column_list = [ReclaimRule.name, ReclaimRule.pool, ReclaimRule.level, ReclaimRule.days_without_follow_up,
                   ReclaimRule.days_without_order, ReclaimRule.warn_days, ReclaimRule.priority,
                   ReclaimRule.is_active]
    column_labels = {
        "name": "规则名称", "pool": "回收到公海", "level": "客户等级", "days_without_follow_up": "未跟进天数",
        "days_without_order": "未下单天数", "warn_days": "提前提醒天数", "protect_from_stage": "商机保护阶段",
        "protect_pending_care": "有待办关怀时不回收", "priority": "优先级", "is_active": "启用", "remark": "备注",
    }
    column_formatters = {
        "pool": lambda m, a: m.pool.name if m.pool else "",
        "level": _level,
        "days_without_follow_up": lambda m, a: _days(m.days_without_follow_up),
        "days_without_order": lambda m, a: _days(m.days_without_order),
        "warn_days": lambda m, a: _days(m.warn_days),
        "protect_from_stage": lambda m, a: (dictionary.label("opportunity_stage", m.protect_from_stage) + " 及之后"
                                            if m.protect_from_stage else "—"),
    }
    column_default_sort = [(ReclaimRule.priority, False), (ReclaimRule.id, False)]
    form_columns = ["name", "pool", "level", "days_without_follow_up", "days_without_order", "warn_days",
                    "protect_from_stage", "protect_pending_care", "priority", "is_active", "remark"]
    form_overrides = {"level": DictSelectField, "protect_from_stage": DictSelectField,
                      "days_without_follow_up": IntegerField, "days_without_order": IntegerField}
    form_args = {
        "level": {"dict_type": "customer_level", "description": "留空表示所有等级的客户"},
        "protect_from_stage": {"dict_type": "opportunity_stage",
                               "description": "客户有处于该阶段或之后阶段的进行中商机时不回收;留空表示不按商机保护"},
        "days_without_follow_up": {"description": "从最后一次跟进、客户创建或转入当前客户经理名下起算;留空表示不按跟进回收"},
        "days_without_order": {"description": "从最后一次下单、客户创建或转入当前客户经理名下起算;留空表示不按下单回收"},
        "warn_days": {"description": "在回收前几天提醒客户经理(0 表示不提醒),须小于回收天数"},
        "priority": {"description": "数字小的规则先执行;一个客户只被第一条满足的规则回收"},
        "is_active": {"description": "启用前请先在“回收预览”中查看这条规则会回收哪些客户"},
    }

    def list_query(self, request: Request) -> Any:
        return super().list_query(request).options(selectinload(ReclaimRule.pool))

    def details_query(self, request: Request) -> Any:
        return super().details_query(request).options(selectinload(ReclaimRule.pool))

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        # the form's pool arrives as ``pool_id`` (a relation picked in the form is copied there by the
        # base view); reading ``obj.pool`` of a saved rule would load it, which the model forbids
        service.validate_rule(session, obj)


# ----- the preview -----------------------------------------------------------------------------

def _preview(rule_id: int | None) -> dict[str, Any]:
    with session_factory()() as session:
        rules: list[dict[str, Any]] = [{"id": r.id, "name": r.name, "active": r.is_active} for r in session.execute(
            select(ReclaimRule).order_by(ReclaimRule.priority, ReclaimRule.id)).scalars()]
        days = [{"day": d.day.isoformat(), "status": d.status, "moved": d.moved, "detail": d.detail or "",
                 "finished_at": fmt_dt(d.finished_at)} for d in service.recent_days(session)]
        if rule_id is None and rules:
            rule_id = int(rules[0]["id"])
        result: dict[str, Any] = {"rules": rules, "rule_id": rule_id, "days": days, "preview": None}
        if rule_id is None:
            return result
        try:
            p = service.preview(session, rule_id)
        except NotFound:
            return result
        result["preview"] = {
            "name": p.rule.name, "pool": p.pool, "condition": p.condition, "count": p.count,
            "active": p.rule.is_active, "level": _level(p.rule), "others_first": p.others_first,
            "shown": len(p.rows),
            "rows": [{"customer_id": r.customer_id, "code": r.code, "name": r.name,
                      "level": dictionary.label("customer_level", r.level) if r.level else "",
                      "manager": r.manager, "reason": service.REASON_PREFIX + r.reason,
                      "last_contact_at": fmt_dt(r.last_contact_at) or "—",
                      "last_order_at": fmt_dt(r.last_order_at) or "—"} for r in p.rows],
        }
        return result


class ReclaimPreviewPage(CrmBaseView):
    """回收预览: what a rule would reclaim now (how many, the first 100 with the reason), before it is
    enabled; and the daily runs of the last two weeks."""

    name = "回收预览"
    icon = "fa-solid fa-magnifying-glass-chart"
    category = CATEGORY
    resource = "reclaim_rule"

    @route("/reclaim-rule/preview", identity="reclaim-preview", permission=("reclaim_rule", "view"))
    async def preview_page(self, request: Request) -> Response:
        rule_id = parse_id(request.query_params.get("rule"))
        data = await run_sync(_preview, rule_id)
        ctx = base_context(request, "回收预览", **data)
        return await self.templates.TemplateResponse(request, "reclaim/preview.html", ctx)


# ----- the warning -----------------------------------------------------------------------------

def _upcoming(principal: Principal) -> dict[str, Any]:
    with session_factory()() as session:
        total, rows = service.upcoming(session, principal, limit=200)
    return {"total": total, "rows": [vars(r) for r in rows]}


class UpcomingReclaimPage(CrmBaseView):
    """即将被回收的客户: the customers within the user's scope that a rule will reclaim within its
    warning days, with the days left — the owner still has time to follow up."""

    name = "即将被回收"
    icon = "fa-solid fa-hourglass-half"
    category = CATEGORY
    resource = "customer"

    @route("/customer/reclaim-upcoming", identity="reclaim-upcoming", permission=("customer", "list"))
    async def upcoming_page(self, request: Request) -> Response:
        data = await run_sync(_upcoming, principal_of(request))
        ctx = base_context(request, "即将被回收的客户", **data)
        return await self.templates.TemplateResponse(request, "reclaim/upcoming.html", ctx)


VIEWS = [ReclaimRuleAdmin, ReclaimPreviewPage, UpcomingReclaimPage]
