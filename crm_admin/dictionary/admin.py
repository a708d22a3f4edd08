"""Admin views of the data dictionary.

Every change bumps ``dict_version`` in the same transaction (every process reloads its drop-downs);
codes and values are immutable once stored in business rows, and an item in use cannot be deleted,
only disabled (old records keep showing its label).
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import Form

from crm_admin.core.errors import UserError
from crm_admin.core.formatting import code_cell
from crm_admin.core.i18n import tr
from crm_admin.core.pages import run_sync
from crm_admin.core.params import parse_id
from crm_admin.core.routes import route
from crm_admin.core.views import CrmModelView, principal_of
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.models import DictItem, DictType
from crm_admin.dictionary.service import (
    DictTypeSelectField,
    add_item,
    bump_dict_version,
    check_item,
    items_of,
    type_name,
    usage_count,
)

_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


class DictTypeAdmin(CrmModelView, model=DictType):
    name = "字典类型"
    icon = "fa-solid fa-book"
    category = "系统管理"
    column_list = [DictType.code, DictType.name, DictType.is_active]
    column_labels = {"code": "类型编码", "name": "类型名称", "remark": "备注", "is_active": "启用",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    column_searchable_list = [DictType.code, DictType.name]
    column_formatters = {"code": lambda m, a: code_cell(m.code), "name": lambda m, a: tr(m.name)}
    column_formatters_detail = column_formatters
    form_excluded_columns = ["created_at", "updated_at"]

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if not _CODE.fullmatch(obj.code or ""):
            raise UserError("类型编码只能包含字母、数字、下划线和连字符(1–32 位)。")
        if not (obj.name or "").strip() or len(obj.name) > 64:
            raise UserError("类型名称不能为空,且不超过 64 个字符。")
        if not is_created:
            old = session.execute(select(DictType.code).where(DictType.id == obj.id)).scalar()
            if old is not None and old != obj.code and session.execute(
                    select(DictItem.id).where(DictItem.type_code == old).limit(1)).first():
                raise UserError("该类型已有字典项,类型编码不能修改。")
        bump_dict_version(session.connection())

    details_template = "dictionary/type_details.html"

    async def details_context(self, request: Request) -> dict[str, Any]:
        """Below the type's details (SQLAdmin asks once the type was found): its items, and a form to add one."""
        context = await super().details_context(request)
        principal = principal_of(request)
        pk = parse_id(request.path_params.get("pk"))
        items = await run_sync(_items_of_type, pk) if pk else []
        return {**context, "dict_items": items, "can_add_items": principal.can("dict", "create"),
                "can_edit_items": principal.can("dict", "edit"),
                "item_added": _added_label(items, request.query_params.get("added")), "item_error": "",
                "item_form": {}}

    @route("/items/{pk:int}", methods=["POST"], permission=("dict", "create"), row=(DictType, "pk"))
    async def add_item(self, request: Request) -> Response:
        """A new item of this type, from the type's own page (the import told what was missing)."""
        pk = int(request.path_params["pk"])
        form = await request.form()
        values = {k: str(form.get(k, ""))[:64] for k in ("value", "label", "label_en")}
        try:
            added_id = await run_sync(_add_item, pk, values)
        except UserError as exc:
            request.path_params["identity"] = "dict-type"
            model = await self.get_object_for_details(request)
            context = {**await self.details_context(request), "item_error": exc.message, "item_form": values,
                       "model_view": self, "model": model, "title": self.name}
            return await self.templates.TemplateResponse(request, self.details_template, context, status_code=400)
        target = request.url_for("admin:details", identity="dict-type", pk=pk).include_query_params(added=added_id)
        return RedirectResponse(target, status_code=303)

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        if session.execute(select(DictItem.id).where(DictItem.type_code == obj.code).limit(1)).first():
            raise UserError(f"字典类型“{obj.name}”下还有字典项,不能删除;可以停用。")
        bump_dict_version(session.connection())


def _items_of_type(type_id: int) -> list[Any]:
    with session_factory()() as session:
        code = session.execute(select(DictType.code).where(DictType.id == type_id)).scalar()
        items = items_of(session, code) if code else []
        session.expunge_all()
        return items


def _add_item(type_id: int, values: dict[str, str]) -> int:
    with transaction() as session:
        code = session.execute(select(DictType.code).where(DictType.id == type_id)).scalar_one()
        item = add_item(session, code, value=values["value"], label=values["label"], label_en=values["label_en"])
        return item.id


def _added_label(items: list[Any], added: str | None) -> str:
    """The label of the item just added (its id in the URL), or nothing."""
    added_id = parse_id(added)
    return next((item.label for item in items if item.id == added_id), "")


class DictItemAdmin(CrmModelView, model=DictItem):
    name = "字典项"
    icon = "fa-solid fa-list-ul"
    category = "系统管理"
    column_list = [DictItem.type_code, DictItem.value, DictItem.label, DictItem.sort, DictItem.is_active]
    column_labels = {"type_code": "字典类型", "value": "值", "label": "显示名称", "label_en": "英文名称",
                     "sort": "排序", "is_active": "启用", "created_at": "创建时间", "updated_at": "更新时间"}
    # the Chinese name is what this screen edits: on an English screen it is marked as Chinese text
    column_formatters = {"type_code": lambda m, a: type_name(m.type_code), "value": lambda m, a: code_cell(m.value),
                         "label": lambda m, a: Markup('<span lang="zh-CN">{}</span>').format(m.label or "")}
    column_formatters_detail = column_formatters
    column_searchable_list = [DictItem.type_code, DictItem.label, DictItem.value]
    column_sortable_list = [DictItem.type_code, DictItem.sort]
    column_default_sort = [(DictItem.type_code, False), (DictItem.sort, False)]
    form_excluded_columns = ["created_at", "updated_at"]

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        """SQLAdmin leaves foreign keys out of a form: the type is chosen first, by name."""
        form = await super().scaffold_form(rules)
        field = DictTypeSelectField("字典类型", render_kw={"class": "form-control form-select"})
        field.creation_counter = -1  # type: ignore[attr-defined]  # first on the form

        class ItemForm(form):  # type: ignore[misc, valid-type]
            type_code = field

        return ItemForm

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        check_item(session, obj, is_created=is_created)

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        used = usage_count(session.connection(), obj.type_code, obj.value)
        if used:
            raise UserError(f"字典项“{obj.label}”已被 {used} 条业务数据使用,不能删除;请改为停用。")
        bump_dict_version(session.connection())


VIEWS = [DictTypeAdmin, DictItemAdmin]
