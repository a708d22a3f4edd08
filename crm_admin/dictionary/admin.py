"""Admin views of the data dictionary."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView
from crm_admin.dictionary.models import DictItem, DictType


class DictTypeAdmin(CrmModelView, model=DictType):
    name = "字典类型"
    name_plural = "字典类型"
    icon = "fa-solid fa-book"
    category = "系统管理"
    column_list = [DictType.code, DictType.name, DictType.is_active]
    column_labels = {"code": "类型编码", "name": "类型名称", "remark": "备注", "is_active": "启用",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]


class DictItemAdmin(CrmModelView, model=DictItem):
    name = "字典项"
    name_plural = "字典项"
    icon = "fa-solid fa-list-ul"
    category = "系统管理"
    column_list = [DictItem.type_code, DictItem.value, DictItem.label, DictItem.sort, DictItem.is_active]
    column_labels = {"type_code": "类型编码", "value": "值", "label": "显示名称", "label_en": "英文名称",
                     "sort": "排序", "is_active": "启用", "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]


VIEWS = [DictTypeAdmin, DictItemAdmin]
