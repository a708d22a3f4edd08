"""Pools and customers in them, written straight to the database (as an administrator would set them up)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from crm_admin import db
from crm_admin.accounts.models import SysRole
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.pools.models import CustomerPool, CustomerPoolAccess, CustomerPoolLimit

_seq = itertools.count(1)


def pool(name: str = "", **kw: Any) -> CustomerPool:
    with acting_as(SYSTEM), db.transaction() as s:
        p = CustomerPool(name=name or f"公海{next(_seq)}", **kw)
        s.add(p)
        s.flush()
        s.expunge(p)
        return p


def role_id(code: str) -> int:
    with db.session_factory()() as s:
        return int(s.query(SysRole.id).filter(SysRole.code == code).scalar())


def access(pool_id: int, *, dept_id: int | None = None, role: str | None = None) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(CustomerPoolAccess(pool_id=pool_id, dept_id=dept_id, role_id=role_id(role) if role else None))


def limit(pool_id: int, role: str, *, hold: int | None = None, daily: int | None = None) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(CustomerPoolLimit(pool_id=pool_id, role_id=role_id(role), hold_limit=hold, daily_claim_limit=daily))


def pooled(pool_id: int, name: str | None = None, *, entered: dt.datetime | None = None, **kw: Any) -> Customer:
    """A customer sitting in the pool (no manager)."""
    n = next(_seq)
    with acting_as(SYSTEM), db.transaction() as s:
        c = Customer(code=f"P{n:06d}", name=name or f"公海客户{n}", name_key=f"pool{n}", manager_id=None,
                     pool_id=pool_id,
                     pool_entered_at=entered or dt.datetime(2026, 1, 1, tzinfo=dt.UTC), **kw)
        s.add(c)
        s.flush()
        s.expunge(c)
        return c
