"""Admin views of the sales opportunities module."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.opportunities.models import SalesOpportunity


class OpportunityAdmin(CrmModelView, model=SalesOpportunity):
    name = "销售机会"
    name_plural = "销售机会"
    icon = "fa-solid fa-chart-line"
    category = "客户管理"
    column_list = [SalesOpportunity.title, SalesOpportunity.customer, SalesOpportunity.stage,
                   SalesOpportunity.amount, SalesOpportunity.probability,
                   SalesOpportunity.expected_close_date, SalesOpportunity.status]
    column_labels = {
        "customer": "客户", "title": "机会名称", "stage": "阶段", "amount": "预计成交金额",
        "probability": "成交概率(%)", "expected_close_date": "预计成交日期", "next_step": "下一步计划",
        "next_follow_up_at": "下次跟进", "manager": "客户经理", "status": "状态",
        "lost_reason": "丢单原因", "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_excluded_columns = ["version", "created_at", "updated_at", "manager"]

    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}


VIEWS = [OpportunityAdmin]
