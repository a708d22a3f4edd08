"""Customer import (客户导入): one true record — duplicates in the file and in the database refused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.core import search
from crm_admin.core.errors import UserError
from crm_admin.core.scope import check_assignee, sees_user
from crm_admin.customers import service
from crm_admin.customers.codes import credit_code_error, normalize_credit_code
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.db import utcnow
from crm_admin.dictionary.cells import dict_cell
from crm_admin.imports.registry import register
from crm_admin.imports.spec import Column, ImportContext, ImportSpec, Row, RowError

STATUS_BY_LABEL = {**{v: k for k, v in STATUS_LABELS.source.items()}, **{k: k for k in STATUS_LABELS}}


class CustomerImport(ImportSpec):
    key = "customer"
    resource = "customer"
    title = "客户"
    order = 10
    columns = [
        Column("客户名称", "name", True, "北京星辰科技有限公司", "公司全称,最多 128 字"),
        Column("统一社会信用代码", "credit_code", False, "", "18 位,系统校验校验位;不可与已有客户重复"),
        Column("行业", "industry", False, "信息技术", "填写数据字典中的名称"),
        Column("客户来源", "source", False, "展会", "填写数据字典中的名称"),
        Column("客户等级", "level", False, "A 级(重点客户)", "填写数据字典中的名称或 A/B/C/D"),
        Column("状态", "status", False, "潜在客户", "潜在客户/成交客户/流失风险/已流失,默认潜在客户"),
        Column("地区", "region", False, "北京", ""),
        Column("地址", "address", False, "北京市海淀区中关村大街 1 号", ""),
        Column("电话", "phone", False, "010-88886666", "座机或手机"),
        Column("邮箱", "email", False, "info@example.com", ""),
        Column("网站", "website", False, "www.example.com", ""),
        Column("客户经理", "manager", False, "", "用户名;仅有分配权限的用户可指定,否则归导入人"),
        Column("备注", "remark", False, "", ""),
    ]

    def notes(self) -> list[str]:
        from crm_admin.dictionary.service import entries

        out = []
        for key, type_code in service.DICT_FIELDS.items():
            label = service.FIELD_LABELS[key]
            out.append(f"{label}可选:" + "、".join(e.label for e in entries(type_code)))
        out.append("状态可选:" + "、".join(STATUS_LABELS.source.values()))
        out.append("同一文件内或与系统中已有客户名称相同/相近(忽略空格、全半角、有限公司等后缀)、电话相同、"
                   "信用代码相同的行不会导入,并在错误表中说明。")
        return out

    def begin(self, session: Session, ctx: ImportContext) -> None:
        super().begin(session, ctx)
        ctx.state.update(names={}, codes={}, phones={}, users={})
        chosen = ctx.options.get("manager_id")
        if chosen is not None:
            # "assign to" of the upload form, checked again when the job runs (people change meanwhile)
            if not ctx.principal.can("customer", "assign"):
                raise UserError("您没有分配客户经理的权限,导入的客户只能归您本人负责。")
            ctx.state["default_manager"] = check_assignee(session, ctx.principal, chosen, field="manager_id").id
        else:
            ctx.state["default_manager"] = ctx.principal.id

    def _manager(self, session: Session, ctx: ImportContext, username: str) -> int:
        """The 客户经理 column: the same rule as the customer form's picker (``check_assignee``)."""
        principal = ctx.principal
        if not username:
            return int(ctx.state["default_manager"])
        users: dict[str, int | str] = ctx.state["users"]
        if username not in users:
            user_id = session.execute(select(SysUser.id).where(SysUser.username == username)).scalar()
            if user_id is None:
                users[username] = f"客户经理“{username}”不存在(请填写系统中的用户名)"
            elif user_id != principal.id and not principal.can("customer", "assign"):
                users[username] = "您没有分配客户经理的权限,客户经理一列请留空(导入的客户归您本人)"
            else:
                try:
                    users[username] = int(check_assignee(session, principal, user_id).id)
                except UserError as exc:
                    users[username] = exc.message.rstrip("。")
        found = users[username]
        if isinstance(found, str):
            raise RowError(found)
        return found

    def _row(self, session: Session, ctx: ImportContext, row: Row) -> dict[str, Any]:
        values: dict[str, Any] = {}
        name = row.text("name")
        if not name:
            raise RowError("客户名称不能为空")
        values["name"] = name
        code = normalize_credit_code(row.text("credit_code"))
        if code:
            problem = credit_code_error(code)
            if problem:
                raise RowError(problem.rstrip("。"))
        values["credit_code"] = code or None
        for key, type_code in service.DICT_FIELDS.items():
            values[key] = dict_cell(type_code, row.text(key), service.FIELD_LABELS[key])
        status_text = row.text("status")
        if status_text and status_text not in STATUS_BY_LABEL:
            raise RowError(f"状态“{status_text}”无效(可选:{'、'.join(STATUS_LABELS.source.values())})")
        values["status"] = STATUS_BY_LABEL.get(status_text, "potential")
        for key in ("region", "address", "phone", "email", "website", "remark"):
            values[key] = row.text(key) or None
        # a plain object, not a mapped one: ORM attribute events cost more than the checks themselves
        probe: Any = SimpleNamespace(**{k: values[k] for k in ("name", "credit_code", "industry", "source", "level",
                                                    "status", "region", "address", "phone", "email",
                                                    "website", "remark")})
        try:
            service.validate_customer(probe)
        except UserError as exc:  # the form's rules; anything else fails the job (logged, never shown)
            raise RowError(exc.message.rstrip("。")) from None
        for key in ("name", "credit_code", "region", "address", "phone", "email", "website", "remark"):
            values[key] = getattr(probe, key)
        values["name_key"] = probe.name_key
        self.fit(Customer, values)
        values["manager_id"] = self._manager(session, ctx, row.text("manager"))
        return values

    def check(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        names: dict[str, int] = ctx.state["names"]
        codes: dict[str, int] = ctx.state["codes"]
        phones: dict[str, int] = ctx.state["phones"]
        candidates: list[Row] = []
        for row in rows:
            try:
                values = self._row(session, ctx, row)
            except RowError as exc:
                row.error = exc.message
                continue
            # duplicates within the file: the first occurrence wins
            phone = service.normalize_phone(values["phone"]) if values["phone"] else ""
            if values["credit_code"] and values["credit_code"] in codes:
                row.error = f"与第 {codes[values['credit_code']]} 行的统一社会信用代码重复"
            elif values["name_key"] in names:
                row.error = f"与第 {names[values['name_key']]} 行的客户名称相同或相近"
            elif phone and phone in phones:
                row.error = f"与第 {phones[phone]} 行的电话重复"
            if row.error:
                continue
            if values["credit_code"]:
                codes[values["credit_code"]] = row.number
            names[values["name_key"]] = row.number
            if phone:
                phones[phone] = row.number
            row.values = values
            candidates.append(row)
        self._against_database(session, ctx, candidates)

    def _against_database(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        if not rows:
            return
        keys = {r.values["name_key"] for r in rows if r.values}
        codes = {r.values["credit_code"] for r in rows if r.values and r.values["credit_code"]}
        phones: set[str] = set()
        for r in rows:
            if r.values and r.values["phone"]:
                phones.update({r.values["phone"], service.normalize_phone(r.values["phone"])})
        conds = [Customer.name_key.in_(sorted(keys))]
        if codes:
            conds.append(Customer.credit_code.in_(sorted(codes)))
        if phones:
            conds.append(Customer.phone.in_(sorted(phones)))
        existing = session.execute(
            select(Customer.id, Customer.name, Customer.code, Customer.name_key, Customer.credit_code,
                   Customer.phone, Customer.manager_id).where(or_(*conds))
        ).all()
        if not existing:
            return
        people = service.manager_names(session, [e.manager_id for e in existing])
        by_key = {e.name_key: e for e in existing}
        by_code = {e.credit_code: e for e in existing if e.credit_code}
        by_phone: dict[str, Any] = {}
        for e in existing:
            if e.phone:
                by_phone[e.phone] = e
                by_phone[service.normalize_phone(e.phone)] = e
        for row in rows:
            v = row.values
            assert v is not None
            hit, what = None, ""
            if v["credit_code"] and v["credit_code"] in by_code:
                hit, what = by_code[v["credit_code"]], "统一社会信用代码相同"
            elif v["name_key"] in by_key:
                hit, what = by_key[v["name_key"]], "名称相同或相近"
            elif v["phone"] and (v["phone"] in by_phone or service.normalize_phone(v["phone"]) in by_phone):
                hit = by_phone.get(v["phone"]) or by_phone.get(service.normalize_phone(v["phone"]))
                what = "电话相同"
            if hit is None:
                continue
            who = people.get(hit.manager_id or 0, "")
            owner = f"由 {who} 负责" if who else "尚未分配客户经理"
            if sees_user(ctx.principal, hit.manager_id, "customer", "view"):
                row.error = f"系统中已有{what}的客户:{hit.name}({hit.code},{owner})"
            else:
                row.error = f"系统中已有{what}的客户({owner})"
            row.values = None

    def apply(self, session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        codes = service.next_customer_codes(session, len(rows))
        now = utcnow()
        payload = []
        for row, code in zip(rows, codes, strict=True):
            assert row.values is not None
            payload.append({**row.values, "code": code, "version": 1, "created_at": now, "updated_at": now})
        # NULLs written as NULLs: every row then has the same columns and the batch goes out as one
        # multi-row INSERT (rows with different empty cells would otherwise be sent one by one); the
        # only columns with defaults (name_key, status) are always set
        session.execute(insert(Customer).execution_options(render_nulls=True), payload)
        search.index_where(session.connection(), Customer, Customer.code.in_(codes))
        return len(payload)


SPEC = register(CustomerImport())
