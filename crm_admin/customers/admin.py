"""Admin views of the customers module: the customer list with its combined query, the 360° page,
saved queries, merge and the explicit cascade delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from wtforms import HiddenField, SelectField

from crm_admin.accounts.models import SysUser
from crm_admin.core import search
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.export import format_local
from crm_admin.core.formatting import html
from crm_admin.core.masking import SENSITIVE_PERMISSION
from crm_admin.core.pages import run_sync, url_path
from crm_admin.core.routes import route
from crm_admin.core.scope import check_assignee
from crm_admin.core.views import CrmModelView, assignable_ref, principal_of
from crm_admin.customers import pages, saved_queries, service
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.customers.page360 import ACTIONS, load_360, run_action
from crm_admin.customers.query import CustomerQuery
from crm_admin.dictionary.service import DictSelectField


def _csrf(request: Request) -> str:
    return str(request.session.get("csrf", ""))


def _date_cell(text: str) -> Markup:
    """A list date on one line, a little smaller (the text is a formatted date, escaped anyway)."""
    return html('<span class="crm-date">{}</span>', text)


def _name_link(model: Customer, _attr: Any, request: Request) -> Markup:
    # html() escapes the customer's name; the page's path is looked up once per request
    paths: dict[str, str] = request.state.__dict__.setdefault("_crm_360_path", {})
    if "base" not in paths:
        paths["base"] = url_360(request, 0).removesuffix("/0")
    term = request.query_params.get("search") or request.query_params.get("q")
    name = search.highlight(model.name, term) if term else model.name  # the part searched for, marked
    return html('<a href="{}/{}">{}</a>', paths["base"], model.id, name)


def _dict_label(dict_type: str) -> Any:
    def fmt(model: Any, attr: Any) -> str:
        from crm_admin.dictionary.service import label

        key = attr if isinstance(attr, str) else attr.key
        return label(dict_type, getattr(model, key))

    return fmt


class CustomerAdmin(CrmModelView, model=Customer):
    name = "客户"
    name_plural = "客户信息"
    icon = "fa-solid fa-building"
    category = "客户管理"
    list_template = "customers/list.html"
    # What fits a 1366 px laptop without scrolling sideways; 创建时间 stays in the export, the details
    # page and the query panel's sort order.
    column_list = [
        Customer.code, Customer.name, Customer.industry, Customer.level, Customer.status,
        Customer.region, Customer.manager, Customer.last_contact_at,
    ]
    column_export_list = [
        "code", "name", "credit_code", "industry", "source", "level", "status", "region", "address",
        "phone", "email", "website", "manager", "last_contact_at", "last_order_at", "created_at", "remark",
    ]
    column_labels = {
        "code": "客户编号", "name": "客户名称", "credit_code": "统一社会信用代码", "industry": "行业",
        "source": "客户来源", "level": "客户等级", "status": "状态", "region": "地区", "address": "地址",
        "phone": "电话", "email": "邮箱", "website": "网站", "manager": "客户经理",
        "last_contact_at": "最近联系", "last_order_at": "最近下单", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间", "version": "版本",
        "pool_id": "所在公海(编号)", "pool_entered_at": "进入公海时间",
    }
    column_dict_types = {"industry": "industry", "source": "customer_source", "level": "customer_level"}
    column_choice_labels = {"status": STATUS_LABELS}
    column_formatters = {
        Customer.name: _name_link,
        Customer.status: lambda m, a: STATUS_LABELS.get(m.status, m.status),
        Customer.industry: _dict_label("industry"),
        Customer.level: _dict_label("customer_level"),
        Customer.last_contact_at: lambda m, a: _date_cell(format_local(m.last_contact_at)),
        Customer.created_at: lambda m, a: _date_cell(format_local(m.created_at)),
    }
    column_formatters_detail = {
        Customer.name: _name_link,  # the details page leads to the 360° page
        Customer.status: lambda m, a: STATUS_LABELS.get(m.status, m.status),
        Customer.industry: _dict_label("industry"),
        Customer.source: _dict_label("customer_source"),
        Customer.level: _dict_label("customer_level"),
        Customer.last_contact_at: lambda m, a: format_local(m.last_contact_at),
        Customer.last_order_at: lambda m, a: format_local(m.last_order_at),
        Customer.created_at: lambda m, a: format_local(m.created_at),
        Customer.updated_at: lambda m, a: format_local(m.updated_at),
        Customer.pool_entered_at: lambda m, a: format_local(m.pool_entered_at),
    }
    column_searchable_list = [Customer.name, Customer.code, Customer.credit_code]
    column_sortable_list = [Customer.name, Customer.created_at, Customer.last_contact_at]
    column_default_sort = [(Customer.created_at, True)]
    column_details_exclude_list = ["name_key", "version"]
    form_columns = [
        "name", "credit_code", "industry", "source", "level", "status", "region", "address", "phone",
        "email", "website", "manager", "remark", "version",
    ]
    form_overrides = {
        "industry": DictSelectField, "source": DictSelectField, "level": DictSelectField,
        "status": SelectField, "version": HiddenField,
    }
    form_args = {
        "industry": {"dict_type": "industry"},
        "source": {"dict_type": "customer_source"},
        "level": {"dict_type": "customer_level"},
        "status": {"choices": STATUS_LABELS.choices, "default": "potential"},
        "credit_code": {"description": "18 位统一社会信用代码,系统会校验校验位"},
    }
    form_ajax_refs = {"manager": assignable_ref(["real_name", "username"], order_by="username")}
    stale_message = "保存失败:该客户已被他人修改,请刷新页面查看最新内容后再修改(您填写的内容仍保留在下方)。"

    # ----- the combined query --------------------------------------------------------------
    def list_query(self, request: Request) -> Select[Any]:
        stmt = super().list_query(request)
        query = CustomerQuery.from_params(request.query_params)
        return query.apply(stmt)

    async def list_context(self, request: Request) -> dict[str, Any]:
        context = await super().list_context(request)
        context.update(await run_sync(pages.filter_panel, principal_of(request), request.query_params))
        context["csrf_token"] = _csrf(request)
        return context

    # ----- writes ------------------------------------------------------------------------------
    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        self._settle_manager(session, obj, is_created, request)
        # the one path of every customer save (an import that updates goes through it too)
        service.before_save(session, principal_of(request), obj, is_created=is_created)

    def _settle_manager(self, session: Session, obj: Any, is_created: bool, request: Request) -> None:
        """The form sets the ``manager`` relationship, which wins over ``manager_id`` at flush.

        New customers belong to their creator unless the user may assign; changing the manager of
        an existing customer is a transfer (or needs ``assign``).
        """
        missing = object()
        chosen = obj.__dict__.get("manager", missing)
        if chosen is missing:
            return
        principal = principal_of(request)
        chosen_id = chosen.id if chosen is not None else None
        may_assign = principal.can("customer", "assign")
        if is_created and (chosen_id is None or not may_assign):
            if chosen_id not in (None, principal.id):
                raise UserError("您没有分配客户经理的权限:新建的客户归您本人负责。", field="manager")
            chosen_id = principal.id
        elif not is_created and not may_assign and chosen_id is None:
            chosen_id = obj.manager_id  # an empty picker is not a request to drop the manager
        elif not is_created and not may_assign and chosen_id != obj.manager_id:
            raise UserError("更换客户经理请使用“客户转移”功能。", field="manager")
        if chosen_id is None:
            obj.manager = None
        elif chosen_id == principal.id or (not is_created and chosen_id == obj.manager_id):
            obj.manager = session.get(SysUser, chosen_id)
        else:  # naming someone else: the one rule for whom work may be given to
            obj.manager = check_assignee(session, principal, chosen_id, field="manager")
        obj.manager_id = chosen_id

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        counts = service.dependent_counts(session, obj.id)
        if counts:
            raise UserError(service.delete_blocker_message(obj, counts))

    # ----- saved queries -----------------------------------------------------------------------
    @route("/saved-queries", methods=["POST"], permission=("customer", "list"))
    async def save_query(self, request: Request) -> Response:
        form = await request.form()
        kept = saved_queries.kept_conditions(str(form.get("query", "")))
        try:
            await run_sync(pages.save_query, principal_of(request), str(form.get("name", "")).strip(), kept)
        except UserError as exc:
            return RedirectResponse(_list_url(request, f"{kept}&{urlencode({'error': exc.message})}"), 302)
        return RedirectResponse(_list_url(request, kept), status_code=302)

    @route("/saved-queries/{qid:int}/delete", methods=["POST"], permission=("customer", "list"))
    async def delete_query(self, request: Request) -> Response:
        try:
            await run_sync(pages.delete_query, principal_of(request), int(request.path_params["qid"]))
        except NotFound:  # another user's query, or none: as if it did not exist
            raise HTTPException(status_code=404, detail="该查询不存在或不属于您。") from None
        return RedirectResponse(_list_url(request), status_code=302)

    # ----- personal data: one masked value shown in full, audited (core/personal.py) ------------
    reveal_route = "admin:view-customer-reveal"

    @route("/reveal/{pk:int}", methods=["POST"], permission=SENSITIVE_PERMISSION, row=(Customer, "pk"))
    async def reveal(self, request: Request) -> Response:
        return await self.reveal_response(request)

    # ----- 360° page ---------------------------------------------------------------------------
    @route("/360/{pk:int}", permission=("customer", "view"), row=(Customer, "pk"))
    async def customer_360(self, request: Request) -> Response:
        principal = principal_of(request)
        data = await run_sync(load_360, principal, int(request.path_params["pk"]))
        if data is None:
            raise HTTPException(status_code=404, detail="客户不存在或您无权访问。")
        context = {"title": f"客户 360°:{data['customer'].name}", "csrf_token": _csrf(request),
                   "principal": principal, "message": request.query_params.get("message", ""),
                   "error": request.query_params.get("error", ""), **data}
        return await self.templates.TemplateResponse(request, "customers/360.html", context)

    # the route needs the customer to be within scope; each action then needs its own permission
    @route("/360/{pk:int}/{what:str}", methods=["POST"], permission=("customer", "view"), row=(Customer, "pk"))
    async def customer_360_action(self, request: Request) -> Response:
        form = await request.form()
        principal = principal_of(request)
        pk = int(request.path_params["pk"])
        what = str(request.path_params["what"])
        if what not in ACTIONS:
            raise HTTPException(status_code=404)
        resource, action, done = ACTIONS[what]
        if not principal.can(resource, action):
            raise HTTPException(status_code=403, detail="您没有执行此操作的权限。")
        values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        try:
            result = await run_sync(run_action, principal, pk, what, values)
        except NotFound:
            raise HTTPException(status_code=404, detail="客户不存在或您无权访问。") from None
        except UserError as exc:
            return RedirectResponse(url_360(request, pk, query={"error": exc.message}, fragment=what), 303)
        if what == "delete":
            return RedirectResponse(_list_url(request, urlencode({"message": result})), 303)
        return RedirectResponse(url_360(request, pk, query={"message": done}), 303)

    # ----- merge: pick two customers, see what the merge does, confirm --------------------------
    @route("/merge", permission=("customer", "merge"))
    async def merge(self, request: Request) -> Response:
        params = request.query_params
        return await self._merge_form(request, params.get("keep", ""), params.get("drop", ""))

    async def _merge_form(self, request: Request, keep: str, drop: str, *, error: str = "",
                          status: int = 200) -> Response:
        picked = await run_sync(pages.merge_picked, principal_of(request), keep[:64], drop[:64])
        context = {"title": "合并客户", "picked": picked, "error": error}
        return await self.templates.TemplateResponse(request, "customers/merge.html", context,
                                                     status_code=status)

    async def _merge_preview(self, request: Request, keep: str, drop: str, *, notice: str = "",
                             status: int = 200) -> Response:
        try:
            data = await run_sync(pages.merge_preview, principal_of(request), keep[:64], drop[:64])
        except UserError as exc:
            return await self._merge_form(request, keep, drop, error=exc.message, status=exc.status_code)
        context = {"title": "合并客户:确认", "csrf_token": _csrf(request), "notice": notice, **data}
        return await self.templates.TemplateResponse(request, "customers/merge_preview.html", context,
                                                     status_code=status)

    @route("/merge/preview", permission=("customer", "merge"))
    async def merge_preview(self, request: Request) -> Response:
        """What the merge would do (nothing is changed), with the button that confirms it."""
        params = request.query_params
        return await self._merge_preview(request, params.get("keep", ""), params.get("drop", ""))

    @route("/merge/confirm", methods=["POST"], permission=("customer", "merge"))
    async def merge_confirm(self, request: Request) -> Response:
        form = await request.form()
        values = {key: str(form.get(key, ""))[:2000]
                  for key in ("keep", "drop", "keep_version", "drop_version", "records")}
        try:
            keep_id, total = await run_sync(pages.merge_confirm, principal_of(request), values)
        except service.StaleMerge as exc:
            return await self._merge_preview(request, values["keep"], values["drop"], notice=exc.message,
                                             status=exc.status_code)
        except UserError as exc:
            return await self._merge_form(request, values["keep"], values["drop"], error=exc.message,
                                          status=exc.status_code)
        message = f"合并完成,转入 {total} 条关联记录。"
        return RedirectResponse(url_360(request, keep_id, query={"message": message}), status_code=303)

    @route("/merge/lookup", permission=("customer", "merge"))
    async def merge_lookup(self, request: Request) -> Response:
        """The merge page's customer pickers: customers the user may merge, by name or code."""
        term = request.query_params.get("term", "")[:64]
        return JSONResponse({"results": await run_sync(pages.merge_lookup, principal_of(request), term)})


def url_360(request: Request, customer_id: int, **extra: Any) -> str:
    """The path of a customer's 360° page (``query``/``fragment`` as in ``core.pages.url_path``)."""
    return url_path(request, "admin:view-customer-customer_360", pk=customer_id, **extra)


def _list_url(request: Request, query: str = "") -> str:
    return url_path(request, "admin:list", identity="customer", query=query)


VIEWS = [CustomerAdmin]
