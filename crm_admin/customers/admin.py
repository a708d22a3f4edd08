"""Admin views of the customers module: the customer list with its combined query, the 360° page,
saved queries, merge and the explicit cascade delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio
from markupsafe import Markup
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import get_history
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import HiddenField, SelectField

from crm_admin.accounts.models import SysUser
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.export import format_local
from crm_admin.core.routes import route
from crm_admin.core.scope import check_assignee, depts_in_scope, scoped, users_in_scope
from crm_admin.core.views import CrmModelView, assignable_ref, principal_of
from crm_admin.customers import service
from crm_admin.customers.models import STATUS_LABELS, Customer, SavedQuery
from crm_admin.customers.query import FILTER_PARAMS, CustomerQuery, like_prefix
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import DictSelectField, choices
from crm_admin.transfers.service import reassign_in_form

STATUS_CHOICES = [(k, v) for k, v in STATUS_LABELS.items()]
SORTS = [("", "默认排序"), ("name:asc", "按名称"), ("created_at:desc", "按创建时间(新→旧)"),
         ("created_at:asc", "按创建时间(旧→新)"), ("last_contact_at:desc", "按最近联系(近→远)"),
         ("last_contact_at:asc", "按最近联系(远→近)")]


def _csrf(request: Request) -> str:
    return str(request.session.get("csrf", ""))


def _name_link(model: Customer, _attr: Any) -> Markup:
    # Markup.format escapes the customer's name
    return Markup('<a href="/admin/customer/360/{}">{}</a>').format(model.id, model.name)


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
    column_list = [
        Customer.code, Customer.name, Customer.industry, Customer.level, Customer.status,
        Customer.region, Customer.manager, Customer.last_contact_at, Customer.created_at,
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
    }
    column_dict_types = {"industry": "industry", "source": "customer_source", "level": "customer_level"}
    column_choice_labels = {"status": STATUS_LABELS}
    column_formatters = {
        Customer.name: _name_link,
        Customer.status: lambda m, a: STATUS_LABELS.get(m.status, m.status),
        Customer.industry: _dict_label("industry"),
        Customer.level: _dict_label("customer_level"),
        Customer.last_contact_at: lambda m, a: format_local(m.last_contact_at),
        Customer.created_at: lambda m, a: format_local(m.created_at),
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
        "status": {"choices": STATUS_CHOICES, "default": "potential"},
        "credit_code": {"description": "18 位统一社会信用代码,系统会校验校验位"},
    }
    form_ajax_refs = {"manager": assignable_ref(["real_name", "username"], order_by="username")}
    stale_message = "保存失败:该客户已被他人修改,请刷新页面查看最新内容后再修改(您填写的内容仍保留在下方)。"

    # ----- the combined query --------------------------------------------------------------
    def list_query(self, request: Request) -> Select[Any]:
        stmt = super().list_query(request)
        query = CustomerQuery.from_params(request.query_params)
        return query.apply(stmt)

    def search_query(self, stmt: Select[Any], term: str) -> Select[Any]:
        # prefix match (index-friendly) instead of SQLAdmin's '%term%'
        term = term.strip()[:64]
        if not term:
            return stmt
        from sqlalchemy import or_

        return stmt.where(or_(
            Customer.name.like(like_prefix(term), escape="\\"),
            Customer.code.like(like_prefix(term.upper()), escape="\\"),
            Customer.credit_code.like(like_prefix(term.upper()), escape="\\"),
        ))

    def search_placeholder(self) -> str:
        return "名称/编号/信用代码开头"

    async def list_context(self, request: Request) -> dict[str, Any]:
        context = await super().list_context(request)
        panel = await anyio.to_thread.run_sync(_filter_panel, request)
        context.update(panel)
        return context

    # ----- writes ------------------------------------------------------------------------------
    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        previous = {}
        watched = False
        if not is_created:
            for key in ("industry", "source", "level", "name", "phone", "credit_code"):
                hist = get_history(obj, key)
                previous[key] = hist.deleted[0] if hist.deleted else getattr(obj, key)
                watched = watched or bool(hist.added and hist.deleted and hist.added[0] != hist.deleted[0])
        self._settle_manager(session, obj, is_created, request)
        if not is_created:
            self._hand_over_if_reassigned(session, obj, request)
        service.validate_customer(obj, previous=previous)
        if is_created:
            obj.code = service.next_customer_codes(session)[0]
        if is_created or watched:
            service.check_duplicates(session, obj, principal_of(request))

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

    @staticmethod
    def _hand_over_if_reassigned(session: Session, obj: Any, request: Request) -> None:
        """A new manager chosen in the form (only users with ``assign`` get here): the open work follows
        and the change is recorded as a transfer, as on the transfer page."""
        hist = get_history(obj, "manager_id")
        if not hist.added:
            return
        before = hist.deleted[0] if hist.deleted else None
        after = int(obj.manager_id) if obj.manager_id not in (None, "") else None
        if after == before:
            return
        user = session.get(SysUser, after) if after is not None else None
        if after is not None and user is None:
            raise UserError("所选的客户经理不存在。", field="manager")
        reassign_in_form(session, principal_of(request), obj, before, user)

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        counts = service.dependent_counts(session, obj.id)
        if counts:
            raise UserError(service.delete_blocker_message(obj, counts))

    # ----- saved queries -----------------------------------------------------------------------
    @route("/saved-queries", methods=["POST"], permission=("customer", "list"))
    async def save_query(self, request: Request) -> Response:
        form = await request.form()
        principal = principal_of(request)
        name = str(form.get("name", "")).strip()
        query = str(form.get("query", ""))
        kept = urlencode([(k, v) for k, v in QueryParams(query).multi_items()
                          if k in (*FILTER_PARAMS, "sortBy", "sort", "search") and v])
        try:
            await anyio.to_thread.run_sync(_save_query_sync, principal.id, name, kept)
        except UserError as exc:
            return RedirectResponse(f"/admin/customer/list?{kept}&{urlencode({'error': exc.message})}", 302)
        return RedirectResponse(f"/admin/customer/list?{kept}", status_code=302)

    @route("/saved-queries/{qid:int}/delete", methods=["POST"], permission=("customer", "list"))
    async def delete_query(self, request: Request) -> Response:
        principal = principal_of(request)
        qid = int(request.path_params["qid"])
        try:
            await anyio.to_thread.run_sync(_delete_query_sync, principal.id, qid)
        except NotFound:  # another user's query, or none: as if it did not exist
            raise HTTPException(status_code=404, detail="该查询不存在或不属于您。") from None
        return RedirectResponse("/admin/customer/list", status_code=302)

    # ----- 360° page ---------------------------------------------------------------------------
    @route("/360/{pk:int}", permission=("customer", "view"), row=(Customer, "pk"))
    async def customer_360(self, request: Request) -> Response:
        principal = principal_of(request)
        from crm_admin.customers.page360 import load_360

        data = await anyio.to_thread.run_sync(load_360, principal, int(request.path_params["pk"]))
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
        from crm_admin.customers.page360 import ACTIONS, run_action

        if what not in ACTIONS:
            raise HTTPException(status_code=404)
        resource, action, done = ACTIONS[what]
        if not principal.can(resource, action):
            raise HTTPException(status_code=403, detail="您没有执行此操作的权限。")
        values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        try:
            result = await anyio.to_thread.run_sync(run_action, principal, pk, what, values)
        except NotFound:
            raise HTTPException(status_code=404, detail="客户不存在或您无权访问。") from None
        except UserError as exc:
            return RedirectResponse(f"/admin/customer/360/{pk}?{urlencode({'error': exc.message})}#{what}", 303)
        if what == "delete":
            return RedirectResponse(f"/admin/customer/list?{urlencode({'message': result})}", 303)
        return RedirectResponse(f"/admin/customer/360/{pk}?{urlencode({'message': done})}", 303)

    # ----- merge (admins) ----------------------------------------------------------------------
    @route("/merge", methods=["GET", "POST"], permission=("customer", "merge"))
    async def merge(self, request: Request) -> Response:
        principal = principal_of(request)
        context: dict[str, Any] = {"title": "合并客户", "csrf_token": _csrf(request),
                                   "keep": request.query_params.get("keep", ""),
                                   "drop": request.query_params.get("drop", "")}
        status = 200
        if request.method == "POST":
            form = await request.form()
            context["keep"], context["drop"] = str(form.get("keep", "")), str(form.get("drop", ""))
            try:
                keep_id, drop_id = _customer_ref(context["keep"]), _customer_ref(context["drop"])
                moved = await anyio.to_thread.run_sync(_merge_sync, principal, keep_id, drop_id)
            except UserError as exc:
                context["error"] = exc.message
                status = exc.status_code
            else:
                total = sum(moved.values())
                return RedirectResponse(
                    f"/admin/customer/360/{keep_id}?{urlencode({'message': f'合并完成,转入 {total} 条关联记录。'})}",
                    status_code=303,
                )
        return await self.templates.TemplateResponse(request, "customers/merge.html", context,
                                                     status_code=status)


def _customer_ref(text: str) -> int:
    """A customer id or code typed into the merge form."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    with session_factory()() as session:
        found = session.execute(select(Customer.id).where(Customer.code == text.upper())).scalar()
    if found is None:
        raise UserError(f"找不到客户“{text}”(请输入客户编号或 ID)。")
    return int(found)


def _merge_sync(principal: Any, keep_id: int, drop_id: int) -> dict[str, int]:
    with transaction() as session:
        return service.merge_customers(session, principal, keep_id=keep_id, drop_id=drop_id)


def _save_query_sync(user_id: int, name: str, query: str) -> None:
    if not name:
        raise UserError("请为查询起一个名字。")
    if len(name) > 64:
        raise UserError("查询名称不能超过 64 个字符。")
    with transaction() as session:
        existing = session.execute(
            select(SavedQuery).where(SavedQuery.user_id == user_id, SavedQuery.resource == "customer",
                                     SavedQuery.name == name)
        ).scalar_one_or_none()
        if existing is not None:
            existing.query_string = query
        else:
            count = len(session.execute(
                select(SavedQuery.id).where(SavedQuery.user_id == user_id)).all())
            if count >= 50:
                raise UserError("每人最多保存 50 个查询,请先删除不用的查询。")
            session.add(SavedQuery(user_id=user_id, resource="customer", name=name, query_string=query))


def _delete_query_sync(user_id: int, qid: int) -> None:
    with transaction() as session:
        row = session.execute(
            select(SavedQuery).where(SavedQuery.id == qid, SavedQuery.user_id == user_id)
        ).scalar_one_or_none()
        if row is None:
            raise NotFound()
        session.delete(row)


def _filter_panel(request: Request) -> dict[str, Any]:
    """Options of the filter panel: dictionaries, the managers and departments the user may pick."""
    principal = principal_of(request)
    query = CustomerQuery.from_params(request.query_params)
    with session_factory()() as session:
        users = users_in_scope(session, principal, resource="customer", action="list")
        depts = depts_in_scope(session, principal, resource="customer", action="list")
        saved = session.execute(
            select(SavedQuery).where(SavedQuery.user_id == principal.id, SavedQuery.resource == "customer")
            .order_by(SavedQuery.name)
        ).scalars().all()
    current_sort = ""
    if request.query_params.get("sortBy"):
        current_sort = f"{request.query_params.get('sortBy')}:{request.query_params.get('sort', 'asc')}"
    return {
        "cq": query,
        "cq_params": {k: request.query_params.get(k, "") for k in FILTER_PARAMS},
        "cq_industries": choices("industry"),
        "cq_sources": choices("customer_source"),
        "cq_levels": choices("customer_level"),
        "cq_statuses": [("", "— 请选择 —"), *STATUS_CHOICES],
        "cq_managers": [(u.id, u.real_name or u.username) for u in users],
        "cq_depts": depts,
        "cq_saved": [(s.id, s.name, s.query_string) for s in saved],
        "cq_sorts": SORTS,
        "cq_sort": current_sort,
        "cq_query_string": urlencode([(k, v) for k, v in request.query_params.multi_items()
                                      if k not in ("page", "error", "message")]),
        "csrf_token": _csrf(request),
        "message": request.query_params.get("message", ""),
        "can_merge": principal.can("customer", "merge"),
        "cq_can_import": principal.can("customer", "import"),
    }


def scoped_customer(session: Session, principal: Any, customer_id: int) -> Customer | None:
    return session.execute(
        scoped(select(Customer).where(Customer.id == customer_id), Customer, principal)
    ).scalar_one_or_none()


VIEWS = [CustomerAdmin]
