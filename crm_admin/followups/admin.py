"""Admin views of the follow-ups module."""

from __future__ import annotations

from crm_admin.contacts.models import Linkman
from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp


class FollowUpAdmin(CrmModelView, model=FollowUp):
    name = "联系记录"
    name_plural = "联系记录"
    icon = "fa-solid fa-phone"
    category = "客户管理"
    column_list = [FollowUp.customer, FollowUp.method, FollowUp.contacted_at, FollowUp.manager,
                   FollowUp.next_follow_up_at]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "manager": "客户经理", "method": "跟进方式",
        "content": "内容", "contacted_at": "联系时间", "next_follow_up_at": "下次跟进",
        "opportunity_id": "销售机会", "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_excluded_columns = ["created_at", "updated_at", "manager"]

    form_ajax_refs = {
        "customer": scoped_ref(Customer, ["name", "code"]),
        "linkman": scoped_ref(Linkman, ["name"]),
    }


VIEWS = [FollowUpAdmin]
