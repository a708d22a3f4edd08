"""A team's record lists found manager by manager (core.listing): the same rows in the same order as the
plain scoped query, for every kind of user, sort, page and search; never a row outside the scope."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.requests import Request

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.listing import CappedListMixin
from crm_admin.core.views import CrmModelView
from tests.company import World

BASE = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def records(world: World, make_user: Any) -> World:
    """Four customers per manager of both teams and one without a manager, each with follow-ups and
    opportunities whose times repeat (equal sort values across customers and managers)."""
    from crm_admin.care.models import CustomerCare
    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.models import Customer
    from crm_admin.followups.models import FollowUp
    from crm_admin.opportunities.models import SalesOpportunity
    from crm_admin.orders.models import CustomerOrder

    world.users["mgr_new"] = make_user("mgr_new", ["manager"], dept_id=world.depts["s2"]).id
    owners: list[int | None] = [world.users["mgr_a"], world.users["mgr_b"], world.users["mgr_c"],
                                world.users["lead"], None]
    with acting_as(SYSTEM), db.transaction() as session:
        n = 0
        for o, owner in enumerate(owners):
            for c in range(4):
                customer = Customer(code=f"C-PO-{o}-{c}", name=f"分页客户{o}-{c}有限公司", manager_id=owner)
                session.add(customer)
                session.flush()
                for _k in range(5):
                    n += 1
                    at = BASE + dt.timedelta(hours=(n * 7) % 11)  # 11 distinct times: many ties
                    session.add(FollowUp(customer_id=customer.id, manager_id=owner, method="phone",
                                         content=f"联系{n}", contacted_at=at,
                                         next_follow_up_at=at + dt.timedelta(days=n % 3)))
                    session.add(SalesOpportunity(customer_id=customer.id, title=f"商机{n}", stage="initial",
                                                 amount=Decimal(n % 4 * 100), manager_id=owner, created_at=at))
                    session.add(Linkman(customer_id=customer.id, name=f"联系人{n}"))
                    session.add(CustomerCare(customer_id=customer.id, care_type="visit", manager_id=owner,
                                             status="done", due_date=at.date()))
                    session.add(CustomerOrder(order_no=f"SO-PO-{n}", customer_id=customer.id, manager_id=owner,
                                              order_date=(at + dt.timedelta(days=n % 3)).date(),
                                              amount=Decimal("10.00")))
    return world


def _principal(username: str) -> Any:
    from crm_admin.core.models import SysUser
    from crm_admin.core.principal import load_principal

    with db.session_factory()() as session:
        user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
        return load_principal(session.connection(), user)


def _page(app: Any, identity: str, principal: Any, query: str) -> tuple[list[int], int]:
    view = next(v for v in app.state.admin.views if getattr(v, "identity", "") == identity)
    request = Request({"type": "http", "method": "GET", "path": f"/admin/{identity}/list",
                       "query_string": query.encode(), "headers": [], "state": {"principal": principal},
                       "path_params": {}, "app": app})
    pagination = asyncio.run(view.list(request))
    return [row.id for row in pagination.rows], pagination.count


@pytest.fixture
def merged(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per list read, whether it was found manager by manager."""
    taken: list[bool] = []
    original = CappedListMixin._per_owner_keys

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(CappedListMixin, "_per_owner_keys", spy)
    return taken


def _plain(app: Any, identity: str, principal: Any, query: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], int]:
    with monkeypatch.context() as m:
        m.setattr(CrmModelView, "per_owner_max_owners", 0)
        return _page(app, identity, principal, query)


def _expected(identity: str, principal: Any, query: str) -> list[int]:
    """The page as the scoped query reads it: the sort column, then the id, in the sort's direction."""
    from crm_admin.core.scope import scoped
    from crm_admin.followups.models import FollowUp
    from crm_admin.opportunities.models import SalesOpportunity

    model: Any = FollowUp if identity == "follow-up" else SalesOpportunity
    params = dict(part.split("=", 1) for part in query.split("&") if part)
    column = getattr(model, params.get("sortBy", "contacted_at" if model is FollowUp else "created_at"))
    descending = params.get("sort", "desc" if "sortBy" not in params else "asc") == "desc"
    page = int(params.get("page", "1"))
    size = int(params.get("pageSize", "20"))
    order = [column.desc(), model.id.desc()] if descending else [column.asc(), model.id.asc()]
    stmt = scoped(select(model.id), model, principal, "list").order_by(*order)
    with db.session_factory()() as session:
        every = list(session.execute(stmt).scalars())
    page = min(page, max(1, -(-len(every) // size)))  # the list shows its last page for one beyond it
    return every[(page - 1) * size:page * size]


QUERIES = ("", "page=2", "page=3", "pageSize=50", "page=2&pageSize=50", "sortBy=contacted_at&sort=asc",
           "sortBy=contacted_at&sort=desc&page=2", "sortBy=next_follow_up_at&sort=desc")
OPPORTUNITY_QUERIES = ("", "page=2", "sortBy=created_at&sort=asc&page=2", "sortBy=amount&sort=desc")


@pytest.mark.parametrize("username", ["admin", "lead", "mgr_a", "mgr_c", "mgr_new", "ro"])
def test_pages_found_manager_by_manager_are_the_scoped_query_s_pages(
        app: Any, records: World, username: str, merged: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    principal = _principal(username)
    for identity, queries in (("follow-up", QUERIES), ("sales-opportunity", OPPORTUNITY_QUERIES)):
        for query in queries:
            got, count = _page(app, identity, principal, query)
            if not (username in ("admin", "ro") and "next_follow_up_at" in query):
                # everyone's list sorted by a column whose index goes on with other columns keeps that
                # index's order among equal values (core.listing._with_tie_breaker)
                assert got == _expected(identity, principal, query), (identity, query)
            assert (got, count) == _plain(app, identity, principal, query, monkeypatch), (identity, query)
    if username in ("lead", "mgr_a", "mgr_c"):
        assert any(merged)  # the manager-by-manager look-up did the work (and matched the plain one)


@pytest.mark.parametrize("username", ["admin", "lead", "mgr_a", "mgr_new"])
def test_contacts_care_and_orders_found_manager_by_manager_are_the_plain_pages(
        app: Any, records: World, username: str, merged: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    principal = _principal(username)
    for identity in ("linkman", "customer-care", "customer-order"):
        for query in ("", "page=2", "pageSize=50", "page=2&sort=desc"):
            got = _page(app, identity, principal, query)
            assert got == _plain(app, identity, principal, query, monkeypatch), (identity, query)
            if username != "mgr_new" and "page=2" not in query:
                assert got[0]
    if username in ("lead", "mgr_a"):
        assert any(merged)


def test_a_search_and_deep_pages_use_the_plain_query(app: Any, records: World, merged: list[bool],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    principal = _principal("lead")
    monkeypatch.setattr(CrmModelView, "per_owner_max_rows", 20)
    merged.clear()
    got, _count = _page(app, "follow-up", principal, "page=2")
    assert got == _expected("follow-up", principal, "page=2")
    assert merged == [False]
    merged.clear()
    got, _count = _page(app, "sales-opportunity", principal, "search=%E5%95%86%E6%9C%BA")
    assert merged == [False]
    assert got


def test_a_row_whose_carried_manager_drifted_never_shows_outside_the_scope(
        app: Any, records: World, merged: list[bool]) -> None:
    from crm_admin.customers.models import Customer
    from crm_admin.followups.models import FollowUp

    # a follow-up of the other team's customer claims to be mgr_a's (a copy gone wrong)
    with db.transaction() as session:
        other = session.execute(select(FollowUp.id).join(Customer, Customer.id == FollowUp.customer_id)
                                .where(Customer.manager_id == records.users["mgr_c"])
                                .order_by(FollowUp.contacted_at.desc(), FollowUp.id.desc()).limit(1)).scalar_one()
        session.execute(update(FollowUp).where(FollowUp.id == other)
                        .values(customer_manager_id=records.users["mgr_a"]))
    for username in ("lead", "mgr_a"):
        principal = _principal(username)
        for query in ("", "page=2", "page=3", "pageSize=100", "sortBy=contacted_at&sort=asc"):
            got, _count = _page(app, "follow-up", principal, query)
            assert other not in got
            assert set(got) <= set(_expected("follow-up", principal, "pageSize=100"))
    assert any(merged)
