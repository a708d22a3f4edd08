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


def hidden_fields(html: str, form_id: str) -> dict[str, str]:
    """The hidden inputs of the form ``form_id`` on a page (what the browser posts back)."""
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
    assert form is not None, f"no form #{form_id} on the page"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(0)))


def merge_preview(client: Any, keep: Any, drop: Any) -> Any:
    """The merge preview page of ``drop`` into ``keep`` (ids or codes)."""
    return client.get("/admin/customer/merge/preview", params={"keep": str(keep), "drop": str(drop)})


def merge_through_preview(client: Any, keep: Any, drop: Any) -> Any:
    """Merge as a person does: open the preview, confirm what it shows (the response of the confirmation)."""
    page = merge_preview(client, keep, drop)
    assert page.status_code == 200, page.text[:500]
    return client.post("/admin/customer/merge/confirm", data=hidden_fields(page.text, "merge-confirm"),
                       follow_redirects=False)
