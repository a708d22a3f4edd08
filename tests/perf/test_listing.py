"""Capped counting and deferred joins on list pages (core.listing), on the real customer list."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin.core.views import CrmModelView
from crm_admin.perf.generate import generate


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CrmModelView, "count_cap", 30)
    monkeypatch.setattr(CrmModelView, "deferred_join_offset", 20)


def _codes(html: str) -> list[str]:
    return re.findall(r"C\d{8}", html)


def _expected_codes(engine: Any, page: int, size: int = 20) -> list[str]:
    import crm_admin.models  # noqa: F401
    from crm_admin.customers.models import Customer

    with engine.connect() as conn:
        return list(conn.execute(
            select(Customer.code).order_by(Customer.created_at.desc()).limit(size).offset((page - 1) * size)
        ).scalars())


def test_count_is_capped_and_deep_pages_use_keys_first(engine: Any, admin_client: Any, small_cap: None) -> None:
    generate(engine, scale=0.0005, seed=3)  # 100 customers

    first = admin_client.get("/admin/customer/list")
    assert first.status_code == 200
    assert "30+" in first.text  # counted no further than the cap
    assert _codes(first.text)[:20] == _expected_codes(engine, 1)

    deep = admin_client.get("/admin/customer/list?page=3")  # past the cap: keys of the page first
    assert deep.status_code == 200
    assert _codes(deep.text)[:20] == _expected_codes(engine, 3)

    last = admin_client.get("/admin/customer/list?page=5")
    assert last.status_code == 200
    assert _codes(last.text)[:20] == _expected_codes(engine, 5)

    beyond = admin_client.get("/admin/customer/list?page=99")  # clamped to the last page, exact total
    assert beyond.status_code == 200
    assert _codes(beyond.text)[:20] == _expected_codes(engine, 5)
    assert "100" in beyond.text
