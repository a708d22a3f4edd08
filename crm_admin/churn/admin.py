"""Admin views of the churn module: rules, the alert handling pages, and the analysis."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session, selectinload
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import SelectField

from crm_admin.churn import service
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.pages import base_context, run_sync
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, CrmModelView, ReadOnlyModelView, principal_of
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary import service as dictionary


class ChurnRuleAdmin(CrmModelView, model=ChurnRule):
    name = "预警规则"
    name_plural = "流失预警规则"
    icon = "fa-solid fa-sliders"
    category = "客户流失"
    column_list = [ChurnRule.name, ChurnRule.metric, ChurnRule.threshold, ChurnRule.risk_level,
                   ChurnRule.is_active]
    column_labels = {"name": "规则名称", "metric": "指标", "threshold": "阈值", "risk_level": "风险等级",
                     "is_active": "启用", "created_at": "创建时间", "updated_at": "更新时间"}
    column_formatters = {
        "metric": lambda m, a: service.METRIC_LABELS.get(m.metric, m.metric),
        "risk_level": lambda m, a: service.LEVEL_LABELS.get(m.risk_level, m.risk_level),
    }
    column_formatters_detail = column_formatters
    form_columns = ["name", "metric", "threshold", "risk_level", "is_active"]
    form_overrides = {"metric": SelectField, "risk_level": SelectField}
    form_args = {
        "metric": {"choices": service.METRIC_LABELS.choices},
        "risk_level": {"choices": service.LEVEL_LABELS.choices},
        "threshold": {"description": "天数规则填天数(如 90);下降规则填百分比(如 50 表示下降 50% 及以上)"},
    }

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if not (obj.name or "").strip():
            raise UserError("请填写规则名称。", field="name")
        try:
            threshold = Decimal(str(obj.threshold)) if obj.threshold is not None else None
        except InvalidOperation:
            threshold = None
        service.validate_rule(obj.metric, threshold, obj.risk_level)


class ChurnAlertAdmin(ReadOnlyModelView, model=ChurnAlert):
    """The plain list (and export) of alerts; handling goes through the handling page's service."""

    name = "预警列表"
    name_plural = "流失预警记录"
    icon = "fa-solid fa-triangle-exclamation"
    category = "客户流失"
    column_list = [ChurnAlert.customer, ChurnAlert.rule, ChurnAlert.risk_level, ChurnAlert.detected_at,
                   ChurnAlert.status, ChurnAlert.reason]
    column_labels = {
        "customer": "客户", "rule": "规则", "risk_level": "风险等级", "detected_at": "发现时间",
        "status": "状态", "reason": "流失原因", "analysis": "原因分析", "measures": "挽留措施",
        "handler": "处理人", "handled_at": "处理时间", "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_formatters = {
        "risk_level": lambda m, a: service.LEVEL_LABELS.get(m.risk_level, m.risk_level),
        "status": lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        "reason": lambda m, a: dictionary.label("churn_reason", m.reason),
    }
    column_default_sort = [(ChurnAlert.id, True)]

    def is_visible(self, request: Request) -> bool:
        return False

    def list_query(self, request: Request) -> Any:
        return super().list_query(request).options(selectinload(ChurnAlert.customer),
                                                   selectinload(ChurnAlert.rule))


def _row(a: service.AlertRow) -> dict[str, Any]:
    unit = "%" if a.metric == "order_amount_drop_pct" else "天"
    return {
        "id": a.id, "customer_id": a.customer_id, "customer": a.customer, "customer_code": a.customer_code,
        "manager": a.manager, "rule": a.rule, "condition": f"{service.METRIC_LABELS.get(a.metric, a.metric)} ≥ "
        f"{a.threshold.normalize():f}{unit}", "risk_level": a.risk_level,
        "risk_label": service.LEVEL_LABELS.get(a.risk_level, a.risk_level), "status": a.status,
        "status_label": service.STATUS_LABELS.get(a.status, a.status), "detected_at": fmt_dt(a.detected_at),
        "reason": dictionary.label("churn_reason", a.reason), "analysis": a.analysis or "",
        "measures": a.measures or "", "handled_at": fmt_dt(a.handled_at),
    }


def _list(principal: Principal, status: str, level: str) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return [_row(a) for a in service.list_alerts(session, principal, status=status, risk_level=level)]


def _one(principal: Principal, alert_id: int) -> dict[str, Any]:
    with session_factory()() as session:
        return _row(service.get_alert(session, principal, alert_id))


def _follow(principal: Principal, alert_id: int, form: dict[str, str]) -> None:
    with transaction() as session:
        service.follow_alert(session, principal, alert_id, measures=form.get("measures"))


def _close(principal: Principal, alert_id: int, form: dict[str, str]) -> None:
    with transaction() as session:
        service.close_alert(session, principal, alert_id, outcome=form.get("outcome", ""),
                            reason=form.get("reason"), analysis=form.get("analysis"), measures=form.get("measures"))


class ChurnAlertsPage(CrmBaseView):
    """流失预警处理: the open alerts in scope; follow one, then close it as retained or lost."""

    name = "流失预警"
    icon = "fa-solid fa-triangle-exclamation"
    category = "客户流失"
    resource = "churn_alert"

    @route("/churn/alerts", identity="churn-alerts", permission=("churn_alert", "list"))
    async def alerts_page(self, request: Request) -> Response:
        qp = request.query_params
        status = qp.get("status", "active")
        if status not in ("active", "", *service.STATUS_LABELS):
            status = "active"
        level = qp.get("level", "") if qp.get("level", "") in service.LEVEL_LABELS else ""
        rows = await run_sync(_list, principal_of(request), status, level)
        ctx = base_context(request, "流失预警", rows=rows, status=status, level=level,
                           statuses=service.STATUS_LABELS, levels=service.LEVEL_LABELS,
                           message=qp.get("msg", "")[:200])
        return await self.templates.TemplateResponse(request, "churn/alerts.html", ctx)

    @route("/churn/alerts/{alert_id:int}", identity="churn-alert", permission=("churn_alert", "view"),
           row=(ChurnAlert, "alert_id"))
    async def alert_page(self, request: Request) -> Response:
        return await self._render_alert(request)

    async def _render_alert(self, request: Request, *, error: str = "", status: int = 200,
                            form: dict[str, str] | None = None) -> Response:
        principal = principal_of(request)
        alert_id = int(request.path_params["alert_id"])
        try:
            alert = await run_sync(_one, principal, alert_id)
        except NotFound as exc:
            raise HTTPException(status_code=404, detail=exc.message) from None
        ctx = base_context(request, "流失预警处理", alert=alert, error=error, form=form or {},
                           message=request.query_params.get("msg", "")[:200],
                           can_edit=principal.can("churn_alert", "edit"),
                           reasons=dictionary.choices("churn_reason", alert.get("reason")))
        return await self.templates.TemplateResponse(request, "churn/alert.html", ctx, status_code=status)

    async def _act(self, request: Request, fn: Any, message: str) -> Response:
        raw = await request.form()
        form = {k: str(v)[:4000] for k, v in raw.items() if k != "csrf_token"}
        alert_id = int(request.path_params["alert_id"])
        try:
            await run_sync(fn, principal_of(request), alert_id, form)
        except NotFound as exc:
            raise HTTPException(status_code=404, detail=exc.message) from None
        except UserError as exc:
            return await self._render_alert(request, error=exc.message, status=exc.status_code, form=form)
        back = str(request.url_for("admin:view-churn-alert", alert_id=alert_id))
        return RedirectResponse(f"{back}?{urlencode({'msg': message})}", status_code=303)

    @route("/churn/alerts/{alert_id:int}/follow", methods=["POST"], identity="churn-alert-follow",
           permission=("churn_alert", "edit"), row=(ChurnAlert, "alert_id"))
    async def alert_follow(self, request: Request) -> Response:
        return await self._act(request, _follow, "已记录挽留措施,预警进入跟进中。")

    @route("/churn/alerts/{alert_id:int}/close", methods=["POST"], identity="churn-alert-close",
           permission=("churn_alert", "edit"), row=(ChurnAlert, "alert_id"))
    async def alert_close(self, request: Request) -> Response:
        return await self._act(request, _close, "预警已关闭。")


def _analysis(principal: Principal) -> dict[str, Any]:
    with session_factory()() as session:
        a = service.analysis(session, principal)
    levels = sorted(a.by_level)
    return {
        "a": a,
        "retention_rate": a.retention_rate,
        "open_total": sum(a.open_by_level.values()),
        "level_rows": [
            {"label": service.LEVEL_LABELS.get(lvl, lvl), **{s: a.by_level[lvl].get(s, 0) for s in service.STATUS_LABELS}}
            for lvl in levels
        ],
        "status_labels": service.STATUS_LABELS,
        "chart": json.dumps({
            "reasons": [{"name": n, "value": v} for n, v in a.lost_by_reason],
            "levels": {"names": [service.LEVEL_LABELS.get(lvl, lvl) for lvl in levels],
                       "series": [{"name": service.STATUS_LABELS[s], "data": [a.by_level[lvl].get(s, 0) for lvl in levels]}
                                  for s in service.STATUS_LABELS]},
            "managers": {"names": [n for n, _ in a.lost_by_manager], "values": [v for _, v in a.lost_by_manager]},
            "months": {"names": [m for m, _, _ in a.by_month], "lost": [x for _, x, _ in a.by_month],
                       "retained": [y for _, _, y in a.by_month]},
        }, ensure_ascii=False).replace("<", "\\u003c"),  # safe inside <script>: names are user data
    }


class ChurnAnalysisPage(CrmBaseView):
    """流失分析: open alerts, losses by reason, level, manager and month, the retention rate."""

    name = "流失分析"
    icon = "fa-solid fa-chart-pie"
    category = "客户流失"
    resource = "churn_analysis"

    @route("/churn/analysis", identity="churn-analysis", permission=("churn_analysis", "list"))
    async def analysis_page(self, request: Request) -> Response:
        data = await run_sync(_analysis, principal_of(request))
        ctx = base_context(request, "流失分析", **data)
        return await self.templates.TemplateResponse(request, "churn/analysis.html", ctx)


VIEWS = [ChurnAlertsPage, ChurnAnalysisPage, ChurnRuleAdmin, ChurnAlertAdmin]
