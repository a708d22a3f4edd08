"""Admin views of the data dictionary.

Every change bumps ``dict_version`` in the same transaction (every process reloads its drop-downs);
codes and values are immutable once stored in business rows, and an item in use cannot be deleted,
only disabled (old records keep showing its label).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from crm_admin.core.errors import UserError
from crm_admin.core.views import CrmModelView
from crm_admin.dictionary.models import DictItem, DictType
from crm_admin.dictionary.service import bump_dict_version, usage_count

_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
_VALUE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


class DictTypeAdmin(CrmModelView, model=DictType):
    name = "字典类型"
    name_plural = "字典类型"
    icon = "fa-solid fa-book"
    category = "系统管理"
    column_list = [DictType.code, DictType.name, DictType.is_active]
    column_labels = {"code": "类型编码", "name": "类型名称", "remark": "备注", "is_active": "启用",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    column_searchable_list = [DictType.code, DictType.name]
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

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        if session.execute(select(DictItem.id).where(DictItem.type_code == obj.code).limit(1)).first():
            raise UserError(f"字典类型“{obj.name}”下还有字典项,不能删除;可以停用。")
        bump_dict_version(session.connection())


class DictItemAdmin(CrmModelView, model=DictItem):
    name = "字典项"
    name_plural = "字典项"
    icon = "fa-solid fa-list-ul"
    category = "系统管理"
    column_list = [DictItem.type_code, DictItem.value, DictItem.label, DictItem.sort, DictItem.is_active]
    column_labels = {"type_code": "类型编码", "value": "值", "label": "显示名称", "label_en": "英文名称",
                     "sort": "排序", "is_active": "启用", "created_at": "创建时间", "updated_at": "更新时间"}
    column_searchable_list = [DictItem.type_code, DictItem.label, DictItem.value]
    column_sortable_list = [DictItem.type_code, DictItem.sort]
    column_default_sort = [(DictItem.type_code, False), (DictItem.sort, False)]
    form_excluded_columns = ["created_at", "updated_at"]

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if not _VALUE.fullmatch(obj.value or ""):
            raise UserError("值只能包含字母、数字、下划线、连字符和点(1–64 位)。")
        if not (obj.label or "").strip() or len(obj.label) > 64:
            raise UserError("显示名称不能为空,且不超过 64 个字符。")
        if session.execute(select(DictType.id).where(DictType.code == obj.type_code)).first() is None:
            raise UserError("字典类型不存在。")
        if not is_created:
            old = session.execute(
                select(DictItem.type_code, DictItem.value).where(DictItem.id == obj.id)).first()
            if old is not None and (old[0], old[1]) != (obj.type_code, obj.value) and usage_count(
                    session.connection(), old[0], old[1]):
                raise UserError("该字典项已被业务数据使用,类型和值不能修改(可以修改显示名称或停用)。")
        bump_dict_version(session.connection())

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        used = usage_count(session.connection(), obj.type_code, obj.value)
        if used:
            raise UserError(f"字典项“{obj.label}”已被 {used} 条业务数据使用,不能删除;请改为停用。")
        bump_dict_version(session.connection())


VIEWS = [DictTypeAdmin, DictItemAdmin]
