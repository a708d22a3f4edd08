"""Admin views of the customer care module."""

from __future__ import annotations

from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer


class CustomerCareAdmin(CrmModelView, model=CustomerCare):
    name = "关怀记录"
    name_plural = "客户关怀"
    icon = "fa-solid fa-heart"
    category = "客户关怀"
    column_list = [CustomerCare.customer, CustomerCare.linkman, CustomerCare.care_type,
                   CustomerCare.due_date, CustomerCare.status, CustomerCare.origin, CustomerCare.manager]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "care_type": "关怀类型", "care_time": "关怀时间",
        "due_date": "计划日期", "detail": "关怀内容", "feedback": "客户反馈", "status": "状态",
        "manager": "客户经理", "origin": "来源", "plan_id": "关怀计划", "task_key": "任务键",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_excluded_columns = ["created_at", "updated_at", "task_key", "plan_id", "manager", "origin"]

    form_ajax_refs = {
        "customer": scoped_ref(Customer, ["name", "code"]),
        "linkman": scoped_ref(Linkman, ["name"]),
    }


class CarePlanAdmin(CrmModelView, model=CarePlan):
    name = "关怀计划"
    name_plural = "关怀计划"
    icon = "fa-solid fa-calendar-check"
    category = "客户关怀"
    column_list = [CarePlan.customer, CarePlan.linkman, CarePlan.care_type, CarePlan.interval_days,
                   CarePlan.next_date, CarePlan.is_active]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "care_type": "关怀类型", "interval_days": "间隔天数",
        "next_date": "下次日期", "manager_id": "客户经理", "is_active": "启用", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_excluded_columns = ["created_at", "updated_at", "manager_id"]

    form_ajax_refs = {
        "customer": scoped_ref(Customer, ["name", "code"]),
        "linkman": scoped_ref(Linkman, ["name"]),
    }


VIEWS = [CustomerCareAdmin, CarePlanAdmin]
