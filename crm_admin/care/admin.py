"""Admin views of the customer care module: records, plans, and the manager's care workbench."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from crm_admin.care import service
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.care.service import care_status_label
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import check_linkman_of, upcoming_birthdays
from crm_admin.core import csrf
from crm_admin.core.errors import UserError
from crm_admin.core.formatting import format_date as fmt_date
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.formatting import local_now, local_today
from crm_admin.core.i18n import Labels
from crm_admin.core.pages import base_context, run_sync, url_path
from crm_admin.core.params import parse_id, parse_int, parse_local_datetime, parse_page
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.scope import sees_several_users, sees_user, users_in_scope
from crm_admin.core.views import CrmBaseView, CrmModelView, narrowed_ref, principal_of, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary import service as dictionary
from crm_admin.dictionary.service import DictSelectField

CARE_ORIGIN_LABELS = Labels({"birthday": "生日扫描", "plan": "关怀计划", "manual": "手工录入"})


def _check_linkman(session: Session, customer_id: int | None, linkman_id: int | None) -> None:
    """The form's contact must be one of the chosen customer's (the picker offers only those; a
    posted id is checked all the same)."""
    if not customer_id:
        raise UserError("请选择客户。", field="customer")
    check_linkman_of(session, customer_id, linkman_id, field="linkman")


def _customer_manager(session: Session, customer_id: int | None) -> int | None:
    if not customer_id:
        return None
    return session.execute(select(Customer.manager_id).where(Customer.id == customer_id)).scalar()


class _CareForm:
    """What the care task and care plan forms share: the care type from the dictionary, customer and
    contact picked within scope, and the list's related rows loaded in one go (``eager``)."""

    form_overrides = {"care_type": DictSelectField}
    form_args = {"care_type": {"dict_type": "care_type"}}
    form_ajax_refs = {
        "customer": scoped_ref(Customer, ["name", "code"]),
        "linkman": narrowed_ref(Linkman, ["name"], by="customer", column="customer_id"),
    }
    eager: tuple[Any, ...] = ()

    def list_query(self, request: Request) -> Any:
        return super().list_query(request).options(*(selectinload(r) for r in self.eager))  # type: ignore[misc]


class CustomerCareAdmin(_CareForm, CrmModelView, model=CustomerCare):
    name = "关怀记录"
    icon = "fa-solid fa-heart"
    category = "客户关怀"
    column_list = [CustomerCare.customer, CustomerCare.linkman, CustomerCare.care_type,
                   CustomerCare.due_date, CustomerCare.care_time, CustomerCare.status, CustomerCare.origin,
                   CustomerCare.manager]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "care_type": "关怀类型", "care_time": "关怀时间",
        "due_date": "计划日期", "detail": "关怀内容", "feedback": "客户反馈", "status": "状态",
        "manager": "客户经理", "origin": "来源", "plan_id": "关怀计划", "task_key": "任务键",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_formatters = {
        "status": lambda m, a: care_status_label(m.status, executed=m.care_time is not None),
        "origin": lambda m, a: CARE_ORIGIN_LABELS.get(m.origin, m.origin),
        "care_type": lambda m, a: dictionary.label("care_type", m.care_type),
    }
    column_formatters_detail = column_formatters
    column_default_sort = [(CustomerCare.id, True)]
    form_columns = ["customer", "linkman", "care_type", "due_date", "care_time", "detail", "feedback"]
    eager = (CustomerCare.customer, CustomerCare.linkman, CustomerCare.manager)

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        _check_linkman(session, obj.customer_id, obj.linkman_id)
        if not (obj.care_type or "").strip():
            raise UserError("请选择关怀类型。", field="care_type")
        if is_created:
            obj.origin = "manual"
            obj.status = "done" if (obj.feedback or "").strip() else "pending"
            if obj.due_date is None:
                obj.due_date = local_today()
        # a pending task is its customer's manager's (see care.service.pending_scope); a closed one
        # entered by hand is credited to its author when the customer has no manager
        manager_id = _customer_manager(session, obj.customer_id)
        if obj.status == "pending":
            obj.manager_id = manager_id
        elif is_created:
            obj.manager_id = manager_id or principal_of(request).id


class CarePlanAdmin(_CareForm, CrmModelView, model=CarePlan):
    name = "关怀计划"
    icon = "fa-solid fa-calendar-check"
    category = "客户关怀"
    column_list = [CarePlan.customer, CarePlan.linkman, CarePlan.care_type, CarePlan.interval_days,
                   CarePlan.next_date, CarePlan.is_active]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "care_type": "关怀类型", "interval_days": "间隔天数",
        "next_date": "下次日期", "manager_id": "客户经理", "is_active": "启用", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_formatters = {"care_type": lambda m, a: dictionary.label("care_type", m.care_type)}
    form_columns = ["customer", "linkman", "care_type", "interval_days", "next_date", "is_active", "remark"]
    eager = (CarePlan.customer, CarePlan.linkman)

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        _check_linkman(session, obj.customer_id, obj.linkman_id)
        if not obj.interval_days or not 1 <= int(obj.interval_days) <= 3650:
            raise UserError("间隔天数须在 1 到 3650 之间。", field="interval_days")
        if obj.next_date is None:
            raise UserError("请填写下次关怀日期。", field="next_date")
        if obj.is_active and _same_active_plan(session, obj):
            raise UserError("该客户(联系人)已有一个启用中的同类关怀计划,请修改已有的计划,不要重复新建。",
                            field="care_type")
        obj.manager_id = _customer_manager(session, obj.customer_id)


def _same_active_plan(session: Session, plan: CarePlan) -> bool:
    """Another active plan of the same kind for the same customer and contact (two would care twice)."""
    linkman = (CarePlan.linkman_id.is_(None) if plan.linkman_id is None
               else CarePlan.linkman_id == plan.linkman_id)
    stmt = select(CarePlan.id).where(CarePlan.customer_id == plan.customer_id, linkman,
                                     CarePlan.care_type == plan.care_type, CarePlan.is_active.is_(True))
    if plan.id is not None:
        stmt = stmt.where(CarePlan.id != plan.id)
    return session.execute(stmt.limit(1)).first() is not None


# ----- the workbench ---------------------------------------------------------------------------

def _task_dict(row: service.TaskRow, today: dt.date) -> dict[str, Any]:
    return {
        "id": row.id, "customer_id": row.customer_id, "customer": row.customer, "linkman": row.linkman,
        "care_type": row.care_type, "care_type_label": row.care_type_label,
        "due_date": fmt_date(row.due_date), "care_time": fmt_dt(row.care_time), "detail": row.detail,
        "feedback": row.feedback, "status": row.status, "status_label": care_status_label(row.status, executed=row.executed),
        "origin_label": CARE_ORIGIN_LABELS.get(row.origin, row.origin), "manager": row.manager,
        "executed": row.executed, "overdue_days": (today - row.due_date).days if row.due_date else 0,
    }


def _section(page: service.TaskPage, today: dt.date) -> dict[str, Any]:
    return {"rows": [_task_dict(r, today) for r in page.rows], "total": page.total, "page": page.page,
            "pages": page.pages}


COMPLETION_PAGE_SIZE = 30  # managers per page of the completion table (a sales lead's fit on one)


def _completion_dict(c: service.Completion) -> dict[str, Any]:
    return {"manager": c.manager, "total": c.total, "done": c.done, "cancelled": c.cancelled, "pending": c.pending,
            "overdue": c.overdue, "rate": c.rate}


def _completion(rows: list[service.Completion], page: int) -> dict[str, Any]:
    """One page of the completion table (an administrator's has a line for each of ~180 managers) and
    the line of all of them together."""
    pages = max(1, -(-len(rows) // COMPLETION_PAGE_SIZE))
    page = min(max(1, page), pages)
    every = service.Completion(None, "", *(sum(getattr(c, f) for c in rows)
                                           for f in ("total", "done", "cancelled", "pending", "overdue")))
    return {"rows": [_completion_dict(c) for c in rows[(page - 1) * COMPLETION_PAGE_SIZE:page * COMPLETION_PAGE_SIZE]],
            "all": _completion_dict(every) if len(rows) > 1 else None, "total": len(rows), "page": page,
            "pages": pages}


def _workbench_data(principal: Principal, manager_id: int | None, pages: dict[str, int]) -> dict[str, Any]:
    today = local_today()
    with session_factory()() as session:
        wb = service.workbench(session, principal, today, manager_id=manager_id, pages=pages)
        birthdays = upcoming_birthdays(session, principal, today, days=7, manager_id=manager_id)
        completion = service.completion_by_manager(session, principal, today - dt.timedelta(days=30), today, today)
        managers: list[dict[str, Any]] = []
        if sees_several_users(principal, "customer_care", "list"):
            managers = [{"id": u.id, "label": str(u)}
                        for u in users_in_scope(session, principal, resource="customer_care", action="list")]
    return {
        "today_date": today.isoformat(),
        "today_tasks": _section(wb.today, today),
        "overdue": _section(wb.overdue, today),
        "upcoming": _section(wb.upcoming, today),
        "recent": [_task_dict(r, today) for r in wb.recent],
        "birthdays": birthdays,
        "completion": _completion(completion, pages.get("completion", 1)),
        "managers": managers,
        "care_types": [(v, lbl) for v, lbl in dictionary.choices("care_type", blank=False)],
        "now_local": local_now().strftime("%Y-%m-%dT%H:%M"),
    }


def _execute(principal: Principal, form: dict[str, str]) -> None:
    with transaction() as session:
        service.execute_care(
            session, principal, parse_int(form.get("care_id")) or 0, care_type=form.get("care_type"),
            care_time=_when(form.get("care_time", "")), detail=form.get("detail"),
        )


def _feedback(principal: Principal, form: dict[str, str]) -> None:
    with transaction() as session:
        service.record_feedback(session, principal, parse_int(form.get("care_id")) or 0,
                                feedback=form.get("feedback"), status=form.get("status", ""))


def _manual(principal: Principal, form: dict[str, str]) -> None:
    with transaction() as session:
        service.create_manual_care(
            session, principal, customer_id=parse_int(form.get("customer_id")),
            linkman_id=parse_int(form.get("linkman_id")), care_type=form.get("care_type"),
            care_time=_when(form.get("care_time", "")), detail=form.get("detail"), feedback=form.get("feedback"),
        )


def _when(text: str) -> dt.datetime | None:
    if not text.strip():
        return None
    value = parse_local_datetime(text)
    if value is None:
        raise UserError("关怀时间格式不正确。", field="care_time")
    return value


def _lookup(principal: Principal, term: str) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return [{"id": i, "text": t} for i, t in service.search_customers(session, principal, term)]


def _linkmen(principal: Principal, customer_id: int) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return [{"id": i, "text": t} for i, t in service.linkmen_of(session, principal, customer_id)]


ACTIONS = {
    "execute": (_execute, "已记录本次关怀。请在得到客户反馈后记录反馈并完成任务。"),
    "feedback": (_feedback, "已记录客户反馈,任务已关闭。"),
    "manual": (_manual, "已新增关怀记录。"),
}


PAGED = (*service.WORKBENCH_SECTIONS, "completion")  # the paged parts of the page (?<name>_page=)


def _kept_params(request: Request) -> dict[str, str]:
    names = {"manager_id", *(f"{name}_page" for name in PAGED)}
    return {k: v[:12] for k, v in request.query_params.items() if k in names and v.isdigit()}


class CareWorkbench(CrmBaseView):
    """关怀工作台: today's, overdue and upcoming care tasks of the manager, with the closed loop."""

    name = "关怀工作台"
    icon = "fa-solid fa-hand-holding-heart"
    category = "客户关怀"
    resource = "customer_care"

    @route("/care/workbench", identity="care-workbench", permission=("customer_care", "list"))
    async def workbench_page(self, request: Request) -> Response:
        return await self._render(request)

    async def _render(self, request: Request, *, error: str = "", status: int = 200,
                      form: dict[str, str] | None = None) -> Response:
        principal = principal_of(request)
        manager_id = parse_id(request.query_params.get("manager_id"))
        if manager_id is not None and not sees_user(principal, manager_id, "customer_care", "list"):
            manager_id, error = None, error or "所选的客户经理不在您的数据范围内,已显示全部。"
        pages = {name: parse_page(request.query_params.get(f"{name}_page")) for name in PAGED}
        data = await run_sync(_workbench_data, principal, manager_id, pages)
        # the task forms post back with the same manager filter and pages, so the user lands where they were
        kept = _kept_params(request)
        back_query = f"?{urlencode(kept)}" if kept else ""
        # links are built on the workbench's own path: a refused POST renders this page at the form's address
        workbench = url_path(request, "admin:view-care-workbench")

        def page_link(**changes: int) -> str:
            return f"{workbench}?{urlencode({**kept, **changes})}"

        ctx = base_context(
            request, "关怀工作台", error=error, message=request.query_params.get("msg", "")[:200],
            manager_id=manager_id, form=form or {}, can_edit=principal.can("customer_care", "edit"),
            can_create=principal.can("customer_care", "create"),
            # built once here rather than twice per task row in the template (hundreds of route look-ups)
            execute_url=str(request.url_for("admin:view-care-execute")) + back_query,
            feedback_url=str(request.url_for("admin:view-care-feedback")) + back_query,
            csrf_value=csrf.token_of(request),
            # a row's 执行/记录反馈 without script: this page with that row's forms open (?open=<id>)
            open_id=parse_id(request.query_params.get("open")), open_link=page_link() + ("&" if kept else "") + "open=",
            page_link=page_link, workbench_path=workbench,
            **data,
        )
        return await self.templates.TemplateResponse(request, "care/workbench.html", ctx, status_code=status)

    async def _act(self, request: Request, action: str) -> Response:
        raw = await request.form()
        form = {k: str(v)[:4000] for k, v in raw.items() if k != "csrf_token"}
        fn, message = ACTIONS[action]
        try:
            await run_sync(fn, principal_of(request), form)
        except UserError as exc:
            return await self._render(request, error=exc.message, status=exc.status_code, form=form)
        back = str(request.url_for("admin:view-care-workbench"))
        return RedirectResponse(f"{back}?{urlencode({**_kept_params(request), 'msg': message})}", status_code=303)

    @route("/care/execute", methods=["POST"], identity="care-execute", permission=("customer_care", "edit"))
    async def care_execute(self, request: Request) -> Response:
        return await self._act(request, "execute")

    @route("/care/feedback", methods=["POST"], identity="care-feedback", permission=("customer_care", "edit"))
    async def care_feedback(self, request: Request) -> Response:
        return await self._act(request, "feedback")

    @route("/care/manual", methods=["POST"], identity="care-manual", permission=("customer_care", "create"))
    async def care_manual(self, request: Request) -> Response:
        return await self._act(request, "manual")

    @route("/care/lookup/customers", identity="care-lookup-customers", permission=("customer_care", "create"))
    async def care_lookup_customers(self, request: Request) -> Response:
        term = request.query_params.get("q", "")[:64]
        return JSONResponse({"results": await run_sync(_lookup, principal_of(request), term)})

    @route("/care/lookup/linkmen", identity="care-lookup-linkmen", permission=("customer_care", "create"))
    async def care_lookup_linkmen(self, request: Request) -> Response:
        customer_id = parse_int(request.query_params.get("customer_id")) or 0
        return JSONResponse({"results": await run_sync(_linkmen, principal_of(request), customer_id)})


VIEWS = [CareWorkbench, CustomerCareAdmin, CarePlanAdmin]
