"""Customers: one true record per company.

Plain functions over a session the caller owns (services never commit): code generation, name
normalisation and duplicate detection, validation, delete blockers, merge.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import get_history

from crm_admin.accounts.models import SysMeta, SysUser
from crm_admin.core import audit, customer_records, recycling, search
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.formatting import local_now
from crm_admin.core.i18n import tr
from crm_admin.core.params import parse_id, parse_int
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope, scoped, sees_user
from crm_admin.customers.codes import credit_code_error, normalize_credit_code
from crm_admin.customers.models import CUSTOMER_STATUSES, STATUS_LABELS, Customer, follow_customers
from crm_admin.db import utcnow
from crm_admin.dictionary.service import is_valid

# ----- codes ---------------------------------------------------------------------------------

CODE_PREFIX = "C"


def _local_month() -> str:
    return local_now().strftime("%Y%m")


def allocate_sequence(conn: Connection, key: str, count: int = 1) -> int:
    """Reserve ``count`` numbers of the counter ``key``; returns the first one.

    The counter is a ``sys_meta`` row bumped with ``UPDATE … SET value = value + n``: the row lock
    serialises concurrent writers until their transaction ends, so no two get the same numbers.
    """
    meta = SysMeta.metadata.tables["sys_meta"]
    for _attempt in range(3):
        updated = conn.execute(
            update(meta).where(meta.c.key == key).values(value=meta.c.value + count)
        ).rowcount
        if updated:
            last = int(conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one())
            return last - count + 1
        try:
            with conn.begin_nested():
                conn.execute(meta.insert().values(key=key, value=count))
            return 1
        except IntegrityError:  # another transaction created the counter first: bump it instead
            continue
    raise Conflict("生成客户编号时发生冲突,请重试。")


def next_customer_codes(session: Session, count: int = 1) -> list[str]:
    """Codes such as C2026110001: prefix, year and month (Asia/Shanghai), a per-month sequence."""
    month = _local_month()
    first = allocate_sequence(session.connection(), f"seq:customer:{month}", count)
    return [f"{CODE_PREFIX}{month}{n:04d}" for n in range(first, first + count)]


# ----- normalisation -------------------------------------------------------------------------

# Legal-form suffixes stripped (longest first) before comparing names.
_SUFFIXES = (
    "股份有限公司", "有限责任公司", "集团有限公司", "有限公司", "集团公司", "总公司", "分公司", "集团", "公司",
    "corporationlimited", "companylimited", "colimited", "coltd", "limited", "ltd", "inc", "corp",
    "corporation", "company", "co", "llc", "gmbh",
)
_BRACKETS = re.compile(r"[((\[【][^))\]】]{0,12}[))\]】]")
_NOISE = re.compile(r"[\s\.,,。·・&'\"“”‘’\-_/]+")


def name_key(name: str | None) -> str:
    """Normalised company name for duplicate detection.

    Full/half width and case folded, spaces and punctuation removed, bracketed inserts such as
    (中国) or (北京) removed, and legal-form suffixes (有限公司, 股份有限公司, 集团, Co., Ltd…) stripped.
    """
    if not name:
        return ""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _BRACKETS.sub("", text)
    text = _NOISE.sub("", text)
    changed = True
    while changed and text:
        changed = False
        for suffix in _SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)]
                changed = True
                break
    return text[:128]


def normalize_phone(phone: str | None) -> str:
    """Digits only (full-width folded); a +86/0086 country prefix removed."""
    if not phone:
        return ""
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", phone) if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 11:
            digits = digits[len(prefix):]
    return digits


MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
# What a written phone number may contain (digits, a leading +, spaces, hyphens, parentheses), and an
# extension after it ("转 123", "分机 8", "ext. 45", "#6", or "-123" after a complete landline).
_PHONE_CHARS = re.compile(r"^\+?[\d\s\-()]+$")
_EXTENSION = re.compile(r"\s*(?:转|分机|ext\.?|x|#)\s*\d{1,6}$", re.IGNORECASE)
_DASH_EXTENSION = re.compile(r"^(0\d{2,3}[\s\-]?\d{7,8})[\s\-]\d{1,6}$")
_SERVICE_NUMBER = re.compile(r"^[48]00\d{7}$")  # 400 / 800 numbers
# an area code (010, 02x, or 0 + three digits from 3–9) and a 7–8 digit number
_WITH_AREA_CODE = re.compile(r"^(?:010|02\d|0[3-9]\d{2})\d{7,8}$")
_LOCAL_NUMBER = re.compile(r"^[2-9]\d{6,7}$")  # a landline without its area code
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
WEBSITE_RE = re.compile(r"^(https?://)?[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+(:\d+)?(/\S*)?$")


def clean(value: Any) -> str | None:
    """Form/spreadsheet text: NFKC-folded spaces trimmed; empty becomes None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def is_phone(value: str) -> bool:
    """A Chinese mobile (11 digits from 13–19) or landline (area code + 7–8 digits, or a local number),
    a 400/800 number, or a foreign number written with its + country code; an extension may follow.

    A number starting with 1 is a mobile and must have all 11 digits: ``1380013800`` (one missing) is
    refused rather than taken for a landline.
    """
    text = _EXTENSION.sub("", unicodedata.normalize("NFKC", value).strip())
    dashed = _DASH_EXTENSION.match(text)
    if dashed:
        text = dashed.group(1)
    if not _PHONE_CHARS.match(text):
        return False
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("+") and not text.startswith("+86"):
        return 7 <= len(digits) <= 15  # another country's number: E.164 allows at most 15 digits
    national = digits
    if text.startswith("+86"):
        national = digits[2:]
    elif digits.startswith("0086"):
        national = digits[4:]
    if MOBILE_RE.match(national):
        return True
    if national != digits and not national.startswith("0"):
        national = "0" + national  # "+86 10 …": the area code's 0 is dropped after the country code
    if national.startswith("1"):
        return False  # a mobile number with digits missing or too many
    return bool(_SERVICE_NUMBER.match(national) or _WITH_AREA_CODE.match(national)
                or _LOCAL_NUMBER.match(national))


def is_email(value: str) -> bool:
    return bool(EMAIL_RE.match(unicodedata.normalize("NFKC", value).strip()))


# ----- validation ----------------------------------------------------------------------------

_LENGTHS = {"name": 128, "region": 64, "address": 255, "phone": 32, "email": 128, "website": 255}
DICT_FIELDS = {"industry": "industry", "source": "customer_source", "level": "customer_level"}
FIELD_LABELS = {
    "name": "客户名称", "credit_code": "统一社会信用代码", "industry": "行业", "source": "客户来源",
    "level": "客户等级", "status": "状态", "region": "地区", "address": "地址", "phone": "电话",
    "email": "邮箱", "website": "网站",
}


def validate_customer(obj: Any, *, previous: dict[str, Any] | None = None) -> None:
    """Check and normalise a customer before it is saved (raises UserError with the field)."""

    for key in ("name", "region", "address", "phone", "email", "website", "remark", "credit_code"):
        setattr(obj, key, clean(getattr(obj, key)))
    if not obj.name:
        raise UserError("客户名称不能为空。", field="name")
    for key, limit in _LENGTHS.items():
        value = getattr(obj, key)
        if value and len(value) > limit:
            raise UserError(f"{FIELD_LABELS[key]}不能超过 {limit} 个字符。", field=key)
    if obj.credit_code:
        problem = credit_code_error(obj.credit_code)
        if problem:
            raise UserError(problem, field="credit_code")
        obj.credit_code = normalize_credit_code(obj.credit_code)
    obj.status = obj.status or "potential"
    if obj.status not in CUSTOMER_STATUSES:
        raise UserError("客户状态无效。", field="status")
    for key, dict_type in DICT_FIELDS.items():
        value = clean(getattr(obj, key))
        setattr(obj, key, value)
        current = (previous or {}).get(key)
        if value and not is_valid(dict_type, value, current=current):
            raise UserError(f"{FIELD_LABELS[key]}“{value}”不是有效的选项。", field=key)
    if obj.phone and not is_phone(obj.phone):
        raise UserError("电话格式不正确(手机号 11 位,座机如 010-12345678)。", field="phone")
    if obj.email and not is_email(obj.email):
        raise UserError("邮箱格式不正确。", field="email")
    if obj.website and not WEBSITE_RE.match(obj.website):
        raise UserError("网站地址格式不正确。", field="website")
    obj.name_key = name_key(obj.name)


# Fields whose change makes a save look for duplicates again
WATCHED_FIELDS = ("name", "phone", "credit_code")


def before_save(session: Session, principal: Principal, obj: Customer, *, is_created: bool,
                duplicates_checked: bool = False) -> None:
    """What every save of a customer goes through, in the caller's transaction — the customer form and
    an import that updates existing customers alike: a changed manager hands the open work over as a
    transfer does; the values are checked and normalised (``validate_customer``; a disabled dictionary
    value the customer already had may stay); a new customer gets its code; a new or renamed customer
    (name, phone, credit code) must not duplicate another one. ``duplicates_checked``: the caller has
    looked for duplicates of many customers at once (an import, in batches).

    The caller has set the new values on ``obj`` (a loaded row: ``version`` guards the update); the
    audit row (field-level diff) is written by the flush."""
    previous: dict[str, Any] = {}
    watched = False
    if not is_created:
        for key in ("industry", "source", "level", *WATCHED_FIELDS):
            hist = get_history(obj, key)
            previous[key] = hist.deleted[0] if hist.deleted else getattr(obj, key)
            if key in WATCHED_FIELDS:
                watched = watched or bool(hist.added and hist.deleted and hist.added[0] != hist.deleted[0])
        hand_over_if_reassigned(session, principal, obj)
    validate_customer(obj, previous=previous)
    if is_created:
        obj.code = next_customer_codes(session)[0]
    if not duplicates_checked and (is_created or watched):
        check_duplicates(session, obj, principal)


def hand_over_if_reassigned(session: Session, principal: Principal, obj: Customer) -> None:
    """A new manager set on a customer (by someone who may assign): the open work follows and the
    change is recorded as a transfer, as on the transfer page."""
    hist = get_history(obj, "manager_id")
    if not hist.added:
        return
    before = hist.deleted[0] if hist.deleted else None
    after = int(obj.manager_id) if obj.manager_id not in (None, "") else None
    if after == before:
        return
    if obj.pool_id is not None:
        # a customer in a public pool leaves it by a claim or an assignment (their limits, the pool's log)
        raise UserError("该客户在公海中,请到公海页面领取或分配。", field="manager")
    user = session.get(SysUser, after) if after is not None else None
    if after is not None and user is None:
        raise UserError("所选的客户经理不存在。", field="manager")
    customer_records.manager_changed(session, principal, obj, before, user)


# ----- duplicates ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DuplicateMatch:
    kind: str  # credit_code / name / phone
    customer_id: int
    manager_name: str
    visible: bool  # within the asking user's scope: name and code may be shown
    name: str
    code: str

    def describe(self) -> str:
        what = {"credit_code": "统一社会信用代码相同", "name": "名称相同或相近", "phone": "电话相同"}[self.kind]
        who = f"由 {self.manager_name} 负责" if self.manager_name else "尚未分配客户经理"
        if self.visible:
            return f"{what}:{self.name}({self.code},{who})"
        # another manager's customer: only that a match exists and who manages it
        return f"{what}的客户已存在({who})"


def find_duplicates(
    session: Session,
    principal: Principal | None,
    *,
    name: str | None = None,
    phone: str | None = None,
    credit_code: str | None = None,
    exclude_id: int | None = None,
    limit: int = 5,
) -> list[DuplicateMatch]:
    """Customers (in the whole database, whoever manages them) that look like the same company."""
    conditions = []
    key = name_key(name)
    if key:
        conditions.append(Customer.name_key == key)
    digits = normalize_phone(phone)
    phone_values = {v for v in (phone, digits) if v}
    if phone_values:
        conditions.append(Customer.phone.in_(sorted(phone_values)))
    code = normalize_credit_code(credit_code) if credit_code else ""
    if code:
        conditions.append(Customer.credit_code == code)
    if not conditions:
        return []
    stmt = (
        select(Customer.id, Customer.name, Customer.code, Customer.name_key, Customer.phone,
               Customer.credit_code, Customer.manager_id, SysUser.real_name, SysUser.username)
        .outerjoin(SysUser, SysUser.id == Customer.manager_id)
        .where(or_(*conditions))
        .limit(limit)
    )
    if exclude_id is not None:
        stmt = stmt.where(Customer.id != exclude_id)
    out = []
    for row in session.execute(stmt):
        if code and row.credit_code == code:
            kind = "credit_code"
        elif key and row.name_key == key:
            kind = "name"
        else:
            kind = "phone"
        visible = principal is None or sees_user(principal, row.manager_id, "customer", "view")
        out.append(DuplicateMatch(kind, row.id, row.real_name or row.username or "", visible,
                                  row.name, row.code))
    order = {"credit_code": 0, "name": 1, "phone": 2}
    return sorted(out, key=lambda m: order[m.kind])


def duplicate_error(matches: list[DuplicateMatch]) -> UserError:
    first = matches[0]
    field = {"credit_code": "credit_code", "name": "name", "phone": "phone"}[first.kind]
    lines = ";".join(m.describe() for m in matches[:3])
    return UserError(f"疑似重复客户:{lines}。请勿重复建档,如需接手请联系其负责人或管理员。", field=field)


def check_duplicates(session: Session, obj: Customer, principal: Principal | None) -> None:
    matches = find_duplicates(
        session, principal, name=obj.name, phone=obj.phone, credit_code=obj.credit_code,
        exclude_id=obj.id,
    )
    if matches:
        raise duplicate_error(matches)


# ----- delete and merge ----------------------------------------------------------------------
# What hangs off a customer is whatever the modules register in ``core.customer_records``: this
# module deletes, merges and hands over a customer without knowing which modules exist.

def dependent_counts(session: Session, customer_id: int) -> list[tuple[str, int]]:
    """(unit, rows) of every kind of record that blocks a plain delete: [("个联系人", 2), …]."""
    return [(k.unit, n) for k, n in customer_records.count_rows(session, customer_id)]


def delete_blocker_message(customer: Customer, counts: list[tuple[str, int]]) -> str:
    parts = "、".join(f"{n} {unit}" for unit, n in counts)
    return (f"无法删除客户“{customer.name}”:仍有 {parts}。请先处理这些数据,"
            f"或在客户 360° 页面选择“连同关联数据一起删除”。")


def delete_customer(session: Session, customer: Customer, *, cascade: bool = False) -> list[tuple[str, int]]:
    """Delete ``customer``; with dependents only when ``cascade`` is chosen explicitly (audited row by row).
    A copy of everything deleted goes to the recycle bin first (``core.recycling``). A merge deletes the
    merged customer without it: its records live on, moved to the kept customer."""
    counts = dependent_counts(session, customer.id)
    if counts and not cascade:
        raise UserError(delete_blocker_message(customer, counts))
    recycling.before_delete(session, customer)  # the customer and every row that goes with it: kept in the bin
    customer_records.delete_records(session, customer.id)  # kinds that do not block go with the customer
    session.delete(customer)
    session.flush()
    return counts


# Refusals of the merge, marked for the English catalog (``_`` only marks; the page translates).
def _(text: str) -> str:
    return text


MERGE_KEEP_NOT_FOUND = _("找不到要保留的客户:请检查客户编号,或从列表中重新选择。")
MERGE_DROP_NOT_FOUND = _("找不到要合并掉的客户:请检查客户编号,或从列表中重新选择。")
MERGE_SAME = _("保留客户和被合并客户是同一个客户:请选择两个不同的客户。")
MERGE_CHOOSE_BOTH = _("请选择要保留的客户和要合并掉的客户。")
MERGE_STALE = _("自您打开预览以来,这两个客户的资料或关联记录已有变化,尚未合并。请核对下面最新的预览后再确认。")
MERGE_FORBIDDEN = _("您没有合并客户的权限。")
MERGE_IN_POOL = _("客户“{name}”({code})在公海中,不能合并:请先领取或分配给客户经理,再合并。")

# Fields of the kept customer that a merge fills from the dropped one when they are empty on the kept one
MERGE_FILLED_FIELDS = ("credit_code", "industry", "source", "level", "region", "address", "phone", "email",
                       "website", "remark")
# Times of which the kept customer takes the later one
MERGE_LATEST_FIELDS = ("last_contact_at", "last_order_at")


def merge_ref(session: Session, principal: Principal, text: str | None, *, missing: str) -> int:
    """The customer a merge form names, by id (the picker) or code (typed), within the user's scope for
    ``customer`` / ``merge``. A customer outside that scope is answered exactly as one that does not
    exist (the same ``missing`` message)."""
    text = (text or "").strip()[:64]
    if not text:
        raise UserError(MERGE_CHOOSE_BOTH)
    pk = parse_id(text)
    condition = Customer.id == pk if pk is not None else Customer.code == text.upper()
    found = session.execute(
        scoped(select(Customer.id).where(condition), Customer, principal, "merge")
    ).scalar()
    if found is None:
        raise NotFound(missing)
    return int(found)


def merge_candidates(session: Session, principal: Principal, term: str, *, limit: int = 20) -> list[tuple[int, str]]:
    """(id, "code name") of the customers the user may merge that ``term`` finds (any part of the name,
    its pinyin, digits, a code's start — as the list's search): the merge page's pickers."""
    found = search.match(session.connection(), Customer, term)
    if found is None:
        return []
    stmt = scoped(select(Customer.id, Customer.code, Customer.name), Customer, principal, "merge").where(found)
    rows = session.execute(stmt.order_by(Customer.name, Customer.id).limit(limit)).all()
    return [(r.id, f"{r.code} {r.name}") for r in rows]


@dataclass(frozen=True)
class MergeState:
    """What a preview showed, checked again at the confirmation: both versions and the records that move."""

    keep_version: int
    drop_version: int
    records: str  # "linkman=2,follow_up=1": rows per kind of both customers

    @classmethod
    def parse(cls, keep_version: Any, drop_version: Any, records: Any) -> MergeState | None:
        kv, dv = parse_int(keep_version), parse_int(drop_version)
        if kv is None or dv is None:
            return None
        return cls(kv, dv, str(records or "")[:2000])


@dataclass(frozen=True)
class MergeRecords:
    kind: customer_records.RecordKind
    kept: int  # rows the kept customer has
    moving: int  # rows of the dropped customer that move onto it


@dataclass(frozen=True)
class MergePlan:
    """What a merge of ``drop`` into ``keep`` does, as the preview shows it and the merge does it."""

    keep: Customer
    drop: Customer
    records: list[MergeRecords]  # every registered kind, in page order
    filled: dict[str, Any]  # field → the dropped customer's value, written into the kept customer's blank
    later: dict[str, Any]  # last contact / order: the dropped customer's later time

    @property
    def state(self) -> MergeState:
        counts = ",".join(f"{r.kind.key}={r.kept}+{r.moving}" for r in self.records)
        return MergeState(self.keep.version, self.drop.version, counts)

    @property
    def moving_total(self) -> int:
        return sum(r.moving for r in self.records)


def merged_values(keep: Customer, drop: Customer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(blank fields of ``keep`` filled from ``drop``, times where ``drop``'s is later): all that a merge
    changes on the kept customer; every other value of the kept customer stays as it is."""
    filled = {key: getattr(drop, key) for key in MERGE_FILLED_FIELDS
              if getattr(keep, key) in (None, "") and getattr(drop, key) not in (None, "")}
    later = {key: getattr(drop, key) for key in MERGE_LATEST_FIELDS
             if getattr(drop, key) is not None and (getattr(keep, key) is None
                                                     or _utc(getattr(keep, key)) < _utc(getattr(drop, key)))}
    return filled, later


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def plan_merge(session: Session, principal: Principal, *, keep_id: int, drop_id: int,
               lock: bool = False) -> MergePlan:
    """Check a merge (``customer`` / ``merge``; two different customers, both existing and within the
    user's scope for merging) and work out what it does, changing nothing. ``lock``: the merge itself
    holds both rows until its transaction ends."""
    if not principal.can("customer", "merge"):
        raise Forbidden(MERGE_FORBIDDEN)
    if keep_id == drop_id:
        raise UserError(MERGE_SAME)
    # both rows locked in id order, so that two merges of the same pair cannot wait on each other
    found = {pk: session.get(Customer, pk, with_for_update=lock, populate_existing=lock)
             for pk in sorted((keep_id, drop_id))}
    for pk, missing in ((keep_id, MERGE_KEEP_NOT_FOUND), (drop_id, MERGE_DROP_NOT_FOUND)):
        if found[pk] is None or not in_scope(session, Customer, pk, principal, "merge"):
            raise NotFound(missing)
    keep, drop = found[keep_id], found[drop_id]
    assert keep is not None and drop is not None
    for customer in (keep, drop):
        # a customer in a public pool has no manager: merging it would move a pooled customer's records
        # onto someone's customer without a claim (past the pool's limits and log), or hand a customer's
        # records to nobody. It leaves the pool by a claim or an assignment first.
        if customer.pool_id is not None:
            raise UserError(tr(MERGE_IN_POOL).format(name=customer.name, code=customer.code))
    kept_rows = customer_records.rows_per_kind(session, keep_id)
    moving_rows = dict((k.key, n) for k, n in customer_records.rows_per_kind(session, drop_id))
    records = [MergeRecords(k, n, moving_rows.get(k.key, 0)) for k, n in kept_rows]
    filled, later = merged_values(keep, drop)
    return MergePlan(keep, drop, records, filled, later)


class StaleMerge(Conflict):
    """The customers changed since the preview the user confirmed: nothing was merged."""

    def __init__(self) -> None:
        super().__init__(MERGE_STALE)


def merge_customers(session: Session, principal: Principal, *, keep_id: int, drop_id: int,
                    expected: MergeState | None = None) -> dict[str, int]:
    """Move every record hanging off ``drop_id`` onto ``keep_id`` and delete ``drop_id`` (``customer`` /
    ``merge``; both customers within the user's scope).

    ``expected``: what the confirmed preview showed; if either customer or their records changed since,
    ``StaleMerge`` is raised before anything is changed. Empty fields of the kept customer are filled
    from the dropped one (``merged_values``); the whole move is one transaction with a ``merge`` audit
    row listing what moved, per kind of record.
    """
    plan = plan_merge(session, principal, keep_id=keep_id, drop_id=drop_id, lock=True)
    if expected is not None and plan.state != expected:
        raise StaleMerge()
    keep, drop = plan.keep, plan.drop
    moved = customer_records.merge_records(session, keep_id, drop_id)
    follow_customers(session.connection(), [keep_id])  # the moved rows carry the kept customer's manager
    filled = dict(plan.filled)
    for key, value in plan.later.items():
        setattr(keep, key, value)
    # what was open on the dropped customer is now the kept customer's manager's to do
    handed = customer_records.hand_over_open_work(session, [keep_id], keep.manager_id, utcnow())
    moved.update({f"{key}_handed_over": n for key, n in handed.items() if n})
    drop_summary = {"id": drop.id, "code": drop.code, "name": drop.name, "manager_id": drop.manager_id}
    credit = filled.pop("credit_code", None)
    session.delete(drop)
    session.flush()  # the dropped row (and its unique credit code) is gone before the kept one takes it
    for key, value in filled.items():
        setattr(keep, key, value)
    if credit:
        keep.credit_code = credit
    session.flush()
    audit.record(
        session, "merge", resource="customer", resource_id=keep.id,
        changes={"merged": drop_summary, "moved": moved, "filled": sorted([*filled, *(["credit_code"] if credit else [])])},
        detail=f"客户“{drop_summary['name']}”({drop_summary['code']})合并入“{keep.name}”({keep.code})",
    )
    return moved


def _move_forward(session: Session, customer_id: int, column: Any, when: dt.datetime) -> None:
    """Set the customer's ``column`` to ``when`` unless it is already as late, in the caller's transaction."""
    session.execute(
        update(Customer)
        .where(Customer.id == customer_id, or_(column.is_(None), column < when))
        .values({column: when})
        .execution_options(synchronize_session=False)
    )


def touch_last_contact(session: Session, customer_id: int, when: dt.datetime) -> None:
    """Move ``customer.last_contact_at`` forward (never back) in the caller's transaction."""
    _move_forward(session, customer_id, Customer.last_contact_at, when)


def touch_last_order(session: Session, customer_id: int, when: dt.datetime) -> None:
    _move_forward(session, customer_id, Customer.last_order_at, when)


def status_label(value: str | None) -> str:
    return STATUS_LABELS.get(value or "", value or "")


def manager_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = session.execute(select(SysUser.id, SysUser.real_name, SysUser.username).where(SysUser.id.in_(wanted)))
    return {r.id: r.real_name or r.username for r in rows}


def now() -> dt.datetime:
    return utcnow()
