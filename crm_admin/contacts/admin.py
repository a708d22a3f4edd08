"""Admin views of the contacts module."""

from __future__ import annotations

from crm_admin.contacts.models import Linkman
from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer


class LinkmanAdmin(CrmModelView, model=Linkman):
    name = "联系人"
    name_plural = "联系人"
    icon = "fa-solid fa-address-book"
    category = "客户管理"
    column_list = [Linkman.name, Linkman.customer, Linkman.position, Linkman.mobile, Linkman.birthday,
                   Linkman.is_primary]
    column_labels = {
        "customer": "客户", "name": "姓名", "gender": "性别", "position": "职位", "phone": "电话",
        "mobile": "手机", "email": "邮箱", "birthday": "生日", "is_primary": "主联系人", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_searchable_list = [Linkman.name, Linkman.mobile]
    form_excluded_columns = ["birthday_md", "created_at", "updated_at"]

    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}


VIEWS = [LinkmanAdmin]
