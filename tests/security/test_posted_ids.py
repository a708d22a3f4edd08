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


# ----- the public pools: customer ids, pool ids and assignees posted to the pool pages ------------------

def _pooled(pool_id: int, name: str) -> int:
    from tests.pools import factories as pf

    return int(pf.pooled(pool_id, name).id)


def _pool_posts(world: World) -> tuple[list[tuple[str, str, str, dict[str, Any]]],
                                       list[tuple[str, str, str, dict[str, Any]]]]:
    """(refused, accepted): each as (label, who posts, url, data). The refused ones name a customer that
    is no pool's or another pool's, a pool the user may not use or that is closed, or an assignee outside
    the lead's scope; the accepted ones are the same posts with ids within the scope."""
    from tests.pools import factories as pf

    open_pool = pf.pool("开放公海")
    leads_only = pf.pool("主管公海")
    pf.access(leads_only.id, role="sales_lead")
    closed = pf.pool("已停用公海", is_active=False)
    in_open = _pooled(open_pool.id, "开放公海客户")
    in_leads = _pooled(leads_only.id, "主管公海客户")
    theirs = str(world.row("mgr_b", "customer"))
    mine = str(world.row("mgr_a", "customer"))
    claim, assign = f"/admin/pools/{open_pool.id}/claim", f"/admin/pools/{open_pool.id}/assign"
    refused = [
        ("claim another manager's customer through a pool", "mgr_a", claim, {"customer_id": theirs}),
        ("claim another pool's customer", "mgr_a", claim, {"customer_id": str(in_leads)}),
        ("claim from a pool the role may not use", "mgr_a", f"/admin/pools/{leads_only.id}/claim",
         {"customer_id": str(in_leads)}),
        ("claim a batch with one outside the pool", "mgr_a", claim, {"customer_id": [str(in_open), theirs]}),
        ("assign a customer that is no pool's", "lead", assign,
         {"customer_id": theirs, "user_id": str(world.users["mgr_a"])}),
        ("assign to someone outside the lead's scope", "lead", assign,
         {"customer_id": str(in_open), "user_id": str(world.users["mgr_c"])}),
        ("return to a pool the role may not use", "mgr_a", "/admin/pools/return",
         {"customer_id": mine, "pool_id": str(leads_only.id), "reason": "退回到别人的公海"}),
        ("return to a closed pool", "mgr_a", "/admin/pools/return",
         {"customer_id": mine, "pool_id": str(closed.id), "reason": "退回到停用的公海"}),
    ]
    accepted = [
        ("claim from the open pool", "mgr_a", claim, {"customer_id": str(in_open)}),
        ("assign within the scope", "lead", assign,
         {"customer_id": str(_pooled(open_pool.id, "待分配客户")), "user_id": str(world.users["mgr_a"])}),
        ("return one's own customer", "mgr_a", "/admin/pools/return",
         {"customer_id": mine, "pool_id": str(open_pool.id), "reason": "正常退回公海"}),
    ]
    return refused, accepted


def test_ids_posted_to_the_pool_pages_go_through_the_scope(world: World, login_as: Any) -> None:
    refused, accepted = _pool_posts(world)
    clients = {who: login_as(who) for who in ("mgr_a", "lead")}
    for label, who, url, data in refused:
        client = clients[who]
        before = snapshot()
        response = client.post(url, data={**data, "csrf_token": csrf_token(client)}, follow_redirects=False)
        assert response.status_code in (400, 403, 404, 409), (label, response.status_code)
        assert snapshot() == before, label
    for label, who, url, data in accepted:
        client = clients[who]
        before = snapshot()
        response = client.post(url, data={**data, "csrf_token": csrf_token(client)}, follow_redirects=False)
        assert response.status_code == 303, (label, response.status_code, response.text[-500:])
        assert snapshot() != before, label
