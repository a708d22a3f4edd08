"""Admin views of the orders (transaction history): the amount is computed from the items."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from wtforms import SelectField
from wtforms.validators import Optional

from crm_admin.core.errors import UserError
from crm_admin.core.views import CrmModelView, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.orders import service
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.products.models import Product


def _active_products(_request: Request, _term: str) -> list[Any]:
    return [Product.is_active.is_(True)]


class OrderAdmin(CrmModelView, model=CustomerOrder):
    name = "订单"
    name_plural = "交易历史"
    icon = "fa-solid fa-file-invoice"
    category = "客户管理"
    column_list = [CustomerOrder.order_no, CustomerOrder.customer, CustomerOrder.order_date,
                   CustomerOrder.amount, CustomerOrder.status, CustomerOrder.manager]
    column_export_list = ["order_no", "customer", "order_date", "amount", "status", "manager", "remark"]
    column_details_list = ["order_no", "customer", "order_date", "amount", "status", "manager", "remark",
                           "items", "created_at"]
    column_labels = {
        "order_no": "订单号", "customer": "客户", "order_date": "下单日期", "amount": "金额",
        "status": "状态", "manager": "客户经理", "remark": "备注", "items": "明细",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_choice_labels = {"status": service.STATUS_LABELS}
    column_formatters = {
        CustomerOrder.customer: lambda m, a: m.customer.name if m.customer else "",
        CustomerOrder.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        CustomerOrder.amount: lambda m, a: f"{m.amount:,.2f}",
    }
    column_formatters_detail = {
        CustomerOrder.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        CustomerOrder.items: lambda m, a: "; ".join(
            f"{i.product_id} × {i.quantity} @ {i.unit_price}" for i in (m.items or [])),
    }
    column_searchable_list = [CustomerOrder.order_no]
    column_sortable_list = [CustomerOrder.order_date, CustomerOrder.amount]
    column_default_sort = [(CustomerOrder.order_date, True)]
    form_columns = ["customer", "order_date", "status", "remark"]
    form_overrides = {"status": SelectField}
    form_args = {"status": {"choices": service.STATUS_LABELS.choices, "default": "confirmed"}}
    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if obj.customer_id is None:
            raise UserError("请选择客户。", field="customer")
        service.validate_order(obj)
        if is_created:
            obj.order_no = service.next_order_no(session)
            obj.amount = Decimal("0.00")  # computed from the items as they are added
            obj.manager_id = session.get(Customer, obj.customer_id).manager_id  # type: ignore[union-attr]
        service.after_order_saved(session, obj)


class OrderItemAdmin(CrmModelView, model=OrderItem):
    name = "订单明细"
    name_plural = "订单明细"
    icon = "fa-solid fa-list"
    category = "客户管理"
    column_list = [OrderItem.order, OrderItem.product, OrderItem.quantity, OrderItem.unit_price]
    column_export_list = ["order", "product", "quantity", "unit_price"]
    column_labels = {"order": "订单", "product": "产品", "quantity": "数量", "unit_price": "单价",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    form_columns = ["order", "product", "quantity", "unit_price"]
    form_args = {"unit_price": {"validators": [Optional()], "description": "留空则按产品标价"}}
    form_ajax_refs = {
        "order": scoped_ref(CustomerOrder, ["order_no"]),
        "product": {"fields": ["name", "code"], "where": _active_products},
    }

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if obj.order_id is None:
            raise UserError("请选择订单。", field="order")
        service.validate_item(session, obj)
        if is_created:
            session.add(obj)
        session.flush()
        service.recompute_amount(session, obj.order_id)

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        service.recompute_amount(session, obj.order_id, excluding_item=obj.id)


VIEWS = [OrderAdmin, OrderItemAdmin]
