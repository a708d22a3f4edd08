"""Admin views of the customer transfer module."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView
from crm_admin.transfers.models import CustomerTransfer


class CustomerTransferAdmin(CrmModelView, model=CustomerTransfer):
    name = "转移记录"
    name_plural = "客户转移记录"
    icon = "fa-solid fa-right-left"
    category = "客户管理"
    can_create = False
    can_edit = False
    can_delete = False
    column_list = [CustomerTransfer.customer, CustomerTransfer.old_manager, CustomerTransfer.new_manager,
                   CustomerTransfer.reason, CustomerTransfer.transferred_at, CustomerTransfer.operator]
    column_labels = {
        "customer": "客户", "old_manager": "原客户经理", "new_manager": "新客户经理", "reason": "转移原因",
        "transferred_at": "转移时间", "operator": "操作人", "created_at": "创建时间", "updated_at": "更新时间",
    }


VIEWS = [CustomerTransferAdmin]
