"""The API's workflows go through the services the pages use: a stage move (If-Match), care tasks
(execute, feedback, a manual record), orders with lines, public pools (claim, return), dictionaries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.api.conftest import bearer
from tests.pools import factories


def test_stage_move_needs_the_current_version(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.opportunities.models import OpportunityStageHistory

    token = bearer(make_token("mgr_a"))
    opp_id = world.row("mgr_a", "opportunity")
    read = api.get(f"/api/v1/opportunities/{opp_id}", headers=token)
    url = f"/api/v1/opportunities/{opp_id}/stage"
    assert api.post(url, json={"stage": "proposal"}, headers=token).status_code == 428
    assert api.post(url, json={"stage": "proposal"}, headers={**token, "If-Match": '"77"'}).status_code == 412
    moved = api.post(url, json={"stage": "proposal"}, headers={**token, "If-Match": read.headers["etag"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage"] == "proposal" and moved.headers["etag"] != read.headers["etag"]
    bad = api.post(url, json={"stage": "no_such_stage"}, headers={**token, "If-Match": moved.headers["etag"]})
    assert bad.status_code == 422 and "不是有效的选项" in bad.json()["detail"]
    with db.session_factory()() as session:
        history = session.execute(select(OpportunityStageHistory).where(
            OpportunityStageHistory.opportunity_id == opp_id)).scalars().all()
        assert [h.to_stage for h in history][-1] == "proposal"


def test_care_task_execute_then_feedback(api: Any, world: Any, make_token: Any) -> None:
    token = bearer(make_token("mgr_a"))
    care_id = world.row("mgr_a", "customer_care")
    early = api.post(f"/api/v1/care-tasks/{care_id}/feedback", json={"feedback": "很满意"}, headers=token)
    assert early.status_code == 422 and "请先执行关怀" in early.json()["detail"]
    done = api.post(f"/api/v1/care-tasks/{care_id}/execute",
                    json={"care_type": "phone_call", "detail": "电话问候,介绍新品"}, headers=token)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "pending" and done.json()["detail"] == "电话问候,介绍新品"
    closed = api.post(f"/api/v1/care-tasks/{care_id}/feedback", json={"feedback": "很满意", "status": "done"},
                      headers=token)
    assert closed.status_code == 200 and closed.json()["status"] == "done"
    again = api.post(f"/api/v1/care-tasks/{care_id}/execute", json={"care_type": "phone_call", "detail": "再次"},
                     headers=token)
    assert again.status_code == 422 and "已结束" in again.json()["detail"]
    manual = api.post("/api/v1/care-tasks", json={"customer_id": world.row("mgr_a", "customer"),
                                                  "care_type": "visit", "detail": "上门拜访", "feedback": "合作愉快"},
                      headers=token)
    assert manual.status_code == 201 and manual.json()["status"] == "done" and manual.json()["origin"] == "manual"
    theirs = api.post("/api/v1/care-tasks", json={"customer_id": world.row("mgr_c", "customer"),
                                                  "care_type": "visit", "detail": "越权"}, headers=token)
    assert theirs.status_code == 422 and theirs.json()["errors"][0]["field"] == "customer_id"


def test_order_with_lines(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.products.models import Product

    token = bearer(make_token("mgr_a"))
    with db.session_factory()() as session:
        product_id = session.execute(select(Product.id).where(Product.code == "P-1")).scalar_one()
    body = {"customer_id": world.row("mgr_a", "customer"), "order_date": "2026-11-30",
            "lines": [{"product_id": product_id, "quantity": 3},
                      {"product_id": product_id, "quantity": 2, "unit_price": "8.50", "discount": "90"}]}
    made = api.post("/api/v1/orders", json=body, headers={**token, "Idempotency-Key": "erp-1"})
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["amount"] == "45.30" and order["order_no"]  # 3 × 10.00 + 2 × 8.50 × 90 %
    replay = api.post("/api/v1/orders", json=body, headers={**token, "Idempotency-Key": "erp-1"})
    assert replay.json() == order
    lines = api.get(f"/api/v1/orders/{order['id']}/lines", headers=token).json()["items"]
    assert [(line["quantity"], line["unit_price"]) for line in lines] == [(3, "10.00"), (2, "8.50")]
    theirs = world.row("mgr_c", "order")
    assert api.get(f"/api/v1/orders/{theirs}/lines", headers=token).status_code == 404
    empty = api.post("/api/v1/orders", json={**body, "lines": []}, headers=token)
    assert empty.status_code == 422


def test_pool_claim_and_return(api: Any, world: Any, make_token: Any) -> None:
    pool = factories.pool("华东公海")
    waiting = factories.pooled(pool.id, "公海里的客户有限公司")
    token = bearer(make_token("mgr_a"))
    listed = api.get("/api/v1/pools", headers=token).json()["items"]
    assert [(p["name"], p["customers"]) for p in listed] == [("华东公海", 1)]
    claimed = api.post(f"/api/v1/pools/{pool.id}/claim", json={"customer_ids": [waiting.id]}, headers=token)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["customers"] == [waiting.id]
    mine = api.get(f"/api/v1/customers/{waiting.id}", headers=token).json()
    assert mine["manager_id"] == world.users["mgr_a"] and mine["pool_id"] is None
    twice = api.post(f"/api/v1/pools/{pool.id}/claim", json={"customer_ids": [waiting.id]},
                     headers=bearer(make_token("mgr_c")))
    assert twice.status_code in (404, 409)
    no_reason = api.post(f"/api/v1/pools/{pool.id}/return", json={"customer_ids": [waiting.id], "reason": ""},
                         headers=token)
    assert no_reason.status_code == 422
    back = api.post(f"/api/v1/pools/{pool.id}/return",
                    json={"customer_ids": [waiting.id], "reason": "客户暂无需求"}, headers=token)
    assert back.status_code == 200, back.text
    assert api.get(f"/api/v1/customers/{waiting.id}", headers=token).status_code == 404


def test_dictionaries_are_readable_by_any_token(api: Any, world: Any, make_token: Any) -> None:
    token = bearer(make_token("ro"))
    industries = api.get("/api/v1/dictionaries/industry", headers=token).json()
    assert industries["name"] == "行业类型" and any(i["value"] == "it" for i in industries["items"])
    assert {d["code"] for d in api.get("/api/v1/dictionaries", headers=token).json()["items"]} >= {
        "industry", "customer_level", "opportunity_stage", "follow_up_method"}
