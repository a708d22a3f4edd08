"""Keyset pages stay right while rows are added (no row twice, none skipped), in every sort; the
cursor is opaque and checked; each token has its own rate limit (429 with Retry-After)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from tests.api.conftest import bearer


def _add_customers(manager_id: int, names: list[str]) -> list[int]:
    from crm_admin.customers.models import Customer

    with acting_as(SYSTEM), db.transaction() as session:
        rows = [Customer(code=f"K-{name}", name=name, manager_id=manager_id) for name in names]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


@pytest.mark.parametrize("sort", ["id", "-id", "updated", "-updated"])
def test_inserts_while_paging_neither_repeat_nor_skip(api: Any, world: Any, make_token: Any, sort: str) -> None:
    manager = world.users["mgr_a"]
    existing = [*_add_customers(manager, [f"翻页客户{i:02d}" for i in range(23)]), world.row("mgr_a", "customer")]
    token = bearer(make_token("mgr_a"))
    seen: list[int] = []
    cursor = None
    added: list[int] = []
    for page_no in range(20):
        params: dict[str, Any] = {"limit": 5, "sort": sort}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/v1/customers", params=params, headers=token)
        assert r.status_code == 200, r.text
        seen += [c["id"] for c in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if page_no in (1, 3):  # customers added between pages
            added += _add_customers(manager, [f"新增客户{sort}{page_no}{i}" for i in range(3)])
        if not cursor:
            break
    assert len(seen) == len(set(seen)), "a row came twice"
    assert set(existing) <= set(seen), "a row present from the start was skipped"
    # rows added meanwhile come on a later page when they sort after the position reached
    ascending = not sort.startswith("-")
    assert set(added) <= set(seen) if ascending else not set(added) & set(seen)
    order = seen if sort.lstrip("-") == "id" else None
    if order is not None:
        assert order == sorted(order, reverse=not ascending)


def test_cursor_is_checked(api: Any, world: Any, make_token: Any) -> None:
    token = bearer(make_token("mgr_a"))
    _add_customers(world.users["mgr_a"], ["游标客户一", "游标客户二"])
    first = api.get("/api/v1/customers", params={"limit": 1, "sort": "id"}, headers=token).json()
    assert first["next_cursor"]
    other_sort = api.get("/api/v1/customers", params={"limit": 1, "sort": "-updated",
                                                      "cursor": first["next_cursor"]}, headers=token)
    assert other_sort.status_code == 400 and "游标" in other_sort.json()["detail"]
    assert api.get("/api/v1/customers", params={"cursor": "!!!"}, headers=token).status_code == 400


def test_rate_limit_per_token(api: Any, world: Any, make_token: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.settings import get_settings

    monkeypatch.setattr(get_settings(), "api_rate_per_minute", 3)
    busy = bearer(make_token("mgr_a"))
    other = bearer(make_token("mgr_a"))
    codes = [api.get("/api/v1/me", headers=busy).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    refused = api.get("/api/v1/me", headers={**busy, "Accept-Language": "en"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["title"] == "Too many requests"
    assert api.get("/api/v1/me", headers=other).status_code == 200  # another token has its own count


def test_blocks_of_calls_never_admit_more_than_the_limit(world: Any) -> None:
    """Processes reserve blocks of calls; together they never pass the limit (each ``forget`` plays a
    new process whose unused reserved calls are lost)."""
    from crm_admin.api import ratelimit

    start = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a minute, none before it
    admitted = 0
    for i in range(150):
        if i % 7 == 0:
            ratelimit.forget()
        admitted += ratelimit.allow(987_654, limit=100, now=start + i * 0.1)
    assert ratelimit.block_size(100) == 2
    assert 100 - 22 <= admitted <= 100
