"""Admin views of the sales opportunities module and the pipeline (销售漏斗) page."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import get_history
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from wtforms import HiddenField, SelectField

from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.export import format_local
from crm_admin.core.pages import run_sync, url_path
from crm_admin.core.params import parse_id
from crm_admin.core.routes import route
from crm_admin.core.scope import depts_in_scope, sees_user, users_in_scope
from crm_admin.core.views import CrmBaseView, CrmModelView, principal_of, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import DictSelectField, label
from crm_admin.opportunities import service
from crm_admin.opportunities.models import SalesOpportunity


class OpportunityAdmin(CrmModelView, model=SalesOpportunity):
    name = "销售机会"
    icon = "fa-solid fa-chart-line"
    category = "客户管理"
    column_list = [SalesOpportunity.title, SalesOpportunity.customer, SalesOpportunity.stage,
                   SalesOpportunity.amount, SalesOpportunity.probability,
                   SalesOpportunity.expected_close_date, SalesOpportunity.status, SalesOpportunity.manager]
    column_export_list = ["title", "customer", "stage", "amount", "probability", "expected_close_date",
                          "next_step", "next_follow_up_at", "status", "lost_reason", "manager", "created_at"]
    column_labels = {
        "customer": "客户", "title": "机会名称", "stage": "阶段", "amount": "预计成交金额",
        "probability": "成交概率(%)", "expected_close_date": "预计成交日期", "next_step": "下一步计划",
        "next_follow_up_at": "下次跟进", "manager": "客户经理", "status": "状态",
        "lost_reason": "丢单原因", "created_at": "创建时间", "updated_at": "更新时间", "version": "版本",
    }
    column_dict_types = {"stage": "opportunity_stage"}
    column_choice_labels = {"status": service.STATUS_LABELS}
    column_formatters = {
        SalesOpportunity.customer: lambda m, a: m.customer.name if m.customer else "",
        SalesOpportunity.stage: lambda m, a: label("opportunity_stage", m.stage),
        SalesOpportunity.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        SalesOpportunity.amount: lambda m, a: f"{m.amount:,.2f}",
    }
    column_formatters_detail = {
        SalesOpportunity.stage: lambda m, a: label("opportunity_stage", m.stage),
        SalesOpportunity.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        SalesOpportunity.next_follow_up_at: lambda m, a: format_local(m.next_follow_up_at),
        SalesOpportunity.created_at: lambda m, a: format_local(m.created_at),
        SalesOpportunity.updated_at: lambda m, a: format_local(m.updated_at),
    }
    column_searchable_list = [SalesOpportunity.title]
    column_sortable_list = [SalesOpportunity.amount, SalesOpportunity.expected_close_date,
                            SalesOpportunity.created_at]
    column_default_sort = [(SalesOpportunity.created_at, True)]
    column_details_exclude_list = ["version"]
    form_columns = ["customer", "title", "stage", "amount", "probability", "expected_close_date",
                    "next_step", "next_follow_up_at", "status", "lost_reason", "version"]
    form_overrides = {"stage": DictSelectField, "status": SelectField, "version": HiddenField}
    form_args = {
        "stage": {"dict_type": "opportunity_stage"},
        "status": {"choices": service.STATUS_LABELS.choices, "default": "open"},
    }
    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}
    stale_message = "保存失败:该销售机会已被他人修改,请刷新页面查看最新内容后再修改(您填写的内容仍保留在下方)。"
    details_template = "opportunities/details.html"

    async def details_context(self, request: Request) -> dict[str, Any]:
        """Below the details (SQLAdmin asks once the scoped opportunity was found): its stage history."""
        context = await super().details_context(request)
        pk = parse_id(request.path_params.get("pk"))
        history = await run_sync(_stage_history, principal_of(request), pk) if pk else []
        return {**context, "stage_history": history}

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if obj.customer_id is None:
            raise UserError("请选择客户。", field="customer")
        stage_hist = get_history(obj, "stage")
        status_hist = get_history(obj, "status")
        before_stage = None if is_created else (stage_hist.deleted[0] if stage_hist.deleted else obj.stage)
        before_status = None if is_created else (status_hist.deleted[0] if status_hist.deleted else obj.status)
        if is_created:
            owner = session.execute(select(Customer.manager_id).where(Customer.id == obj.customer_id)).scalar()
            obj.manager_id = owner or principal_of(request).id
        service.validate_opportunity(obj, previous_stage=before_stage)
        if is_created:
            session.add(obj)
        session.flush()
        service.record_stage_change(session, obj, from_stage=before_stage, from_status=before_status,
                                    user_id=principal_of(request).id)


def _stage_history(principal: Any, opportunity_id: int) -> list[service.StageChange]:
    with session_factory()() as session:
        try:
            return service.stage_history(session, principal, opportunity_id)
        except NotFound:  # gone (or moved out of scope) since the page looked it up
            return []


class PipelineView(CrmBaseView):
    """销售漏斗: open opportunities by stage, with totals; move one to another stage."""

    name = "销售漏斗"
    icon = "fa-solid fa-filter-circle-dollar"
    category = "客户管理"
    resource = "pipeline"

    @route("/pipeline", identity="pipeline", permission=("pipeline", "list"))
    async def pipeline_page(self, request: Request) -> Response:
        principal = principal_of(request)
        flt = _filter(request)
        try:
            data = await run_sync(_pipeline_data, principal, flt)
        except UserError as exc:
            flt.close_month = ""
            data = await run_sync(_pipeline_data, principal, flt)
            data["error"] = exc.message
        context = {
            "title": "销售漏斗", "flt": flt, "csrf_token": str(request.session.get("csrf", "")),
            "can_move": principal.can("opportunity", "edit"),
            "message": request.query_params.get("message", ""),
            "error": data.pop("error", request.query_params.get("error", "")),
            "query": urlencode({k: v for k, v in request.query_params.items() if k in ("manager", "dept", "close_month")}),
            **data,
        }
        return await self.templates.TemplateResponse(request, "opportunities/pipeline.html", context)

    @route("/pipeline/move", methods=["POST"], identity="pipeline-move", permission=("opportunity", "edit"))
    async def move(self, request: Request) -> Response:
        form = await request.form()
        principal = principal_of(request)
        wants_json = "application/json" in request.headers.get("accept", "")
        back = str(form.get("back", ""))
        try:
            opp_id = parse_id(form.get("opportunity_id"))
            if opp_id is None:
                raise ValueError("no opportunity")
            version = parse_id(form.get("version"))
            stage = str(form.get("stage", ""))
            await run_sync(_move_sync, principal, opp_id, stage, version)
        except ValueError:
            return _answer(request, wants_json, False, "参数不正确。", back, 400)
        except UserError as exc:
            return _answer(request, wants_json, False, exc.message, back, exc.status_code)
        return _answer(request, wants_json, True, f"已移到“{label('opportunity_stage', stage)}”。", back, 200)


def _answer(request: Request, wants_json: bool, ok: bool, message: str, back: str, status: int) -> Response:
    if wants_json:
        return JSONResponse({"ok": ok, "message": message}, status_code=status)
    key = "message" if ok else "error"
    sep = "&" if back else ""
    return RedirectResponse(url_path(request, "admin:view-pipeline", query=f"{back}{sep}{urlencode({key: message})}"),
                            status_code=303)


def _move_sync(principal: Any, opp_id: int, stage: str, version: int | None) -> None:
    with transaction() as session:
        service.move_stage(session, principal, opportunity_id=opp_id, stage=stage, version=version)


def _int(value: str | None) -> int | None:
    return parse_id(value)


def _filter(request: Request) -> service.PipelineFilter:
    q = request.query_params
    return service.PipelineFilter(manager=_int(q.get("manager")), dept=_int(q.get("dept")),
                                  close_month=(q.get("close_month") or "").strip()[:7])


def _pipeline_data(principal: Any, flt: service.PipelineFilter) -> dict[str, Any]:
    error = ""
    with session_factory()() as session:
        user_rows = users_in_scope(session, principal, resource="pipeline", action="list")
        dept_rows = depts_in_scope(session, principal, resource="pipeline", action="list")
        # a filter naming someone (or a department) outside the scope is refused, not silently empty
        if flt.manager is not None and not sees_user(principal, flt.manager, "pipeline", "list"):
            flt.manager, error = None, "所选的客户经理不在您的数据范围内,已显示全部。"
        if flt.dept is not None and flt.dept not in {d for d, _name in dept_rows}:
            flt.dept, error = None, "所选的部门不在您的数据范围内,已显示全部。"
        columns = service.pipeline(session, principal, flt)
    return {
        "columns": columns,
        "total_count": sum(c.count for c in columns),
        "total_amount": sum((c.total for c in columns), Decimal("0.00")),
        "total_weighted": sum((c.weighted for c in columns), Decimal("0.00")),
        "managers": [(u.id, u.real_name or u.username) for u in user_rows],
        "depts": dept_rows,
        **({"error": error} if error else {}),
        "stages_json": json.dumps([[c.value, c.label] for c in columns], ensure_ascii=False),
    }


VIEWS = [OpportunityAdmin, PipelineView]
