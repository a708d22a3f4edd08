"""Contacts (联系人): validation, one primary contact per customer, birthday month-day kept in step."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope, scoped, sees_several_users
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.customers.service import MOBILE_RE, clean, is_email, is_phone, normalize_phone
from crm_admin.db import utcnow

GENDERS = Labels({"male": "男", "female": "女"})
GENDER_VALUES = {"男": "male", "女": "female", "male": "male", "female": "female", "m": "male", "f": "female"}
_LENGTHS = {"name": (64, "姓名"), "position": (64, "职位"), "phone": (32, "电话"), "mobile": (32, "手机"),
            "email": (128, "邮箱")}


def birthday_md(birthday: dt.date | None) -> int | None:
    """month * 100 + day, indexed for the daily birthday scan."""
    return birthday.month * 100 + birthday.day if birthday else None


def validate_linkman(obj: Any) -> None:
    for key in ("name", "position", "phone", "mobile", "email", "remark"):
        setattr(obj, key, clean(getattr(obj, key)))
    if not obj.name:
        raise UserError("联系人姓名不能为空。", field="name")
    for key, (limit, label) in _LENGTHS.items():
        value = getattr(obj, key)
        if value and len(value) > limit:
            raise UserError(f"{label}不能超过 {limit} 个字符。", field=key)
    if obj.gender:
        gender = GENDER_VALUES.get(str(obj.gender).strip().lower())
        if gender is None:
            raise UserError("性别只能是“男”或“女”。", field="gender")
        obj.gender = gender
    else:
        obj.gender = None
    if obj.mobile:
        digits = normalize_phone(obj.mobile)
        if not MOBILE_RE.match(digits):
            raise UserError("手机号格式不正确:应为 1 开头的 11 位数字(第二位 3–9)。", field="mobile")
        obj.mobile = digits
    if obj.phone and not is_phone(obj.phone):
        raise UserError("电话格式不正确(如 010-12345678 或手机号)。", field="phone")
    if obj.email and not is_email(obj.email):
        raise UserError("邮箱格式不正确。", field="email")
    if obj.birthday is not None and (obj.birthday > dt.date.today() or obj.birthday.year < 1900):
        raise UserError("生日不合理,请检查。", field="birthday")
    obj.birthday_md = birthday_md(obj.birthday)
    obj.is_primary = bool(obj.is_primary)


def keep_single_primary(session: Session, obj: Linkman) -> None:
    """At most one primary contact per customer: marking one primary unmarks the others.

    Done through the ORM so each unmarked contact gets its own audit row; the customer row is
    written first so two contacts marked primary at the same moment cannot both win. Written, not
    only locked (``SELECT … FOR UPDATE``): on a cluster a row lock holds on one node only, while
    two transactions writing the same row conflict on every node — the later commit fails as a
    deadlock, is run again (crm_admin/retry.py), and then sees the other's primary contact.
    """
    if not obj.is_primary or obj.customer_id is None:
        return
    customers: Any = Customer.__table__
    session.execute(update(customers).where(customers.c.id == obj.customer_id).values(updated_at=utcnow()))
    stmt = select(Linkman).where(Linkman.customer_id == obj.customer_id, Linkman.is_primary.is_(True))
    if obj.id is not None:
        stmt = stmt.where(Linkman.id != obj.id)
    for other in session.execute(stmt).scalars():
        other.is_primary = False


def check_linkman_of(session: Session, customer_id: int, linkman_id: int | None, *, field: str) -> None:
    """A chosen contact must be one of the customer's (a picker offers only those; a posted id is
    checked all the same; none chosen is fine)."""
    if linkman_id is not None:
        belongs = session.execute(
            select(Linkman.id).where(Linkman.id == linkman_id, Linkman.customer_id == customer_id)
        ).first()
        if belongs is None:
            raise UserError("所选联系人不属于该客户。", field=field)


def create_linkman(session: Session, principal: Principal, *, customer_id: int, **fields: Any) -> Linkman:
    if not in_scope(session, Customer, customer_id, principal, "create", resource="linkman"):
        raise NotFound("客户不存在或您无权访问。")
    obj = Linkman(customer_id=customer_id, **fields)
    validate_linkman(obj)
    keep_single_primary(session, obj)
    session.add(obj)
    session.flush()
    return obj


# ----- birthdays -------------------------------------------------------------------------------

def birthday_keys(today: dt.date) -> list[int]:
    """The ``birthday_md`` values celebrated on ``today``: 29 February falls on 28 February in common years."""
    keys = [today.month * 100 + today.day]
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        keys.append(229)
    return keys


def upcoming_birthday_keys(today: dt.date, days: int) -> list[int]:
    """The ``birthday_md`` values celebrated from ``today`` through the next ``days`` days, in that order."""
    keys: list[int] = []
    for n in range(days + 1):
        for key in birthday_keys(today + dt.timedelta(days=n)):
            if key not in keys:
                keys.append(key)
    return keys


def upcoming_birthday_order(today: dt.date) -> ColumnElement[int]:
    """Sort key: birthdays still to come this year first (in date order), then next year's."""
    md = today.month * 100 + today.day
    return case((Linkman.birthday_md >= md, Linkman.birthday_md), else_=Linkman.birthday_md + 1300)


@dataclass(frozen=True)
class UpcomingBirthday:
    linkman_id: int
    name: str
    customer_id: int
    customer: str
    birthday: dt.date
    days_left: int  # 0: today


def _days_until(birthday: dt.date, today: dt.date) -> int:
    for n in range(367):
        if birthday.month * 100 + birthday.day in birthday_keys(today + dt.timedelta(days=n)):
            return n
    return 366


def upcoming_birthdays(session: Session, principal: Principal, today: dt.date, *, days: int = 7,
                       manager_id: int | None = None, limit: int = 20) -> list[UpcomingBirthday]:
    """Contacts of customers in scope whose birthday falls within ``days`` days, soonest first.

    One manager's contacts are few: one statement sorts them. A wide scope (a department, everyone) has
    thousands of contacts celebrating that week; sorting them all to keep ``limit`` cost 30-60 ms at
    200,000 customers. There the days are read one after the other, each in the order of the
    ``birthday_md`` index (ties by id), until ``limit`` are found: usually the first day is enough.
    """
    keys = upcoming_birthday_keys(today, days)
    stmt = (select(Linkman.id, Linkman.name, Linkman.birthday, Customer.id, Customer.name)
            .join(Customer, Customer.id == Linkman.customer_id)
            .where(Customer.status != "lost"))
    if manager_id is not None:
        stmt = stmt.where(Customer.manager_id == manager_id)
    stmt = scoped(stmt, Linkman, principal, "list")
    if manager_id is None and sees_several_users(principal, "linkman", "list"):
        rows: list[Any] = []
        for key in keys:  # in calendar order from today; ties within a day by id, as below
            rows += session.execute(stmt.where(Linkman.birthday_md == key).order_by(Linkman.id)
                                    .limit(limit - len(rows))).all()
            if len(rows) >= limit:
                break
    else:
        # and by the manager each contact carries: a manager's contacts of the week are a few ranges of
        # the (customer_manager_id, birthday_md) index, not every contact of the manager's customers
        stmt = by_customer_manager(stmt, Linkman, principal, "list")
        if manager_id is not None:
            stmt = stmt.where(Linkman.customer_manager_id == manager_id)
        rows = list(session.execute(stmt.where(Linkman.birthday_md.in_(keys))
                                    .order_by(upcoming_birthday_order(today), Linkman.id).limit(limit)).all())
    return [UpcomingBirthday(lid, name, cid, customer, birthday, _days_until(birthday, today))
            for lid, name, birthday, cid, customer in rows if birthday is not None]
