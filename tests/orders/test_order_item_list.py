"""The order lines list of a team (core.listing ``_walked_keys``): lines carry no copy of their customer's
manager, so a team's first pages are found by reading the lines in key order, each checked against the
scope. The same rows in the same order as the plain scoped query, for every kind of user and page;
never a line outside the scope."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from starlette.requests import Request

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.listing import CappedListMixin
from tests.company import World
from tests.conftest import statements_sent


@pytest.fixture
def lines(world: World, make_user: Any) -> World:
    """Orders with 1–3 lines for customers of both teams and of nobody, interleaved so that a team's
    lines are spread over the table's keys; quantities repeat (ties)."""
    from crm_admin.customers.models import Customer
    from crm_admin.orders.models import CustomerOrder, OrderItem
    from crm_admin.products.models import Product

    world.users["mgr_new"] = make_user("mgr_new", ["manager"], dept_id=world.depts["s2"]).id
    owners: list[int | None] = [world.users["mgr_a"], world.users["mgr_b"], world.users["mgr_c"],
                                world.users["lead"], None]
    with acting_as(SYSTEM), db.transaction() as session:
        product = session.execute(select(Product.id)).scalars().first()
        customers = []
        for o, owner in enumerate(owners):
            for c in range(3):
                customer = Customer(code=f"C-OL-{o}-{c}", name=f"明细客户{o}-{c}有限公司", manager_id=owner)
                session.add(customer)
                session.flush()
                customers.append(customer.id)
        n = 0
        for round_ in range(4):
            for customer_id in customers:
                n += 1
                order = CustomerOrder(order_no=f"SO-OL-{n}", customer_id=customer_id,
                                      order_date=dt.date(2026, 3, 1) + dt.timedelta(days=n % 5),
                                      amount=Decimal("10.00"))
                session.add(order)
                session.flush()
                for k in range(1 + (n + round_) % 3):
                    session.add(OrderItem(order_id=order.id, product_id=product, quantity=1 + (n + k) % 4,
                                          unit_price=Decimal("5.00")))
    return world


def _principal(username: str) -> Any:
    from crm_admin.core.models import SysUser
    from crm_admin.core.principal import load_principal

    with db.session_factory()() as session:
        user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
        return load_principal(session.connection(), user)


def _page(app: Any, principal: Any, query: str) -> tuple[list[int], int]:
    view = next(v for v in app.state.admin.views if getattr(v, "identity", "") == "order-item")
    request = Request({"type": "http", "method": "GET", "path": "/admin/order-item/list",
                       "query_string": query.encode(), "headers": [], "state": {"principal": principal},
                       "path_params": {}, "app": app})
    pagination = asyncio.run(view.list(request))
    return [row.id for row in pagination.rows], pagination.count


def _expected(principal: Any, query: str) -> tuple[list[int], int]:
    """The page as the plain scoped query reads it."""
    from crm_admin.core.scope import scoped
    from crm_admin.orders.models import OrderItem

    params = dict(part.split("=", 1) for part in query.split("&") if part)
    page, size = int(params.get("page", "1")), int(params.get("pageSize", "20"))
    with db.session_factory()() as session:
        every = list(session.execute(scoped(select(OrderItem.id), OrderItem, principal, "list")
                                     .order_by(OrderItem.id)).scalars())
    page = min(page, max(1, -(-len(every) // size)))
    return every[(page - 1) * size:page * size], len(every)


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per list read, whether the page's keys were found by walking the table."""
    taken: list[bool] = []
    original = CappedListMixin._walked_keys

    async def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = await original(self, *args, **kwargs)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(CappedListMixin, "_walked_keys", spy)
    return taken


# the list sorts by the id only (no sortable column); a page beyond the last shows the last one
QUERIES = ("", "page=2", "page=3", "pageSize=10", "page=2&pageSize=10", "page=5&pageSize=10", "page=99",
           "sort=desc")


@pytest.mark.parametrize("username", ["admin", "lead", "mgr_a", "mgr_c", "mgr_new", "ro"])
def test_order_lines_pages_are_the_scoped_query_s_pages(app: Any, lines: World, username: str,
                                                        walked: list[bool]) -> None:
    principal = _principal(username)
    for query in QUERIES:
        assert _page(app, principal, query) == _expected(principal, query), query
    if username in ("lead", "mgr_a", "mgr_c") and db.get_engine().dialect.name == "mysql":
        assert any(walked)  # the walk found the keys (and they matched the plain query)


def test_a_walk_cut_short_reads_the_list_as_before(app: Any, lines: World, walked: list[bool],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.orders.admin import OrderItemAdmin

    monkeypatch.setattr(OrderItemAdmin, "walk_max_examined", 3)  # stops long before a page is full
    principal = _principal("lead")
    for query in ("", "page=2", "pageSize=10"):
        assert _page(app, principal, query) == _expected(principal, query), query
    assert not any(walked)


def test_the_walk_checks_every_line_against_the_scope(app: Any, lines: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The statement that finds the keys carries the scope itself (through the order's customer)."""
    # the walk is tried whatever other tests left in the table (its estimate reads the highest id)
    monkeypatch.setattr("crm_admin.core.listing._EXAMINED_PER_ROW", 0)
    engine = db.get_engine()
    with statements_sent(any_engine=True) as statements:
        got, _count = _page(app, _principal("mgr_a"), "")
    assert got == _expected(_principal("mgr_a"), "")[0]
    walks = [s for s in statements if "ROWS EXAMINED" in s]
    if engine.dialect.name == "mysql":
        assert len(walks) == 1 and "customer.manager_id" in walks[0] and "FROM order_item" in walks[0]
    else:
        assert not walks
