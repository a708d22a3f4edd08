"""The collections of ``/api/v1``: one declaration each (model, permission resource, fields shown and
written, list filters). Routes, schemas and the route test are made from these."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, true

from crm_admin.api.rows import Spec
from crm_admin.care.models import CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.customers.models import Customer
from crm_admin.customers.query import CustomerQuery
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.orders.models import CustomerOrder
from crm_admin.products.models import Product
from crm_admin.transfers.models import CustomerTransfer


def _customer_query(name: str, doc: str):  # type: ignore[no-untyped-def]
    """A filter of the customer list page (``customers.query.CustomerQuery``), by its parameter."""

    def build(value: str, _principal: Principal) -> ColumnElement[bool] | None:
        query = CustomerQuery.from_params({name: value})
        conditions = query.conditions()
        return and_(true(), *conditions) if conditions else None

    build.__doc__ = doc
    return build


def _equals(column, doc: str, *, as_id: bool = False):  # type: ignore[no-untyped-def]
    def build(value: str, _principal: Principal) -> ColumnElement[bool] | None:
        if as_id:
            pk = parse_id(value)
            return column == pk if pk is not None else column == -1
        return column == value

    build.__doc__ = doc
    return build


def _of_customer(model):  # type: ignore[no-untyped-def]
    return _equals(model.customer_id, "客户编号(id)", as_id=True)


CUSTOMERS = Spec(
    path="customers", model=Customer, resource="customer", title="客户", kind="customer",
    fields=("id", "code", "name", "credit_code", "industry", "source", "level", "status", "region", "address",
            "phone", "email", "website", "manager_id", "last_contact_at", "last_order_at", "remark", "pool_id",
            "version", "created_at", "updated_at"),
    writable=("name", "credit_code", "industry", "source", "level", "status", "region", "address", "phone",
              "email", "website", "manager_id", "remark"),
    required=("name",),
    filters={
        # the parameters of the customer list page's combined query, under the API's names
        "keyword": _customer_query("q", "关键字:名称(含拼音、首字母)、电话、编号、信用代码"),
        "level": _customer_query("level", "客户等级(字典 customer_level 的值)"),
        "industry": _customer_query("industry", "行业(字典 industry 的值)"),
        "source": _customer_query("source", "客户来源(字典 customer_source 的值)"),
        "status": _customer_query("status", "状态:potential / active / at_risk / lost"),
        "region": _customer_query("region", "地区(前缀匹配)"),
        "manager": _customer_query("manager", "客户经理的用户编号"),
    },
    deletable=True,
)

CONTACTS = Spec(
    path="contacts", model=Linkman, resource="linkman", title="联系人", kind="linkman",
    fields=("id", "customer_id", "name", "gender", "position", "phone", "mobile", "email", "birthday",
            "is_primary", "remark", "created_at", "updated_at"),
    writable=("customer_id", "name", "gender", "position", "phone", "mobile", "email", "birthday", "is_primary",
              "remark"),
    required=("customer_id", "name"),
    filters={"customer_id": _of_customer(Linkman)},
    deletable=True,
)

FOLLOW_UPS = Spec(
    path="follow-ups", model=FollowUp, resource="follow_up", title="联系记录", kind="follow_up",
    fields=("id", "customer_id", "linkman_id", "opportunity_id", "manager_id", "method", "content", "contacted_at",
            "next_follow_up_at", "created_at", "updated_at"),
    writable=("customer_id", "linkman_id", "opportunity_id", "method", "content", "contacted_at",
              "next_follow_up_at"),
    required=("customer_id", "method", "content"),  # contacted_at: now, as on the form
    filters={"customer_id": _of_customer(FollowUp)},
)

OPPORTUNITIES = Spec(
    path="opportunities", model=SalesOpportunity, resource="opportunity", title="销售机会", kind="opportunity",
    fields=("id", "customer_id", "title", "stage", "amount", "probability", "expected_close_date", "next_step",
            "next_follow_up_at", "manager_id", "status", "lost_reason", "version", "created_at", "updated_at"),
    writable=("customer_id", "title", "stage", "amount", "probability", "expected_close_date", "next_step",
              "next_follow_up_at", "status", "lost_reason"),
    required=("customer_id", "title", "stage"),
    filters={"customer_id": _of_customer(SalesOpportunity),
             "stage": _equals(SalesOpportunity.stage, "阶段(字典 opportunity_stage 的值)"),
             "status": _equals(SalesOpportunity.status, "状态:open / won / lost")},
)

CARE_TASKS = Spec(
    path="care-tasks", model=CustomerCare, resource="customer_care", title="客户关怀", kind="customer_care",
    fields=("id", "customer_id", "linkman_id", "care_type", "care_time", "due_date", "detail", "feedback", "status",
            "manager_id", "origin", "created_at", "updated_at"),
    filters={"customer_id": _of_customer(CustomerCare),
             "status": _equals(CustomerCare.status, "状态:pending / done / cancelled")},
)

PRODUCTS = Spec(
    path="products", model=Product, resource="product", title="产品",
    fields=("id", "code", "name", "category", "spec", "unit", "price", "stock", "is_active", "description",
            "created_at", "updated_at"),
    filters={"category": _equals(Product.category, "产品类别(字典 product_category 的值)"),
             "code": _equals(Product.code, "产品编号")},
)

ORDERS = Spec(
    path="orders", model=CustomerOrder, resource="order", title="订单", kind="order",
    fields=("id", "order_no", "customer_id", "order_date", "amount", "status", "manager_id", "remark", "version",
            "created_at", "updated_at"),
    filters={"customer_id": _of_customer(CustomerOrder)},
)

TRANSFERS = Spec(
    path="transfers", model=CustomerTransfer, resource="transfer", title="客户转移记录", kind="transfer",
    fields=("id", "customer_id", "old_manager_id", "new_manager_id", "reason", "transferred_at", "operator_id",
            "created_at", "updated_at"),
    filters={"customer_id": _of_customer(CustomerTransfer)},
)

SPECS = (CUSTOMERS, CONTACTS, FOLLOW_UPS, OPPORTUNITIES, CARE_TASKS, PRODUCTS, ORDERS, TRANSFERS)
