"""Any id posted to a custom page goes through the same scope check as the form that owns it: a manager
naming another manager's care task, customer, contact, opportunity, alert, order or order line is refused
and nothing changes (the forms' own ids are covered by the permission matrix and the route test)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.company import World, snapshot
from tests.conftest import csrf_token


def _posts(world: World, owner: str = "mgr_b") -> list[tuple[str, str, dict[str, str]]]:
    theirs = {kind: str(world.row(owner, kind)) for kind in ("customer", "linkman", "customer_care",
                                                                 "opportunity", "churn_alert", "order",
                                                                 "order_item")}
    mine = str(world.row("mgr_a", "customer"))
    my_order = world.row("mgr_a", "order")
    line = {"product_id": _product(), "quantity": "2", "unit_price": "", "discount": "95"}
    return [
        ("care execute, their task", "/admin/care/execute",
         {"care_id": theirs["customer_care"], "care_type": "phone_call", "detail": "x"}),
        ("care feedback, their task", "/admin/care/feedback",
         {"care_id": theirs["customer_care"], "feedback": "x", "status": "done"}),
        ("care manual, their customer", "/admin/care/manual",
         {"customer_id": theirs["customer"], "care_type": "phone_call", "detail": "x"}),
        ("care manual, my customer with their contact", "/admin/care/manual",
         {"customer_id": mine, "linkman_id": theirs["linkman"], "care_type": "phone_call", "detail": "x"}),
        ("pipeline move, their opportunity", "/admin/pipeline/move",
         {"opportunity_id": theirs["opportunity"], "stage": "proposal"}),
        ("360 follow-up on my customer with their contact", f"/admin/customer/360/{mine}/follow-up",
         {"linkman_id": theirs["linkman"], "method": "phone", "content": "越界"}),
        ("transfer their customer", "/admin/transfer/submit",
         {"customer_id": theirs["customer"], "reason": "越界",
          "new_manager_id": str(world.users["mgr_a" if owner == "mgr_b" else "mgr_b"])}),
        ("churn close, their alert", f"/admin/churn/alerts/{theirs['churn_alert']}/close",
         {"outcome": "retained", "analysis": "x"}),
        ("new order for their customer", "/admin/customer-order/new",
         {"customer": theirs["customer"], "item_id": "", **line}),
        ("their order in the order form", f"/admin/customer-order/{theirs['order']}/form",
         {"customer": theirs["customer"], "item_id": theirs["order_item"], **line}),
        ("my order with their order's line", f"/admin/customer-order/{my_order}/form",
         {"customer": mine, "item_id": theirs["order_item"], **line}),
        ("return their customer to a public pool", "/admin/pools/return",
         {"customer_id": theirs["customer"], "pool_id": _pool(), "reason": "越界退回"}),
    ]


def _pool() -> str:
    """A public pool open to everyone (made once per test)."""
    from sqlalchemy import select

    from crm_admin import db
    from crm_admin.pools.models import CustomerPool

    with db.transaction() as session:
        found = session.execute(select(CustomerPool.id)).scalar()
        if found is None:
            pool = CustomerPool(name="越界测试公海")
            session.add(pool)
            session.flush()
            found = pool.id
        return str(found)


def _product() -> str:
    from sqlalchemy import select

    from crm_admin import db
    from crm_admin.products.models import Product

    with db.session_factory()() as session:
        return str(session.execute(select(Product.id).order_by(Product.id)).scalars().first())


@pytest.mark.parametrize("index", range(12))
def test_a_posted_id_outside_the_scope_is_refused(world: World, login_as: Any, index: int) -> None:
    label, url, data = _posts(world)[index]
    client = login_as("mgr_a")
    before = snapshot()
    response = client.post(url, data={**data, "csrf_token": csrf_token(client)}, follow_redirects=False)
    assert response.status_code in (400, 403, 404, 409) or (
        response.status_code == 303 and "error=" in response.headers.get("location", "")), (label, response.status_code)
    assert snapshot() == before, label


@pytest.mark.parametrize("index", range(12))
def test_the_same_post_with_own_ids_is_accepted(world: World, login_as: Any, index: int) -> None:
    """The control: each refusal above is the scope's, not a malformed request's."""
    label, url, data = _posts(world, owner="mgr_a")[index]
    client = login_as("mgr_a")
    if label.startswith("care feedback"):  # feedback follows the task's execution
        _, execute_url, execute = _posts(world, owner="mgr_a")[0]
        client.post(execute_url, data={**execute, "csrf_token": csrf_token(client)})
    before = snapshot()
    response = client.post(url, data={**data, "csrf_token": csrf_token(client)}, follow_redirects=False)
    location = response.headers.get("location", "")
    import re

    shown = re.findall(r'alert-danger[^>]*>([^<]*)<', response.text)
    assert response.status_code in (200, 303) and "error=" not in location, (label, response.status_code,
                                                                               shown, location)
    assert snapshot() != before, label
