"""Fixtures for the customer-side modules: principals and rows built through the real services."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as


def principal_for(username: str) -> Any:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    with db.session_factory()() as session:
        user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
        return load_principal(session.connection(), user)


@pytest.fixture
def principal() -> Callable[[str], Any]:
    return principal_for


@pytest.fixture
def make_customer() -> Callable[..., Any]:
    from crm_admin.customers import service
    from crm_admin.customers.models import Customer

    def factory(name: str, *, manager: str | None = None, **fields: Any) -> Any:
        with acting_as(SYSTEM), db.transaction() as session:
            manager_id = None
            if manager:
                from crm_admin.accounts.models import SysUser

                manager_id = session.execute(
                    select(SysUser.id).where(SysUser.username == manager)).scalar_one()
            obj = Customer(name=name, manager_id=manager_id, **fields)
            service.validate_customer(obj)
            obj.code = service.next_customer_codes(session)[0]
            session.add(obj)
            session.flush()
            return obj

    return factory


def form_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]*)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]*)"', html)
    return m.group(1) if m else ""
