"""Product catalogue (产品目录): validation shared by the admin form and the import."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crm_admin.core import limits
from crm_admin.core.errors import UserError
from crm_admin.customers.service import clean
from crm_admin.dictionary.service import is_valid
from crm_admin.products.models import Product

LABELS = {"code": "产品编号", "name": "产品名称", "category": "类别", "spec": "规格", "unit": "单位",
          "price": "价格", "stock": "库存", "description": "描述"}


def validate_product(obj: Any) -> None:
    for key in ("code", "name", "category", "spec", "unit", "description"):
        setattr(obj, key, clean(getattr(obj, key)))
    if not obj.code:
        raise UserError("产品编号不能为空。", field="code")
    obj.code = obj.code.upper()
    if not obj.name:
        raise UserError("产品名称不能为空。", field="name")
    for key in ("code", "name", "category", "spec", "unit", "description"):
        limits.check_value(Product, key, getattr(obj, key), LABELS[key])
    if obj.category and not is_valid("product_category", obj.category):
        raise UserError(f"产品类别“{obj.category}”不是有效的选项。", field="category")
    price = limits.parse_decimal(obj.price, Product, "price", LABELS["price"])
    obj.price = (price or Decimal(0)).quantize(Decimal("0.01"))
    obj.stock = limits.parse_integer(obj.stock, Product, "stock", LABELS["stock"]) or 0
    obj.is_active = True if obj.is_active is None else bool(obj.is_active)
