"""Admin views of the product catalogue."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView
from crm_admin.products.models import Product


class ProductAdmin(CrmModelView, model=Product):
    name = "产品"
    name_plural = "产品目录"
    icon = "fa-solid fa-box"
    category = "产品与交易"
    column_list = [Product.code, Product.name, Product.category, Product.spec, Product.unit,
                   Product.price, Product.stock, Product.is_active]
    column_labels = {
        "code": "产品编号", "name": "产品名称", "category": "类别", "spec": "规格", "unit": "单位",
        "price": "价格", "stock": "库存", "is_active": "在售", "description": "描述",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_searchable_list = [Product.name, Product.code]
    form_excluded_columns = ["created_at", "updated_at"]


VIEWS = [ProductAdmin]
