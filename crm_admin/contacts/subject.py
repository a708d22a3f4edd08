"""Requests of a data subject (个人信息主体请求) about a contact: everything the system holds about them,
exported; and their personal data erased while the business records stay (anonymised).

What is held about a contact: the contact's row; the records of every module that names the contact
(``linkman_id``: follow-ups, care records and plans … found through the registry of customer records,
so no module is named here); and the audit rows about the contact and about those records.

Erasing anonymises the contact in place: the name becomes "已匿名化联系人#<id>", the phones, e-mail,
gender, birthday and remark are cleared; the position (the role in the customer's company) stays.
The texts of the records that name the contact (a follow-up's content, a care record's detail and
feedback …) have the contact's name, phones and e-mail replaced there, so the business history stays
readable without them. Audit rows already written are part of the sealed, tamper-evident log and are
kept as they are (the log is the legal record of who did what). The erase writes one audit row that
names the fields cleared, never their values. Both are services that never commit.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Text, inspect, or_, select
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.core import audit, customer_records
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime, local_now
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped
from crm_admin.customers.models import Customer
from crm_admin.db import Base

RESOURCE = "personal_data"  # the permission: export → "export", erase → "delete"
SUBJECT_EXPORT = "subject_export"  # audit actions
ERASE = "erase"
ANONYMOUS_PREFIX = "已匿名化联系人#"
ERASED_FIELDS = ("name", "gender", "phone", "mobile", "email", "birthday", "remark")
AUDIT_LIMIT = 5000  # audit rows exported at most (newest first)
REPLACED = "[已删除]"  # what a phone or e-mail named in a record's text becomes


def anonymous_name(linkman_id: int) -> str:
    return f"{ANONYMOUS_PREFIX}{linkman_id}"


def is_anonymised(contact: Linkman) -> bool:
    return contact.name == anonymous_name(contact.id)


def _contact(session: Session, principal: Principal, linkman_id: int, action: str, *, lock: bool = False) -> Linkman:
    stmt = scoped(select(Linkman).where(Linkman.id == linkman_id), Linkman, principal, action, resource=RESOURCE)
    if lock:
        stmt = stmt.with_for_update()
    contact = session.execute(stmt).scalar_one_or_none()
    if contact is None:
        raise NotFound()
    return contact


def _naming_kinds() -> list[customer_records.RecordKind]:
    """Kinds of record that name a contact (a ``linkman_id`` column), other than the contacts."""
    return [k for k in customer_records.kinds()
            if k.model is not Linkman and "linkman_id" in inspect(k.model).columns]


def _naming_rows(session: Session, kind: customer_records.RecordKind, contact: Linkman) -> list[Any]:
    model: Any = kind.model
    return list(session.execute(
        select(model).where(model.customer_id == contact.customer_id, model.linkman_id == contact.id)
        .order_by(model.id)
    ).scalars())


def _row_dict(obj: Any) -> dict[str, Any]:
    return {attr.key: _plain(getattr(obj, attr.key)) for attr in inspect(obj).mapper.column_attrs}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# ----- what is held ------------------------------------------------------------------------------

@dataclass
class Holding:
    """Everything held about one contact."""

    contact: dict[str, Any]
    customer: dict[str, Any]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind label → rows
    audit: list[dict[str, Any]] = field(default_factory=list)
    anonymised: bool = False

    def counts(self) -> list[tuple[str, int]]:
        return [(label, len(rows)) for label, rows in self.records.items()]


def holding(session: Session, principal: Principal, linkman_id: int, *, action: str = "export") -> Holding:
    """What the system holds about contact ``linkman_id`` (within the scope of ``personal_data`` /
    ``action``; another's contact is not found)."""
    contact = _contact(session, principal, linkman_id, action)
    customer = session.get(Customer, contact.customer_id)
    held = Holding(contact=_row_dict(contact),
                   customer={"id": contact.customer_id, "code": getattr(customer, "code", ""),
                             "name": getattr(customer, "name", "")},
                   anonymised=is_anonymised(contact))
    about: list[tuple[str, list[str]]] = [("linkman", [str(contact.id)])]
    for kind in _naming_kinds():
        rows = _naming_rows(session, kind, contact)
        held.records[kind.label] = [_row_dict(r) for r in rows]
        if rows:
            about.append((audit.resource_of(kind.model), [str(r.id) for r in rows]))
    table = Base.metadata.tables["audit_log"]
    condition = or_(*(
        (table.c.resource == resource) & table.c.resource_id.in_(ids) for resource, ids in about
    ))
    for row in session.execute(
        select(table.c.occurred_at, table.c.username, table.c.action, table.c.resource, table.c.resource_id,
               table.c.changes, table.c.detail).where(condition).order_by(table.c.id.desc()).limit(AUDIT_LIMIT)
    ).mappings():
        held.audit.append({k: _plain(v) for k, v in row.items()})
    return held


def export_subject(session: Session, principal: Principal, linkman_id: int, fmt: str) -> tuple[bytes, str, str]:
    """The contact's data as a download: (content, media type, file name); audited in the caller's
    transaction (the audit row names the contact and the format, not the data)."""
    if fmt not in ("json", "xlsx"):
        raise UserError("导出格式只能是 JSON 或 Excel。")
    held = holding(session, principal, linkman_id)
    stamp = local_now().strftime("%Y%m%d-%H%M%S")
    name = f"联系人{linkman_id}-个人信息-{stamp}.{fmt}"
    if fmt == "json":
        body = {"exported_at": local_now().isoformat(timespec="seconds"), "contact": held.contact,
                "customer": held.customer, "records": held.records, "audit": held.audit}
        content = json.dumps(body, ensure_ascii=False, indent=2, default=str).encode("utf-8")
        media = "application/json; charset=utf-8"
    else:
        content = _workbook(held)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    audit.record(session, SUBJECT_EXPORT, resource="linkman", resource_id=linkman_id,
                 changes={"format": fmt, "records": dict(held.counts()), "audit_rows": len(held.audit)},
                 detail=f"个人信息主体请求:导出联系人 #{linkman_id} 的全部个人信息({fmt})")
    return content, media, name


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@")):
        return "'" + value  # inert in a spreadsheet
    return value


def _workbook(held: Holding) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)

    def sheet(title: str, rows: list[dict[str, Any]]) -> None:
        ws = book.create_sheet(title=title[:31])
        headers: list[str] = list(rows[0]) if rows else []
        if headers:
            ws.append(headers)
        for row in rows:
            ws.append([_cell(row.get(h)) for h in headers])

    sheet("联系人", [{**held.contact, "customer_code": held.customer["code"], "customer_name": held.customer["name"]}])
    for label, rows in held.records.items():
        sheet(label, rows)
    sheet("审计记录", held.audit)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ----- erasing -----------------------------------------------------------------------------------

@dataclass
class Erasure:
    fields: list[str]
    records: dict[str, int]  # kind label → rows whose text named the contact


def _text_columns(model: Any) -> list[str]:
    return [c.key for c in inspect(model).columns
            if isinstance(c.type, Text) or (isinstance(c.type, String) and (c.type.length or 0) >= 255)]


def _scrub(text: str | None, needles: list[tuple[str, str]]) -> str | None:
    if not text:
        return text
    for needle, replacement in needles:
        text = text.replace(needle, replacement)
    return text


def _needles(contact: Linkman) -> list[tuple[str, str]]:
    """What is replaced in the texts of the records that name the contact: the name (two characters
    or more: one character would hit unrelated words), the phones and the e-mail address."""
    found: list[tuple[str, str]] = []
    if contact.name and len(contact.name) >= 2:
        found.append((contact.name, anonymous_name(contact.id)))
    found += [(value, REPLACED) for value in (contact.mobile, contact.phone, contact.email) if value and len(value) >= 4]
    return sorted(found, key=lambda pair: -len(pair[0]))  # the longer first ("张三丰" before "张三")


def erase_subject(session: Session, principal: Principal, linkman_id: int, confirm_name: str) -> Erasure:
    """Anonymise contact ``linkman_id`` (see the module's description); irreversible. The person must
    type the contact's name to confirm. Audited by one row without the erased values."""
    contact = _contact(session, principal, linkman_id, "delete", lock=True)
    if is_anonymised(contact):
        raise UserError("该联系人的个人信息已经匿名化,无需再次处理。")
    if confirm_name.strip() != contact.name:
        raise UserError("请输入联系人的完整姓名以确认匿名化。", field="confirm_name")
    needles = _needles(contact)
    cleared = [name for name in ERASED_FIELDS if getattr(contact, name) not in (None, "")]
    scrubbed: dict[str, int] = {}
    # the row-level audit would copy the erased values into the log: this one writes its own row instead
    session.info[audit.INFO_SILENT] = True
    try:
        for kind in _naming_kinds():
            columns = _text_columns(kind.model)
            touched = 0
            for row in _naming_rows(session, kind, contact):
                changed = False
                for column in columns:
                    before = getattr(row, column)
                    after = _scrub(before, needles)
                    if after != before:
                        setattr(row, column, after)
                        changed = True
                touched += changed
            if touched:
                scrubbed[kind.label] = touched
        contact.name = anonymous_name(contact.id)
        for name in ERASED_FIELDS[1:]:
            setattr(contact, name, None)
        contact.birthday_md = None
        session.flush()
    finally:
        session.info.pop(audit.INFO_SILENT, None)
    audit.record(session, ERASE, resource="linkman", resource_id=linkman_id,
                 changes={"fields": cleared, "records": scrubbed},
                 detail=f"个人信息主体请求:联系人 #{linkman_id} 的个人信息已匿名化(不可恢复)")
    return Erasure(cleared, scrubbed)


def summary_rows(held: Holding) -> Iterator[tuple[str, int]]:
    """What the request page lists before anything is exported or erased."""
    yield "联系人", 1
    yield from held.counts()
    yield "审计记录", len(held.audit)
