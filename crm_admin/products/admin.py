"""Admin views of the product catalogue: admins maintain it, managers look things up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.requests import Request

from crm_admin.core import search
from crm_admin.core.formatting import format_bool
from crm_admin.core.limits import filter_number
from crm_admin.core.params import parse_int
from crm_admin.core.views import CrmModelView
from crm_admin.dictionary.service import DictSelectField, choices, label
from crm_admin.products.models import Product
from crm_admin.products.service import validate_product


def _decimal(value: str | None) -> Decimal | None:
    # a price the column cannot hold (1e400, NaN) is one MariaDB cannot compare: bring it within range
    return filter_number(value, Product, "price")


def _int(value: str | None) -> int | None:
    return parse_int(value)


class ProductAdmin(CrmModelView, model=Product):
    name = "产品"
    name_plural = "产品目录"
    icon = "fa-solid fa-box"
    category = "产品与交易"
    list_template = "products/list.html"
    column_list = [Product.code, Product.name, Product.category, Product.spec, Product.unit,
                   Product.price, Product.stock, Product.is_active]
    column_export_list = ["code", "name", "category", "spec", "unit", "price", "stock", "is_active",
                          "description"]
    column_labels = {
        "code": "产品编号", "name": "产品名称", "category": "类别", "spec": "规格", "unit": "单位",
        "price": "价格", "stock": "库存", "is_active": "在售", "description": "描述",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_dict_types = {"category": "product_category"}
    column_formatters = {
        Product.category: lambda m, a: label("product_category", m.category),
        Product.price: lambda m, a: f"{m.price:,.2f}",
        Product.is_active: lambda m, a: format_bool(m.is_active),
    }
    column_formatters_detail = {Product.category: lambda m, a: label("product_category", m.category)}
    column_searchable_list = [Product.name, Product.code]
    column_sortable_list = [Product.code, Product.name, Product.price, Product.stock]
    column_default_sort = [(Product.code, False)]
    form_columns = ["code", "name", "category", "spec", "unit", "price", "stock", "is_active", "description"]
    form_overrides = {"category": DictSelectField}
    form_args = {"category": {"dict_type": "product_category"}}

    def list_query(self, request: Request) -> Select[Any]:
        stmt = super().list_query(request)
        q = request.query_params
        term = (q.get("q") or "").strip()[:64]
        if term and (found := search.match_now(Product, term)) is not None:
            stmt = stmt.where(found)
        if q.get("category"):
            stmt = stmt.where(Product.category == q.get("category"))
        low, high = _decimal(q.get("price_min")), _decimal(q.get("price_max"))
        if low is not None:
            stmt = stmt.where(Product.price >= low)
        if high is not None:
            stmt = stmt.where(Product.price <= high)
        stock_min = _int(q.get("stock_min"))
        if stock_min is not None:
            stmt = stmt.where(Product.stock >= stock_min)
        if q.get("active") in ("1", "0"):
            stmt = stmt.where(Product.is_active.is_(q.get("active") == "1"))
        return stmt

    async def list_context(self, request: Request) -> dict[str, Any]:
        context = await super().list_context(request)
        q = request.query_params
        context.update({
            "pq": {k: q.get(k, "") for k in ("q", "category", "price_min", "price_max", "stock_min", "active")},
            "pq_categories": choices("product_category"),
        })
        return context

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        validate_product(obj)


VIEWS = [ProductAdmin]
