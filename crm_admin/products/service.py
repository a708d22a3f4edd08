"""Product catalogue (产品目录): validation shared by the admin form and the import."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crm_admin.core.errors import UserError
from crm_admin.customers.service import clean
from crm_admin.opportunities.service import to_decimal

_LENGTHS = {"code": (32, "产品编号"), "name": (128, "产品名称"), "spec": (128, "规格"), "unit": (16, "单位")}
MAX_PRICE = Decimal("999999999999.99")


def validate_product(obj: Any) -> None:
    from crm_admin.dictionary.service import is_valid

    for key in ("code", "name", "category", "spec", "unit", "description"):
        setattr(obj, key, clean(getattr(obj, key)))
    if not obj.code:
        raise UserError("产品编号不能为空。", field="code")
    obj.code = obj.code.upper()
    if not obj.name:
        raise UserError("产品名称不能为空。", field="name")
    for key, (limit, label) in _LENGTHS.items():
        value = getattr(obj, key)
        if value and len(value) > limit:
            raise UserError(f"{label}不能超过 {limit} 个字符。", field=key)
    if obj.category and not is_valid("product_category", obj.category):
        raise UserError(f"产品类别“{obj.category}”不是有效的选项。", field="category")
    obj.price = to_decimal(obj.price, label="价格", field_name="price")
    if obj.price < 0 or obj.price > MAX_PRICE:
        raise UserError("价格必须是 0 或正数。", field="price")
    try:
        obj.stock = int(obj.stock if obj.stock not in (None, "") else 0)
    except (TypeError, ValueError):
        raise UserError("库存必须是整数。", field="stock") from None
    if obj.stock < 0:
        raise UserError("库存不能为负数。", field="stock")
    obj.is_active = True if obj.is_active is None else bool(obj.is_active)
