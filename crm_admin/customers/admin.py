"""Admin views of the customers module."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView
from crm_admin.customers.models import Customer


class CustomerAdmin(CrmModelView, model=Customer):
    name = "客户"
    name_plural = "客户信息"
    icon = "fa-solid fa-building"
    category = "客户管理"
    column_list = [
        Customer.code, Customer.name, Customer.industry, Customer.level, Customer.status,
        Customer.region, Customer.manager, Customer.last_contact_at,
    ]
    column_labels = {
        "code": "客户编号", "name": "客户名称", "credit_code": "统一社会信用代码", "industry": "行业",
        "source": "客户来源", "level": "客户等级", "status": "状态", "region": "地区", "address": "地址",
        "phone": "电话", "email": "邮箱", "website": "网站", "manager": "客户经理",
        "last_contact_at": "最近联系", "last_order_at": "最近下单", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_searchable_list = [Customer.name, Customer.code]
    column_sortable_list = [Customer.name, Customer.created_at, Customer.last_contact_at]
    form_excluded_columns = [
        "name_key", "version", "created_at", "updated_at", "last_contact_at", "last_order_at",
    ]
    column_details_exclude_list = ["name_key"]


VIEWS = [CustomerAdmin]
