"""Product import (产品导入), for administrators."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from crm_admin.core import search
from crm_admin.core.errors import UserError
from crm_admin.db import utcnow
from crm_admin.dictionary.cells import dict_cell
from crm_admin.imports.cells import parse_bool_cell
from crm_admin.imports.registry import register
from crm_admin.imports.spec import Column, ImportContext, ImportSpec, Row, RowError
from crm_admin.products.models import Product
from crm_admin.products.service import validate_product


class ProductImport(ImportSpec):
    key = "product"
    resource = "product"
    title = "产品"
    order = 30
    columns = [
        Column("产品编号", "code", True, "P-1001", "唯一"),
        Column("产品名称", "name", True, "工业相机", ""),
        Column("类别", "category", False, "硬件设备", "填写数据字典中的名称"),
        Column("规格", "spec", False, "500 万像素", ""),
        Column("单位", "unit", False, "台", ""),
        Column("价格", "price", False, "1999.00", "元,两位小数"),
        Column("库存", "stock", False, "10", "整数"),
        Column("在售", "is_active", False, "是", "是/否,默认是"),
        Column("描述", "description", False, "", ""),
    ]

    def begin(self, session: Session, ctx: ImportContext) -> None:
        super().begin(session, ctx)
        ctx.state["codes"] = {}

    def check(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        seen: dict[str, int] = ctx.state["codes"]
        good: list[Row] = []
        for row in rows:
            try:
                values = self._row(row)
            except RowError as exc:
                row.error = exc.message
                continue
            if values["code"] in seen:
                row.error = f"与第 {seen[values['code']]} 行的产品编号重复"
                continue
            seen[values["code"]] = row.number
            row.values = values
            good.append(row)
        codes = [r.values["code"] for r in good if r.values]
        if codes:
            existing = set(session.execute(select(Product.code).where(Product.code.in_(codes))).scalars())
            for row in good:
                if row.values and row.values["code"] in existing:
                    row.error, row.values = f"产品编号“{row.values['code']}”已存在", None

    def _row(self, row: Row) -> dict[str, Any]:
        active = parse_bool_cell(row.text("is_active"), "在售")
        probe: Any = SimpleNamespace(
            code=row.text("code"), name=row.text("name"),
            category=dict_cell("product_category", row.text("category"), "类别"),
            spec=row.text("spec") or None, unit=row.text("unit") or None,
            price=row.text("price") or "0", stock=row.text("stock") or 0,
            is_active=True if active is None else active, description=row.text("description") or None,
        )
        try:
            validate_product(probe)
        except UserError as exc:  # the form's rules; anything else fails the job (logged, never shown)
            raise RowError(exc.message.rstrip("。")) from None
        values = {k: getattr(probe, k) for k in ("code", "name", "category", "spec", "unit", "price", "stock",
                                                 "is_active", "description")}
        self.fit(Product, values)
        return values

    def apply(self, session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        now = utcnow()
        # every row carries every column (NULLs written as NULLs): one multi-row INSERT per batch
        payload = [{**r.values, "created_at": now, "updated_at": now} for r in rows if r.values]
        session.execute(insert(Product).execution_options(render_nulls=True), payload)
        search.index_where(session.connection(), Product, Product.code.in_([v["code"] for v in payload]))
        return len(rows)


SPEC = register(ProductImport())
