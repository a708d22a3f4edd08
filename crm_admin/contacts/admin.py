"""Admin views of the contacts module."""

from __future__ import annotations

from typing import Any

from sqladmin.filters import StaticValuesFilter
from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import SelectField

from crm_admin.contacts import subject
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import (
    GENDERS,
    keep_single_primary,
    upcoming_birthday_keys,
    upcoming_birthday_order,
    validate_linkman,
)
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.export import attachment, format_local
from crm_admin.core.formatting import local_today
from crm_admin.core.i18n import blank_choice
from crm_admin.core.masking import SENSITIVE_PERMISSION
from crm_admin.core.pages import run_sync, url_path
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmModelView, principal_of, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.db import session_factory, transaction


def gender_choices() -> list[tuple[str, str]]:
    return [blank_choice(), *GENDERS.items()]


class UpcomingBirthdays(StaticValuesFilter):
    """List filter 生日: contacts whose birthday falls in the next 7 or 30 days, soonest first."""

    CHOICES = {"7": "未来 7 天内过生日", "30": "未来 30 天内过生日"}

    def __init__(self) -> None:
        super().__init__(Linkman.birthday_md, list(self.CHOICES.items()), title="生日",
                         parameter_name="birthday_within")

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        return [("__all", "全部"), *self.CHOICES.items()]

    async def get_filtered_query(self, query: Select[Any], value: Any, model: Any) -> Select[Any]:
        if value not in self.CHOICES:
            return query
        today = local_today()
        return (query.where(Linkman.birthday_md.in_(upcoming_birthday_keys(today, int(value))))
                .order_by(None).order_by(upcoming_birthday_order(today), Linkman.id))


class LinkmanAdmin(CrmModelView, model=Linkman):
    name = "联系人"
    icon = "fa-solid fa-address-book"
    category = "客户管理"
    column_list = [Linkman.name, Linkman.customer, Linkman.position, Linkman.mobile, Linkman.phone,
                   Linkman.email, Linkman.birthday, Linkman.is_primary]
    column_export_list = ["name", "customer", "gender", "position", "mobile", "phone", "email", "birthday",
                          "is_primary", "remark", "created_at"]
    column_labels = {
        "customer": "客户", "name": "姓名", "gender": "性别", "position": "职位", "phone": "电话",
        "mobile": "手机", "email": "邮箱", "birthday": "生日", "is_primary": "主联系人", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_choice_labels = {"gender": GENDERS}
    column_formatters = {Linkman.customer: lambda m, a: m.customer.name if m.customer else ""}
    column_formatters_detail = {
        Linkman.gender: lambda m, a: GENDERS.get(m.gender or "", ""),
        Linkman.created_at: lambda m, a: format_local(m.created_at),
        Linkman.updated_at: lambda m, a: format_local(m.updated_at),
    }
    column_searchable_list = [Linkman.name, Linkman.mobile]
    column_sortable_list = [Linkman.name, Linkman.birthday, Linkman.created_at]
    column_filters = [UpcomingBirthdays()]
    column_details_exclude_list = ["birthday_md"]
    form_columns = ["customer", "name", "gender", "position", "mobile", "phone", "email", "birthday",
                    "is_primary", "remark"]
    form_overrides = {"gender": SelectField}
    form_args = {"gender": {"choices": gender_choices}}
    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}

    # ----- personal data: one masked value shown in full, audited (core/personal.py) ------------
    reveal_route = "admin:view-linkman-reveal"

    @route("/reveal/{pk:int}", methods=["POST"], permission=SENSITIVE_PERMISSION, row=(Linkman, "pk"))
    async def reveal(self, request: Request) -> Response:
        return await self.reveal_response(request)

    # ----- requests of a data subject: export what is held, erase it (contacts/subject.py) -------
    def detail_links(self, request: Request, obj: Any) -> list[tuple[str, str]]:
        principal = principal_of(request)
        if principal.can(subject.RESOURCE, "export") or principal.can(subject.RESOURCE, "delete"):
            return [(str(request.url_for("admin:view-linkman-subject_request", pk=obj.id)), "个人信息主体请求")]
        return []

    @route("/subject/{pk:int}", permission=((subject.RESOURCE, "export"), (subject.RESOURCE, "delete")),
           row=(Linkman, "pk"))
    async def subject_request(self, request: Request) -> Response:
        return await self._subject_page(request, int(request.path_params["pk"]))

    async def _subject_page(self, request: Request, pk: int, *, error: str = "", message: str = "",
                            status: int = 200) -> Response:
        principal = principal_of(request)
        action = "export" if principal.can(subject.RESOURCE, "export") else "delete"
        try:
            held = await run_sync(_holding, principal, pk, action)
        except NotFound:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。") from None
        context = {
            "title": "个人信息主体请求", "pk": pk, "held": held, "summary": list(subject.summary_rows(held)),
            "can_export": principal.can(subject.RESOURCE, "export"),
            "can_erase": principal.can(subject.RESOURCE, "delete") and not held.anonymised,
            "error": error, "message": message or request.query_params.get("message", "")[:200],
        }
        return await self.templates.TemplateResponse(request, "contacts/subject.html", context, status_code=status)

    @route("/subject/{pk:int}/export", methods=["POST"], permission=(subject.RESOURCE, "export"),
           row=(Linkman, "pk"))
    async def subject_export(self, request: Request) -> Response:
        form = await request.form()
        pk = int(request.path_params["pk"])
        fmt = str(form.get("fmt", ""))[:8]
        try:
            content, media, filename = await run_sync(_export, principal_of(request), pk, fmt)
        except NotFound:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。") from None
        except UserError as exc:
            return await self._subject_page(request, pk, error=exc.message, status=exc.status_code)
        return Response(content, media_type=media,
                        headers={"Content-Disposition": attachment(filename), "Cache-Control": "no-store"})

    @route("/subject/{pk:int}/erase", methods=["POST"], permission=(subject.RESOURCE, "delete"),
           row=(Linkman, "pk"))
    async def subject_erase(self, request: Request) -> Response:
        form = await request.form()
        pk = int(request.path_params["pk"])
        if str(form.get("understood", "")) != "1":
            return await self._subject_page(request, pk, error="请勾选“我已了解匿名化不可恢复”后再提交。", status=400)
        try:
            await run_sync(_erase, principal_of(request), pk, str(form.get("confirm_name", ""))[:128])
        except NotFound:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。") from None
        except UserError as exc:
            return await self._subject_page(request, pk, error=exc.message, status=exc.status_code)
        url = url_path(request, "admin:view-linkman-subject_request", pk=pk, query={"message": "联系人的个人信息已匿名化。"})
        return RedirectResponse(url, status_code=303)

    def sort_query(self, stmt: Select[Any], request: Request) -> Select[Any]:
        """By birthday means by month and day (when to wish them well), not by year of birth."""
        if request.query_params.get("sortBy") == "birthday":
            descending = request.query_params.get("sort") == "desc"
            md = Linkman.birthday_md.desc() if descending else Linkman.birthday_md.asc()
            return stmt.order_by(Linkman.birthday_md.is_(None), md, Linkman.id)
        return super().sort_query(stmt, request)

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if obj.customer_id is None:
            raise UserError("请选择所属客户。", field="customer")
        validate_linkman(obj)
        keep_single_primary(session, obj)


def _holding(principal: Principal, pk: int, action: str) -> subject.Holding:
    with session_factory()() as session:
        return subject.holding(session, principal, pk, action=action)


def _export(principal: Principal, pk: int, fmt: str) -> tuple[bytes, str, str]:
    with transaction() as session:
        return subject.export_subject(session, principal, pk, fmt)


def _erase(principal: Principal, pk: int, confirm_name: str) -> subject.Erasure:
    with transaction() as session:
        return subject.erase_subject(session, principal, pk, confirm_name)


VIEWS = [LinkmanAdmin]
