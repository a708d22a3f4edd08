"""Admin views of the orders (transaction history) module."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.orders.models import CustomerOrder, OrderItem


class OrderAdmin(CrmModelView, model=CustomerOrder):
    name = "订单"
    name_plural = "交易历史"
    icon = "fa-solid fa-file-invoice"
    category = "客户管理"
    column_list = [CustomerOrder.order_no, CustomerOrder.customer, CustomerOrder.order_date,
                   CustomerOrder.amount, CustomerOrder.status]
    column_labels = {
        "order_no": "订单号", "customer": "客户", "order_date": "下单日期", "amount": "金额",
        "status": "状态", "manager": "客户经理", "remark": "备注", "items": "明细",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_excluded_columns = ["created_at", "updated_at", "items", "amount", "manager"]

    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}


class OrderItemAdmin(CrmModelView, model=OrderItem):
    name = "订单明细"
    name_plural = "订单明细"
    icon = "fa-solid fa-list"
    category = "客户管理"
    column_list = [OrderItem.order, OrderItem.product, OrderItem.quantity, OrderItem.unit_price]
    column_labels = {"order": "订单", "product": "产品", "quantity": "数量", "unit_price": "单价",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]

    form_ajax_refs = {
        "order": scoped_ref(CustomerOrder, ["order_no"]),
        "product": {"fields": ["name", "code"]},
    }


VIEWS = [OrderAdmin, OrderItemAdmin]
