"""Contact import (联系人导入): each row names a customer the importer may see."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import GENDER_VALUES, birthday_md, validate_linkman
from crm_admin.core import search
from crm_admin.core.errors import UserError
from crm_admin.core.scope import scoped
from crm_admin.customers.models import Customer
from crm_admin.db import utcnow
from crm_admin.imports.cells import parse_bool_cell, parse_date_cell
from crm_admin.imports.registry import register
from crm_admin.imports.spec import Column, ImportContext, ImportSpec, Row, RowError


class ContactImport(ImportSpec):
    key = "linkman"
    resource = "linkman"
    title = "联系人"
    order = 20
    columns = [
        Column("客户编号", "customer_code", False, "C2026110001", "客户编号或客户名称至少填一个"),
        Column("客户名称", "customer_name", False, "北京星辰科技有限公司", "须与系统中的客户名称完全一致"),
        Column("姓名", "name", True, "张三", ""),
        Column("性别", "gender", False, "男", "男/女"),
        Column("职位", "position", False, "采购经理", ""),
        Column("手机", "mobile", False, "13800138000", "11 位手机号"),
        Column("电话", "phone", False, "010-88886666", ""),
        Column("邮箱", "email", False, "zhangsan@example.com", ""),
        Column("生日", "birthday", False, "1985-06-18", "如 1985-06-18"),
        Column("主联系人", "is_primary", False, "是", "是/否;每个客户只能有一个主联系人"),
        Column("备注", "remark", False, "", ""),
    ]

    def begin(self, session: Session, ctx: ImportContext) -> None:
        super().begin(session, ctx)
        ctx.state.update(primary={}, seen={})

    def _customers(self, session: Session, ctx: ImportContext, rows: list[Row]) -> dict[str, int]:
        codes = {r.text("customer_code").upper() for r in rows if r.text("customer_code")}
        names = {r.text("customer_name") for r in rows if r.text("customer_name")}
        if not codes and not names:
            return {}
        stmt = select(Customer.id, Customer.code, Customer.name).where(
            or_(Customer.code.in_(sorted(codes)), Customer.name.in_(sorted(names))))
        found: dict[str, int] = {}
        ambiguous: set[str] = set()
        for cid, code, name in session.execute(scoped(stmt, Customer, ctx.principal, "import", resource="linkman")):
            found[f"code:{code}"] = cid
            if f"name:{name}" in found and found[f"name:{name}"] != cid:
                ambiguous.add(name)
            found[f"name:{name}"] = cid
        for name in ambiguous:
            found[f"name:{name}"] = -1
        return found

    def check(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        customers = self._customers(session, ctx, rows)
        primary: dict[int, int] = ctx.state["primary"]
        seen: dict[tuple[int, str, str], int] = ctx.state["seen"]
        for row in rows:
            try:
                row.values = self._row(row, customers)
            except RowError as exc:
                row.error = exc.message
                continue
            v = row.values
            key = (v["customer_id"], v["name"], v["mobile"] or "")
            if key in seen:
                row.error, row.values = f"与第 {seen[key]} 行重复(同一客户、姓名和手机)", None
                continue
            if v["is_primary"] and v["customer_id"] in primary:
                row.error, row.values = f"第 {primary[v['customer_id']]} 行已是该客户的主联系人", None
                continue
            seen[key] = row.number
            if v["is_primary"]:
                primary[v["customer_id"]] = row.number

    def _row(self, row: Row, customers: dict[str, int]) -> dict[str, Any]:
        code, cname = row.text("customer_code").upper(), row.text("customer_name")
        if not code and not cname:
            raise RowError("请填写客户编号或客户名称")
        cid = customers.get(f"code:{code}") if code else customers.get(f"name:{cname}")
        if cid == -1:
            raise RowError(f"有多个名为“{cname}”的客户,请改填客户编号")
        if cid is None:
            raise RowError(f"找不到客户“{code or cname}”(或不在您的数据范围内)")
        gender_text = row.text("gender")
        if gender_text and gender_text.lower() not in GENDER_VALUES:
            raise RowError("性别只能填“男”或“女”")
        probe: Any = SimpleNamespace(
            id=None, birthday_md=None, customer_id=cid, name=row.text("name"), gender=gender_text or None,
            position=row.text("position") or None, mobile=row.text("mobile") or None,
            phone=row.text("phone") or None, email=row.text("email") or None,
            birthday=parse_date_cell(row.text("birthday"), "生日"),
            is_primary=bool(parse_bool_cell(row.text("is_primary"), "主联系人")),
            remark=row.text("remark") or None,
        )
        try:
            validate_linkman(probe)
        except UserError as exc:  # the form's rules; anything else fails the job (logged, never shown)
            raise RowError(exc.message.rstrip("。")) from None
        values = {k: getattr(probe, k) for k in ("customer_id", "name", "gender", "position", "mobile", "phone",
                                                 "email", "birthday", "is_primary", "remark")}
        self.fit(Linkman, values)
        return values

    def apply(self, session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        now = utcnow()
        payload = []
        new_primary = set()
        for row in rows:
            assert row.values is not None
            v = dict(row.values)
            v["birthday_md"] = birthday_md(v["birthday"])
            v.update(created_at=now, updated_at=now)
            payload.append(v)
            if v["is_primary"]:
                new_primary.add(v["customer_id"])
        if new_primary:
            # the imported primary contact replaces the existing one
            session.execute(update(Linkman).where(Linkman.customer_id.in_(sorted(new_primary)),
                                                  Linkman.is_primary.is_(True)).values(is_primary=False))
        # each contact carries its customer's manager (customers.models.CarriesCustomerManager), read with
        # shared locks so that no transfer slips in between
        carried = dict(session.execute(
            select(Customer.id, Customer.manager_id).where(Customer.id.in_(sorted({v["customer_id"] for v in payload})))
            .order_by(Customer.id).with_for_update(read=True)
        ).tuples().all())
        for v in payload:
            v["customer_manager_id"] = carried.get(v["customer_id"])
        # every row carries every column (NULLs written as NULLs): one multi-row INSERT per batch
        after = search.max_id(session.connection(), Linkman)
        session.execute(insert(Linkman).execution_options(render_nulls=True), payload)
        search.index_where(session.connection(), Linkman, and_(
            Linkman.id > after, Linkman.customer_id.in_(sorted({v["customer_id"] for v in payload}))))
        return len(payload)


SPEC = register(ContactImport())
