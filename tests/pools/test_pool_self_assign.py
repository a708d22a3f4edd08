"""A lead who may assign customers from a pool cannot assign them to themselves past their own daily
claim limit: giving oneself customers is claiming them (the daily limit applies, the pool's log and
report count a claim)."""

from __future__ import annotations

from typing import Any

from crm_admin.customers.models import Customer
from crm_admin.pools.models import CustomerPoolLog
from tests.pools import factories as pf
from tests.pools.test_pool_http import _count, _post, team  # noqa: F401


def test_a_lead_assigning_to_themselves_is_held_to_the_daily_claim_limit(team: dict[str, Any]) -> None:  # noqa: F811
    pool = pf.pool(daily_claim_limit=1)
    c1, c2, c3 = pf.pooled(pool.id), pf.pooled(pool.id), pf.pooled(pool.id)
    lead, cl = team["lead"], team["cl"]
    assert _post(cl, f"/admin/pools/{pool.id}/claim", {"customer_id": c1.id}).status_code == 303
    r = _post(cl, f"/admin/pools/{pool.id}/claim", {"customer_id": c2.id})
    assert r.status_code == 400 and "今天最多还能再领取 0 个" in r.text
    # the same customers through 分配 to oneself: refused the same way, nothing moves
    r = _post(cl, f"/admin/pools/{pool.id}/assign", {"customer_id": c2.id, "user_id": lead.id})
    assert r.status_code == 400 and "今天最多还能再领取 0 个" in r.text
    assert _count(Customer, Customer.manager_id == lead.id) == 1
    # assigning to a colleague is not limited by the daily claim limit
    r = _post(cl, f"/admin/pools/{pool.id}/assign", {"customer_id": [c2.id, c3.id], "user_id": team["a"].id})
    assert r.status_code == 303
    assert _count(CustomerPoolLog, CustomerPoolLog.kind == "claim", CustomerPoolLog.user_id == lead.id) == 1
