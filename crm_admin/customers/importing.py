"""Customer import (客户导入): one true record — duplicates in the file and in the database refused.

It may also update existing customers (the upload form's choice): rows are matched by credit code or by
customer code, and the columns the user picked are changed through the customer form's own save path
(``service.before_save``: validation, the manager's hand-over, version, field-level audit). Only
customers within the importer's edit scope are matched; another one is reported as today's duplicate.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.core import audit, masking, search
from crm_admin.core.errors import UserError
from crm_admin.core.scope import check_assignee, scoped, sees_user
from crm_admin.customers import service
from crm_admin.customers.codes import credit_code_error, normalize_credit_code
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.db import utcnow
from crm_admin.dictionary.cells import dict_cell
from crm_admin.dictionary.service import label as dict_label
from crm_admin.imports.registry import register
from crm_admin.imports.spec import (
    CREATE,
    LOST_MATCH,
    STALE_MATCH,
    UNCHANGED,
    UPDATE,
    Column,
    ImportContext,
    ImportSpec,
    Row,
    RowError,
)

STATUS_BY_LABEL = {**{v: k for k, v in STATUS_LABELS.source.items()}, **{k: k for k in STATUS_LABELS}}
# the customer's fields an import reads (besides its manager)
FIELDS = ("name", "credit_code", "industry", "source", "level", "status", "region", "address", "phone", "email",
          "website", "remark")
TEXT_FIELDS = ("name", "region", "address", "phone", "email", "website", "remark")
# what a match reads of the existing customer
MATCHED = (Customer.id, Customer.code, Customer.name, Customer.version, Customer.manager_id, Customer.pool_id,
           *(getattr(Customer, f) for f in FIELDS if f != "name"))
BLANK = "(空)"


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
        Column("客户编号", "code", False, "", "按客户编号匹配已有客户时填写;新建客户的编号由系统生成(此列留空)"),
    ]
    match_keys = {"credit_code": "credit_code", "code": "code"}
    updatable = ("name", "credit_code", "industry", "source", "level", "status", "region", "address", "phone",
                 "email", "website", "manager", "remark")
    # a blank cell never empties these, whatever the user ticked (a customer always has a name and a status;
    # dropping a manager is not an import's business)
    never_cleared = ("name", "status", "manager")

    def notes(self) -> list[str]:
        from crm_admin.dictionary.service import entries

        out = []
        for key, type_code in service.DICT_FIELDS.items():
            label = service.FIELD_LABELS[key]
            out.append(f"{label}可选:" + "、".join(e.label for e in entries(type_code)))
        out.append("状态可选:" + "、".join(STATUS_LABELS.source.values()))
        out.append("同一文件内或与系统中已有客户名称相同/相近(忽略空格、全半角、有限公司等后缀)、电话相同、"
                   "信用代码相同的行不会导入,并在错误表中说明。")
        out.append("更新已有客户(上传时选择匹配方式):按统一社会信用代码或客户编号找到您有权修改的客户,只更新您勾选的列;"
                   "找不到的行新建(按客户编号匹配时,客户编号留空的行新建,填了却找不到的行不导入)。")
        out.append("更新时空白单元格表示不修改该字段;勾选“空白单元格清空该字段”后才会清空(客户名称、状态、客户经理除外)。"
                   "不在您数据范围内的客户不会被更新,该行说明由谁负责。")
        out.append("更新时更换客户经理需要分配权限,并与“客户转移”一样移交未完成的工作、记录转移。"
                   "预检后被他人修改过的客户在导入时不会被更新,请重新预检。")
        return out

    def begin(self, session: Session, ctx: ImportContext) -> None:
        super().begin(session, ctx)
        ctx.state.update(names={}, codes={}, phones={}, users={}, keys={})
        if ctx.match_by and not ctx.principal.can("customer", "edit"):  # checked again when the job runs
            raise UserError("您没有修改客户的权限,不能用导入更新已有客户。")
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
        if ctx.match_by:
            self._match(session, ctx, rows)
        names: dict[str, int] = ctx.state["names"]
        codes: dict[str, int] = ctx.state["codes"]
        phones: dict[str, int] = ctx.state["phones"]
        candidates: list[tuple[Row, dict[str, Any]]] = []  # (row, what to look for in the database)
        for row in rows:
            if row.error or row.action == UNCHANGED:
                continue
            if row.action == UPDATE:
                assert row.values is not None
                # an update is checked for what it changes only (the customer itself excluded)
                probe = {"name_key": row.values.get("name_key") if "name" in row.values else None,
                         "credit_code": row.values.get("credit_code"), "phone": row.values.get("phone")}
            else:
                try:
                    row.values = self._row(session, ctx, row)
                except RowError as exc:
                    row.error = exc.message
                    continue
                probe = {k: row.values[k] for k in ("name_key", "credit_code", "phone")}
            # duplicates within the file: the first occurrence wins
            phone = service.normalize_phone(probe["phone"]) if probe["phone"] else ""
            if probe["credit_code"] and probe["credit_code"] in codes:
                row.error = f"与第 {codes[probe['credit_code']]} 行的统一社会信用代码重复"
            elif probe["name_key"] and probe["name_key"] in names:
                row.error = f"与第 {names[probe['name_key']]} 行的客户名称相同或相近"
            elif phone and phone in phones:
                row.error = f"与第 {phones[phone]} 行的电话重复"
            if row.error:
                row.values = None
                continue
            if probe["credit_code"]:
                codes[probe["credit_code"]] = row.number
            if probe["name_key"]:
                names[probe["name_key"]] = row.number
            if phone:
                phones[phone] = row.number
            candidates.append((row, probe))
        self._against_database(session, ctx, candidates)

    # ----- matching existing customers --------------------------------------------------------------
    def _key(self, ctx: ImportContext, row: Row) -> str:
        """The row's value of the column matched on ("" when blank: the row creates)."""
        text = row.text(ctx.match_by)
        if ctx.match_by == "credit_code":
            key = normalize_credit_code(text)
            problem = credit_code_error(key) if key else None
            if problem:
                raise RowError(problem.rstrip("。"))
            return key
        return text[:64]

    def _match(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        """Find the existing customers the rows name (one query for the batch, one for the scope) and
        work out each matched row's update: action, changes (before → after), or why it is refused."""
        seen: dict[str, int] = ctx.state["keys"]
        header = self.header_of(self.match_keys[ctx.match_by])
        keyed: dict[int, str] = {}
        for row in rows:
            try:
                key = self._key(ctx, row)
            except RowError as exc:
                row.error = exc.message
                continue
            if not key:
                continue
            if key.upper() in seen:  # codes are upper case; a typed one may not be
                row.error = f"与第 {seen[key.upper()]} 行的{header}重复(同一客户只能出现一次)"
                continue
            seen[key.upper()] = row.number
            keyed[row.number] = key
        if not keyed:
            return
        column = Customer.credit_code if ctx.match_by == "credit_code" else Customer.code
        wanted = {*keyed.values(), *(k.upper() for k in keyed.values())}
        found = {getattr(r, ctx.match_by).upper(): r for r in session.execute(
            select(*MATCHED).where(column.in_(sorted(wanted)))).all()}
        editable: set[int] = set()
        if found:
            ids = sorted(r.id for r in found.values())
            editable = set(session.execute(
                scoped(select(Customer.id).where(Customer.id.in_(ids)), Customer, ctx.principal, "edit")).scalars())
        people = service.manager_names(session, [r.manager_id for r in found.values()])
        # the customers whose personal data the importer sees masked: the plan shows them masked too
        masked = masking.customers_masked_for(session, ctx.principal, editable)
        for row in rows:
            key = keyed.get(row.number, "")
            if not key:
                continue
            hit = found.get(key.upper())
            if hit is None:
                if ctx.match_by == "code":
                    row.error = f"客户编号“{key}”不存在(新建客户请将客户编号留空)"
                continue  # a credit code not in the system: a new customer
            if hit.id not in editable:
                row.error = self._out_of_scope(ctx, hit, f"{header}相同", people)
                continue
            try:
                self._update(session, ctx, row, hit, people, masked=hit.id in masked)
            except RowError as exc:
                row.error = exc.message

    def _out_of_scope(self, ctx: ImportContext, hit: Any, what: str, people: dict[int, str]) -> str:
        who = people.get(hit.manager_id or 0, "")
        owner = f"由 {who} 负责" if who else "尚未分配客户经理"
        if sees_user(ctx.principal, hit.manager_id, "customer", "view"):
            return f"系统中已有{what}的客户:{hit.name}({hit.code},{owner}),不在您可修改的范围内,未更新"
        return f"系统中已有{what}的客户({owner}),不在您可修改的范围内,未更新"

    def _cell(self, row: Row, key: str) -> Any:
        """A picked column's value from its cell (None when blank)."""
        text = row.text(key)
        if not text:
            return None
        if key == "credit_code":
            code = normalize_credit_code(text)
            problem = credit_code_error(code)
            if problem:
                raise RowError(problem.rstrip("。"))
            return code
        if key in service.DICT_FIELDS:
            return dict_cell(service.DICT_FIELDS[key], text, service.FIELD_LABELS[key])
        if key == "status":
            if text not in STATUS_BY_LABEL:
                raise RowError(f"状态“{text}”无效(可选:{'、'.join(STATUS_LABELS.source.values())})")
            return STATUS_BY_LABEL[text]
        return text

    def _update(self, session: Session, ctx: ImportContext, row: Row, hit: Any, people: dict[int, str], *,
                masked: bool = False) -> None:
        """The row's update of ``hit`` (within scope): the picked columns, checked by the customer form's
        rules (``validate_customer``), as the changed values and their before → after (personal values
        the importer sees ``masked`` shown masked). A personal cell holding exactly the masked form of the
        stored value (what an export showed) leaves it alone; another masked-looking value is refused —
        a mask is never saved over a real value, as in the customer form."""
        before = {k: getattr(hit, k) for k in FIELDS}
        after = dict(before)
        personal = masking.personal_data(Customer)
        for key in ctx.update_columns:
            if key == "manager":
                continue
            text = row.text(key)
            if personal is not None and key in personal.fields and masking.is_masked(text):
                if masking.unchanged_if_masked(Customer, key, text, before[key]):
                    continue
                raise RowError(f"{self.header_of(key)}“{text[:64]}”是脱敏显示的值,不能导入:"
                               f"请保留导出时的原样,或填写完整的新值")
            try:
                value = self._cell(row, key)
            except RowError:
                # a disabled dictionary item the customer already has may stay, as in the form
                if key not in service.DICT_FIELDS or before[key] is None or row.text(key) not in (
                        before[key], dict_label(service.DICT_FIELDS[key], before[key])):
                    raise
                value = before[key]
            if value is None and not (ctx.blank_clears and key not in self.never_cleared):
                continue  # a blank cell leaves the field as it is
            after[key] = value
        probe: Any = SimpleNamespace(**after)
        try:
            service.validate_customer(probe, previous=before)
        except UserError as exc:
            raise RowError(exc.message.rstrip("。")) from None
        changes = {k: getattr(probe, k) for k in FIELDS if getattr(probe, k) != before[k]}
        if "name" in changes:
            changes["name_key"] = probe.name_key
        self.fit(Customer, changes)
        hide = set(personal.fields) if personal is not None and masked else set()
        shown = {self.header_of(k): [self._shown(k, masking.masked_value(Customer, k, before[k]) if k in hide
                                                 else before[k]), self._shown(k, v)]
                 for k, v in changes.items() if k != "name_key"}
        if "manager" in ctx.update_columns and row.text("manager"):
            manager = self._new_manager(session, ctx, row.text("manager"), hit.manager_id)
            if manager is not None and hit.pool_id is not None:
                # a customer in a public pool leaves it by a claim or an assignment (the customer form too)
                raise RowError("该客户在公海中,不能用导入指定客户经理,请到公海页面领取或分配")
            if manager is not None:
                changes["manager_id"] = manager
                shown[self.header_of("manager")] = [people.get(hit.manager_id or 0) or BLANK,
                                                    ctx.state["user_names"][manager]]
        row.target, row.version, row.label = int(hit.id), int(hit.version), f"{hit.code} {hit.name}"
        row.action = UPDATE if changes else UNCHANGED
        row.values = changes
        row.changes = shown

    @staticmethod
    def _shown(key: str, value: Any) -> str:
        if value in (None, ""):
            return BLANK
        if key in service.DICT_FIELDS:
            return dict_label(service.DICT_FIELDS[key], value)
        if key == "status":
            return STATUS_LABELS.get(value, value)
        return str(value)

    def _user(self, session: Session, ctx: ImportContext, username: str) -> int | str:
        """The user a 客户经理 cell names: their id, or why not (cached per pass)."""
        users: dict[str, int | str] = ctx.state.setdefault("usernames", {})
        if username not in users:
            user = session.execute(select(SysUser.id, SysUser.real_name, SysUser.username)
                                   .where(SysUser.username == username)).first()
            if user is None:
                users[username] = f"客户经理“{username}”不存在(请填写系统中的用户名)"
            else:
                users[username] = int(user.id)
                ctx.state.setdefault("user_names", {})[int(user.id)] = user.real_name or user.username
        return users[username]

    def _new_manager(self, session: Session, ctx: ImportContext, username: str, current: int | None) -> int | None:
        """The 客户经理 cell of an update: None when it names the current manager; another person only as
        the customer form allows (``assign``, ``check_assignee``, still within the importer's scope)."""
        found = self._user(session, ctx, username)
        if isinstance(found, str):
            raise RowError(found)
        if found == current:
            return None
        principal = ctx.principal
        if not principal.can("customer", "assign"):
            raise RowError("您没有分配客户经理的权限,不能在导入中更换客户经理(请使用“客户转移”功能)")
        checked: dict[int, str] = ctx.state.setdefault("assignees", {})
        if found not in checked:
            try:
                check_assignee(session, principal, found)
                checked[found] = ""
            except UserError as exc:
                checked[found] = exc.message.rstrip("。")
            if not checked[found] and not sees_user(principal, found, "customer", "edit"):
                checked[found] = f"交给“{username}”后该客户将超出您的数据范围,未更新"
        if checked[found]:
            raise RowError(checked[found])
        return found

    def _against_database(self, session: Session, ctx: ImportContext,
                          rows: list[tuple[Row, dict[str, Any]]]) -> None:
        """Rows that create, and updates that change a name, phone or credit code, must not duplicate a
        customer of the database (an update: another customer than the one it changes). One query."""
        keys = {p["name_key"] for _r, p in rows if p["name_key"]}
        codes = {p["credit_code"] for _r, p in rows if p["credit_code"]}
        phones: set[str] = set()
        for _r, p in rows:
            if p["phone"]:
                phones.update({p["phone"], service.normalize_phone(p["phone"])})
        conds = []
        if keys:
            conds.append(Customer.name_key.in_(sorted(keys)))
        if codes:
            conds.append(Customer.credit_code.in_(sorted(codes)))
        if phones:
            conds.append(Customer.phone.in_(sorted(phones)))
        if not conds:
            return
        existing = session.execute(
            select(Customer.id, Customer.name, Customer.code, Customer.name_key, Customer.credit_code,
                   Customer.phone, Customer.manager_id).where(or_(*conds))
        ).all()
        if not existing:
            return
        people = service.manager_names(session, [e.manager_id for e in existing])
        by_key: dict[str, list[Any]] = {}
        by_code: dict[str, list[Any]] = {}
        by_phone: dict[str, list[Any]] = {}
        for e in existing:
            by_key.setdefault(e.name_key, []).append(e)
            if e.credit_code:
                by_code.setdefault(e.credit_code, []).append(e)
            if e.phone:
                for value in {e.phone, service.normalize_phone(e.phone)}:
                    by_phone.setdefault(value, []).append(e)

        def other(found: list[Any] | None, row: Row) -> Any:
            return next((e for e in found or () if e.id != row.target), None)

        for row, p in rows:
            hit, what = None, ""
            if p["credit_code"] and (hit := other(by_code.get(p["credit_code"]), row)):
                what = "统一社会信用代码相同"
            elif p["name_key"] and (hit := other(by_key.get(p["name_key"]), row)):
                what = "名称相同或相近"
            elif p["phone"] and (hit := other(by_phone.get(p["phone"]), row)
                                 or other(by_phone.get(service.normalize_phone(p["phone"])), row)):
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
        creates = [r for r in rows if r.action == CREATE]
        updates = [r for r in rows if r.action == UPDATE]
        return (self._insert_new(session, creates) if creates else 0) + (
            self._update_rows(session, ctx, updates) if updates else 0)

    @staticmethod
    def _insert_new(session: Session, rows: list[Row]) -> int:
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

    @staticmethod
    def _update_rows(session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        """Save the batch's updates as the customer form saves one: the rows locked and their version
        compared with the one the checks read (a customer changed meanwhile is refused, the others go
        on), the new values set, ``service.before_save`` (checks, manager hand-over), and a flush that
        writes each customer's field-level audit row (the import is otherwise silent)."""
        ids = sorted({r.target for r in rows if r.target is not None})
        done = 0
        with audit.itemised(session):
            locked = {c.id: c for c in session.execute(
                select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id)
                .with_for_update().execution_options(populate_existing=True)).scalars()}
            for row in rows:
                customer = locked.get(row.target or 0)
                if customer is None:
                    row.error = LOST_MATCH
                    continue
                if customer.version != row.version:
                    row.error = STALE_MATCH.format(before=row.version, now=customer.version)
                    continue
                assert row.values is not None
                for key, value in row.values.items():
                    setattr(customer, key, value)
                service.before_save(session, ctx.principal, customer, is_created=False, duplicates_checked=True)
                done += 1
            session.flush()
        return done


SPEC = register(CustomerImport())
