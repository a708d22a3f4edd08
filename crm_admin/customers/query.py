"""The combined customer query (多条件组合查询): URL parameters → SQL conditions.

Everything lives in the query string so a query can be bookmarked, shared and saved. Text search
finds any part of the name, its pinyin or initials, any 4+ digits of the phone or code, and the start
of a code or credit code, through the search index (``core/search.py``). The conditions are added to
the view's scoped statement, so they only ever narrow what the user may see.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select
from starlette.datastructures import QueryParams

from crm_admin.accounts.models import SysUser
from crm_admin.core import customer_records, search
from crm_admin.core.formatting import day_start_utc
from crm_admin.core.params import parse_date, parse_id
from crm_admin.core.principal import dept_subtree
from crm_admin.customers.models import CUSTOMER_STATUSES, Customer

# Every parameter the filter panel writes (sortBy/sort/search/page are SQLAdmin's own).
FILTER_PARAMS = (
    "q", "industry", "source", "level", "status", "region", "manager", "dept", "created_from",
    "created_to", "contact_from", "contact_to", "no_contact_days", "has_open_opp",
)


def like_prefix(text: str) -> str:
    """``text%`` with LIKE's wildcards in ``text`` escaped (searched literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _connection(conn_or_session: Any) -> Any:
    return conn_or_session.connection() if hasattr(conn_or_session, "connection") else conn_or_session


def local_midnight_utc(day: dt.date) -> dt.datetime:
    return day_start_utc(day)


def _int(value: str | None) -> int | None:
    return parse_id(value)


@dataclass
class CustomerQuery:
    q: str = ""
    industry: str = ""
    source: str = ""
    level: str = ""
    status: str = ""
    region: str = ""
    manager: int | None = None
    dept: int | None = None
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    contact_from: dt.date | None = None
    contact_to: dt.date | None = None
    no_contact_days: int | None = None
    has_open_opp: str = ""  # "1" yes, "0" no, "" either
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: QueryParams | dict[str, str]) -> CustomerQuery:
        get = params.get
        query = cls(
            q=(get("q") or "").strip()[:64],
            industry=(get("industry") or "").strip(),
            source=(get("source") or "").strip(),
            level=(get("level") or "").strip(),
            status=(get("status") or "").strip(),
            region=(get("region") or "").strip()[:64],
            manager=_int(get("manager")),
            dept=_int(get("dept")),
            created_from=parse_date(get("created_from")),
            created_to=parse_date(get("created_to")),
            contact_from=parse_date(get("contact_from")),
            contact_to=parse_date(get("contact_to")),
            no_contact_days=_int(get("no_contact_days")),
            has_open_opp=(get("has_open_opp") or "").strip(),
        )
        for key in ("created_from", "created_to", "contact_from", "contact_to"):
            if get(key) and getattr(query, key) is None:
                query.problems.append(f"日期“{get(key)}”格式不正确,应为 YYYY-MM-DD,已忽略。")
        if query.status and query.status not in CUSTOMER_STATUSES:
            query.problems.append("状态无效,已忽略。")
            query.status = ""
        if query.no_contact_days is not None and not 0 < query.no_contact_days <= 3650:
            query.problems.append("未联系天数应在 1–3650 之间,已忽略。")
            query.no_contact_days = None
        return query

    @property
    def active(self) -> bool:
        return any(
            getattr(self, name) not in ("", None) for name in FILTER_PARAMS
        )

    def conditions(self, conn_or_session: Any | None = None) -> list[ColumnElement[bool]]:
        c: list[ColumnElement[bool]] = []
        if self.q:
            # any part of the name, its pinyin or initials, 4+ digits of the phone or code, a code's start
            found = (search.match(_connection(conn_or_session), Customer, self.q) if conn_or_session is not None
                     else search.match_now(Customer, self.q))
            if found is not None:
                c.append(found)
        for key in ("industry", "source", "level", "status"):
            value = getattr(self, key)
            if value:
                c.append(getattr(Customer, key) == value)
        if self.region:
            c.append(Customer.region.like(like_prefix(self.region), escape="\\"))
        if self.manager is not None:
            c.append(Customer.manager_id == self.manager)
        if self.dept is not None:
            c.append(Customer.manager_id.in_(self._dept_users(conn_or_session)))
        if self.created_from:
            c.append(Customer.created_at >= local_midnight_utc(self.created_from))
        if self.created_to:
            c.append(Customer.created_at < local_midnight_utc(self.created_to + dt.timedelta(days=1)))
        if self.contact_from:
            c.append(Customer.last_contact_at >= local_midnight_utc(self.contact_from))
        if self.contact_to:
            c.append(Customer.last_contact_at < local_midnight_utc(self.contact_to + dt.timedelta(days=1)))
        if self.no_contact_days:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.no_contact_days)
            c.append(or_(Customer.last_contact_at.is_(None), Customer.last_contact_at < cutoff))
        if self.has_open_opp in ("1", "0"):
            open_opp = customer_records.has_open("opportunity", Customer.id)
            c.append(open_opp if self.has_open_opp == "1" else ~open_opp)
        return c

    def _dept_users(self, conn_or_session: Any | None) -> Any:
        """Users of the department and its sub-departments (as a sub-select, or ids when a connection is given)."""
        if conn_or_session is not None and self.dept is not None:
            conn = _connection(conn_or_session)
            depts = sorted(dept_subtree(conn, self.dept))
            return select(SysUser.id).where(SysUser.dept_id.in_(depts))
        return select(SysUser.id).where(SysUser.dept_id == self.dept)

    def apply(self, stmt: Select[Any], conn_or_session: Any | None = None) -> Select[Any]:
        conds = self.conditions(conn_or_session)
        return stmt.where(*conds) if conds else stmt
