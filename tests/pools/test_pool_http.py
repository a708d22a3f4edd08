"""The pool pages through HTTP: admin sets pools up, managers claim and return, leads assign; scope,
limits, reasons, history, masking, the report; and two users claiming one customer at once."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.accounts.models import SysDept
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.pools.models import (
    CustomerPool,
    CustomerPoolAccess,
    CustomerPoolLimit,
    CustomerPoolLog,
)
from crm_admin.transfers.models import CustomerTransfer
from tests.care import factories as f
from tests.conftest import IS_MYSQL, csrf_token
from tests.pools import factories as pf


def _count(model: type, *where: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _post(client: Any, url: str, data: dict[str, Any]) -> Any:
    return client.post(url, data={"csrf_token": csrf_token(client), **data}, follow_redirects=False)


def _dept(name: str) -> int:
    with acting_as(SYSTEM), db.transaction() as s:
        d = SysDept(name=name)
        s.add(d)
        s.flush()
        return d.id


@pytest.fixture
def team(make_user: Any, login_as: Any) -> dict[str, Any]:
    east = _dept("华东销售部")
    west = _dept("华西销售部")
    a = make_user("mgr_a", dept_id=east, real_name="张经理")
    b = make_user("mgr_b", dept_id=east, real_name="李经理")
    w = make_user("mgr_w", dept_id=west, real_name="王经理")
    lead = make_user("lead_e", ["sales_lead"], dept_id=east, real_name="赵主管")
    return {"east": east, "west": west, "a": a, "b": b, "w": w, "lead": lead,
            "ca": login_as("mgr_a"), "cb": login_as("mgr_b"), "cw": login_as("mgr_w"), "cl": login_as("lead_e")}


def test_admin_creates_pool_with_access_and_limits(admin_client: Any, team: dict[str, Any]) -> None:
    page = admin_client.get("/admin/pools/new")
    assert page.status_code == 200 and "公海名称" in page.text
    r = _post(admin_client, "/admin/pools/new", {
        "name": "华东公海", "remark": "华东区", "is_active": "1", "mask_contacts": "1", "hold_limit": "100",
        "daily_claim_limit": "", "dept_id": str(team["east"]), "hold_manager": "", "daily_manager": ""})
    assert r.status_code == 303, r.text
    with db.session_factory()() as s:
        pool = s.execute(select(CustomerPool)).scalar_one()
        assert pool.hold_limit == 100 and pool.daily_claim_limit is None and pool.mask_contacts
        assert s.execute(select(CustomerPoolAccess.dept_id)).scalars().all() == [team["east"]]
    role = pf.role_id("manager")
    r = _post(admin_client, f"/admin/pools/{pool.id}/settings", {
        "name": "华东公海", "is_active": "1", "hold_limit": "100", "dept_id": str(team["east"]),
        f"hold_{role}": "5", f"daily_{role}": "2"})
    assert r.status_code == 303, r.text
    with db.session_factory()() as s:
        limit = s.execute(select(CustomerPoolLimit)).scalar_one()
        assert (limit.role_id, limit.hold_limit, limit.daily_claim_limit) == (role, 5, 2)
        assert s.get(CustomerPool, pool.id).mask_contacts is False  # unchecked box
    # bad input: a clear message, nothing changed
    r = _post(admin_client, f"/admin/pools/{pool.id}/settings", {"name": "华东公海", "hold_limit": "-3"})
    assert r.status_code == 400 and "持有上限应为" in r.text
    r = _post(admin_client, "/admin/pools/new", {"name": "华东公海"})
    assert r.status_code == 400 and "已有名为" in r.text
    assert _count(CustomerPool) == 1
    assert _count(AuditLog, AuditLog.resource == "pool") >= 2
    # managers may not set pools up
    assert team["ca"].get("/admin/pools/new").status_code == 403
    assert _post(team["ca"], f"/admin/pools/{pool.id}/settings", {"name": "x"}).status_code == 403


def test_manager_returns_and_another_claims(team: dict[str, Any]) -> None:
    pool = pf.pool("华东公海", mask_contacts=True)
    cust = f.customer(team["a"].id, "退回测试公司", phone="13812345678")
    f.add(Linkman(customer_id=cust.id, name="钱联系", mobile="13987654321", email="qian@example.com"))
    task = f.care(cust.id, team["a"].id)

    page = team["ca"].get(f"/admin/pools/return?customer_id={cust.id}")
    assert page.status_code == 200 and "退回测试公司" in page.text and "华东公海" in page.text
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": cust.id, "pool_id": pool.id, "reason": "x"})
    assert r.status_code == 400 and "请填写退回原因" in r.text
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": cust.id, "pool_id": "", "reason": "原因足够长"})
    assert r.status_code == 400 and "请选择要退回的公海" in r.text
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": "99999999999999999999", "pool_id": pool.id,
                                                   "reason": "原因足够长"})
    assert r.status_code == 400 and "所选客户无效" in r.text
    assert f.get(Customer, cust.id).manager_id == team["a"].id
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": cust.id, "pool_id": pool.id,
                                                   "reason": "客户长期联系不上"})
    assert r.status_code == 303, r.text
    c = f.get(Customer, cust.id)
    assert (c.manager_id, c.pool_id) == (None, pool.id)
    assert f.get(CustomerCare, task.id).manager_id is None
    # no longer in the manager's own list
    assert "退回测试公司" not in team["ca"].get("/admin/customer/list").text

    listing = team["cb"].get(f"/admin/pools/{pool.id}")
    assert listing.status_code == 200 and "退回测试公司" in listing.text
    assert "13812345678" not in listing.text and "138****5678" in listing.text
    assert "客户长期联系不上" in listing.text and "张经理" in listing.text
    detail = team["cb"].get(f"/admin/pools/{pool.id}/customer/{cust.id}")
    assert detail.status_code == 200
    assert "13987654321" not in detail.text and "139****4321" in detail.text and "q***@example.com" in detail.text
    assert "退回公海:客户长期联系不上" in detail.text

    r = _post(team["cb"], f"/admin/pools/{pool.id}/claim", {"customer_id": cust.id})
    assert r.status_code == 303, r.text
    c = f.get(Customer, cust.id)
    assert (c.manager_id, c.pool_id) == (team["b"].id, None)
    assert f.get(CustomerCare, task.id).manager_id == team["b"].id
    assert _count(CustomerTransfer, CustomerTransfer.new_manager_id == team["b"].id,
                  CustomerTransfer.reason == "从公海领取") == 1
    assert _count(AuditLog, AuditLog.action == "claim", AuditLog.resource_id == str(cust.id)) == 1
    assert _count(AuditLog, AuditLog.action == "return", AuditLog.resource_id == str(cust.id)) == 1
    # claimed: the claimer sees it on the 360° page, the pool page no longer has it
    assert team["cb"].get(f"/admin/customer/360/{cust.id}").status_code == 200
    assert team["cb"].get(f"/admin/pools/{pool.id}/customer/{cust.id}").status_code == 404
    # the transfer history renders the transfer to nobody
    history = team["cb"].get(f"/admin/transfer/history?customer_id={cust.id}")
    assert history.status_code == 200 and "退回公海:客户长期联系不上" in history.text and "公海" in history.text


def test_pool_scope_by_department(team: dict[str, Any]) -> None:
    east = pf.pool("华东公海")
    pf.access(east.id, dept_id=team["east"])
    cust = pf.pooled(east.id, "华东池客户")
    # a manager of another department: 404 on every page of the pool, and cannot claim by posting ids
    assert "华东公海" not in team["cw"].get("/admin/pools").text
    assert team["cw"].get(f"/admin/pools/{east.id}").status_code == 404
    assert team["cw"].get(f"/admin/pools/{east.id}/customer/{cust.id}").status_code == 404
    assert _post(team["cw"], f"/admin/pools/{east.id}/claim", {"customer_id": cust.id}).status_code == 404
    assert _post(team["cw"], "/admin/pools/return", {"customer_id": f.customer(team["w"].id).id,
                                                      "pool_id": east.id, "reason": "越界退回"}).status_code == 404
    assert f.get(Customer, cust.id).pool_id == east.id
    # a customer of one pool cannot be claimed through another
    other = pf.pool("公共公海")
    assert _post(team["cw"], f"/admin/pools/{other.id}/claim", {"customer_id": cust.id}).status_code == 404
    assert f.get(Customer, cust.id).manager_id is None
    # the department's manager may
    assert "华东池客户" in team["ca"].get(f"/admin/pools/{east.id}").text
    # a role restriction
    pf.access(other.id, role="sales_lead")
    assert team["ca"].get(f"/admin/pools/{other.id}").status_code == 404
    assert team["cl"].get(f"/admin/pools/{other.id}").status_code == 200


def test_manager_cannot_return_anothers_customer(team: dict[str, Any]) -> None:
    pool = pf.pool()
    theirs = f.customer(team["b"].id, "别人的客户")
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": theirs.id, "pool_id": pool.id,
                                                   "reason": "越界退回"})
    assert r.status_code == 404 and "不在您的数据范围内" in r.text
    assert f.get(Customer, theirs.id).manager_id == team["b"].id
    assert "别人的客户" not in team["ca"].get("/admin/pools/return").text
    # the lead's scope is the department
    r = _post(team["cl"], "/admin/pools/return", {"customer_id": theirs.id, "pool_id": pool.id,
                                                   "reason": "主管收回"})
    assert r.status_code == 303
    assert f.get(Customer, theirs.id).pool_id == pool.id


def test_limits_on_claim(team: dict[str, Any]) -> None:
    pool = pf.pool(daily_claim_limit=1)
    c1, c2 = pf.pooled(pool.id), pf.pooled(pool.id)
    r = _post(team["ca"], f"/admin/pools/{pool.id}/claim", {"customer_id": [c1.id, c2.id]})
    assert r.status_code == 400 and "每日领取上限为 1 个" in r.text
    assert _count(Customer, Customer.manager_id == team["a"].id) == 0
    assert _post(team["ca"], f"/admin/pools/{pool.id}/claim", {"customer_id": c1.id}).status_code == 303
    r = _post(team["ca"], f"/admin/pools/{pool.id}/claim", {"customer_id": c2.id})
    assert r.status_code == 400 and "今天最多还能再领取 0 个" in r.text
    # a role row: the manager role may hold 1 customer here
    pf.limit(pool.id, "manager", hold=1, daily=None)
    r = _post(team["cb"], f"/admin/pools/{pool.id}/claim", {"customer_id": c2.id})
    assert r.status_code == 303
    f.customer(team["w"].id)
    r = _post(team["cw"], f"/admin/pools/{pool.id}/claim", {"customer_id": pf.pooled(pool.id).id})
    assert r.status_code == 400 and "持有上限为 1 个" in r.text


def test_lead_assigns_within_scope(team: dict[str, Any]) -> None:
    pool = pf.pool(hold_limit=1)
    c1, c2 = pf.pooled(pool.id, "分配一"), pf.pooled(pool.id, "分配二")
    page = team["cl"].get(f"/admin/pools/{pool.id}")
    assert "分配所选客户" in page.text and "王经理" not in page.text
    # someone outside the lead's department: refused
    r = _post(team["cl"], f"/admin/pools/{pool.id}/assign", {"customer_id": c1.id, "user_id": team["w"].id})
    assert r.status_code == 400 and "不在您的数据范围内" in r.text
    r = _post(team["cl"], f"/admin/pools/{pool.id}/assign", {"customer_id": c1.id, "user_id": team["a"].id})
    assert r.status_code == 303
    assert f.get(Customer, c1.id).manager_id == team["a"].id
    assert _count(CustomerPoolLog, CustomerPoolLog.kind == "assign", CustomerPoolLog.operator_id == team["lead"].id) == 1
    # the assignee's holding limit applies
    r = _post(team["cl"], f"/admin/pools/{pool.id}/assign", {"customer_id": c2.id, "user_id": team["a"].id})
    assert r.status_code == 400 and "持有上限" in r.text
    # managers may not assign
    assert _post(team["ca"], f"/admin/pools/{pool.id}/assign",
                 {"customer_id": c2.id, "user_id": team["a"].id}).status_code == 403


def test_report_counts(team: dict[str, Any], admin_client: Any) -> None:
    from crm_admin.orders.models import CustomerOrder

    pool = pf.pool("报表公海")
    mine = [f.customer(team["a"].id, f"报表客户{i}", status="potential") for i in range(3)]
    r = _post(team["ca"], "/admin/pools/return", {"customer_id": [c.id for c in mine], "pool_id": pool.id,
                                                   "reason": "批量退回"})
    assert r.status_code == 303
    assert _post(team["cb"], f"/admin/pools/{pool.id}/claim", {"customer_id": [mine[0].id, mine[1].id]}).status_code == 303
    # the plain transfer list and its details render a transfer to nobody (a return)
    listing = admin_client.get("/admin/customer-transfer/list")
    assert listing.status_code == 200 and "退回公海:批量退回" in listing.text
    with db.session_factory()() as s:
        returned = s.execute(select(CustomerTransfer.id).where(CustomerTransfer.new_manager_id.is_(None))).scalars().first()
    assert admin_client.get(f"/admin/customer-transfer/details/{returned}").status_code == 200
    import datetime as dt

    from crm_admin.core.formatting import local_today
    f.add(CustomerOrder(order_no="POOL-1", customer_id=mine[0].id, order_date=local_today() + dt.timedelta(days=1),
                        amount=100, status="completed", manager_id=team["b"].id))
    page = admin_client.get("/admin/pools/report")
    assert page.status_code == 200
    row = re.search(r"<tr><td>报表公海</td><td>[\d-]+</td>(.*?)</tr>", page.text, re.S)
    assert row, page.text
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    # returned, reclaimed, in, claimed, assigned, out, deals, rate
    assert cells == ["3", "0", "3", "2", "0", "2", "1", "50.0%"]
    assert team["cl"].get("/admin/pools/report").status_code == 200
    assert team["ca"].get("/admin/pools/report").status_code == 403


def test_pages_render_for_every_role(team: dict[str, Any], admin_client: Any) -> None:
    pool = pf.pool("展示公海")
    cust = pf.pooled(pool.id, "展示客户", phone="13811112222")
    for client in (admin_client, team["ca"], team["cl"]):
        assert client.get("/admin/pools").status_code == 200
        page = client.get(f"/admin/pools/{pool.id}", params={"q": "展示", "min_days": "1", "sort": "newest"})
        assert page.status_code == 200 and "展示客户" in page.text and "13811112222" not in page.text
        assert client.get(f"/admin/pools/{pool.id}/customer/{cust.id}").status_code == 200
    assert admin_client.get(f"/admin/pools/{pool.id}/settings").status_code == 200
    # the customer list links to the return page; the 360° page offers the return form
    mine = f.customer(team["a"].id, "三六零客户")
    assert "所选客户退回公海" in team["ca"].get("/admin/customer/list").text
    assert "pool-return-360" in team["ca"].get(f"/admin/customer/360/{mine.id}").text


def _at_once(posts: list[tuple[Any, str, dict[str, Any]]]) -> list[Any]:
    """Send the posts from one thread each, released together; their responses in order."""
    tokens = [csrf_token(client) for client, _url, _data in posts]
    barrier = threading.Barrier(len(posts))
    results: list[Any] = [None] * len(posts)

    def go(i: int) -> None:
        client, url, data = posts[i]
        barrier.wait()
        results[i] = client.post(url, data={"csrf_token": tokens[i], **data}, follow_redirects=False)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(posts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.skipif(not IS_MYSQL, reason="row locks under real concurrency: a MariaDB/MySQL matter")
def test_two_users_claim_the_same_customer_at_once(team: dict[str, Any]) -> None:
    pool = pf.pool()
    for _round in range(3):
        cust = pf.pooled(pool.id)
        url = f"/admin/pools/{pool.id}/claim"
        results = _at_once([(team["ca"], url, {"customer_id": cust.id}), (team["cb"], url, {"customer_id": cust.id})])
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 303 and codes[1] in (404, 409), [(r.status_code, r.text[:300]) for r in results]
        loser = next(r for r in results if r.status_code != 303)
        assert "已被他人领取" in loser.text or "已不在该公海中" in loser.text
        winner = [team["a"].id, team["b"].id][results.index(next(r for r in results if r.status_code == 303))]
        assert f.get(Customer, cust.id).manager_id == winner
        assert _count(CustomerPoolLog, CustomerPoolLog.customer_id == cust.id, CustomerPoolLog.kind == "claim") == 1
        assert _count(CustomerTransfer, CustomerTransfer.customer_id == cust.id) == 1


@pytest.mark.skipif(not IS_MYSQL, reason="row locks under real concurrency: a MariaDB/MySQL matter")
def test_one_user_claiming_twice_at_once_stays_within_the_daily_limit(team: dict[str, Any], login_as: Any) -> None:
    pool = pf.pool(daily_claim_limit=1)
    c1, c2 = pf.pooled(pool.id), pf.pooled(pool.id)
    url = f"/admin/pools/{pool.id}/claim"
    results = _at_once([(team["ca"], url, {"customer_id": c1.id}), (login_as("mgr_a"), url, {"customer_id": c2.id})])
    assert sorted(r.status_code for r in results) == [303, 400], [(r.status_code, r.text[:300]) for r in results]
    assert _count(Customer, Customer.manager_id == team["a"].id) == 1


def test_pool_customers_leave_only_by_claim_or_assignment(team: dict[str, Any], admin_client: Any) -> None:
    pool = pf.pool()
    cust = pf.pooled(pool.id, "公海里的客户")
    # the transfer page neither offers nor moves it
    assert "公海里的客户" not in admin_client.get("/admin/transfer").text
    r = _post(admin_client, "/admin/transfer/submit", {"customer_id": cust.id, "new_manager_id": team["a"].id,
                                                       "reason": "直接转移"})
    assert r.status_code == 404
    # the customer form refuses a manager for it
    form = admin_client.get(f"/admin/customer/edit/{cust.id}")
    version = re.search(r'name="version"[^>]*value="(\d+)"', form.text) or re.search(
        r'value="(\d+)"[^>]*name="version"', form.text)
    r = _post(admin_client, f"/admin/customer/edit/{cust.id}", {
        "name": "公海里的客户", "status": "potential", "manager": team["a"].id,
        "version": version.group(1) if version else "1"})
    assert "请到公海页面领取或分配" in r.text
    c = f.get(Customer, cust.id)
    assert (c.manager_id, c.pool_id) == (None, pool.id)


def test_pool_page_costs_the_same_statements_whatever_its_rows(team: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import statements_sent

    # the dictionary re-checks its version every 2 s: not part of the page's cost
    monkeypatch.setattr("crm_admin.dictionary.service._CHECK_EVERY", 3600.0)
    pool = pf.pool()
    for i in range(3):
        cust = pf.pooled(pool.id, f"少量{i}")
        f.add(CustomerPoolLog(customer_id=cust.id, pool_id=pool.id, kind="return", user_id=team["a"].id,
                              operator_id=team["a"].id, reason="退回"))
    client = team["cb"]
    client.get(f"/admin/pools/{pool.id}")  # warm-up (policy, dictionaries)
    with statements_sent() as few:
        assert client.get(f"/admin/pools/{pool.id}").status_code == 200
    for i in range(30):
        cust = pf.pooled(pool.id, f"大量{i}")
        f.add(CustomerPoolLog(customer_id=cust.id, pool_id=pool.id, kind="reclaim", user_id=team["b"].id,
                              reason="自动回收"))
    with statements_sent() as many:
        page = client.get(f"/admin/pools/{pool.id}")
    assert page.status_code == 200 and "大量29" in page.text
    assert len(many) == len(few), "\n".join(many)


def test_masking_rule_follows_the_pool_setting(team: dict[str, Any]) -> None:
    from crm_admin.core.masking import customers_masked_for
    from tests.pools.test_service import _principal

    masked_pool = pf.pool("隐藏公海", mask_contacts=True)
    open_pool = pf.pool("公开公海", mask_contacts=False)
    a, b = pf.pooled(masked_pool.id), pf.pooled(open_pool.id)
    mine = f.customer(team["a"].id)
    from crm_admin.pools.models import _masked_in_pools

    with db.session_factory()() as s:
        principal = _principal(team["b"].id)
        assert _masked_in_pools(s, principal, [a.id, b.id, mine.id]) == {a.id}
        # whatever else masks (the sensitive-data permission), a masked pool's customer is masked
        assert a.id in customers_masked_for(s, principal, [a.id, b.id, mine.id])
    # claimed: the pool rule no longer masks it
    assert _post(team["cb"], f"/admin/pools/{masked_pool.id}/claim", {"customer_id": a.id}).status_code == 303
    with db.session_factory()() as s:
        assert _masked_in_pools(s, _principal(team["b"].id), [a.id]) == set()


def test_menu_entry_for_those_who_may_use_pools(team: dict[str, Any], login_as: Any, make_user: Any) -> None:
    assert "公海客户" in team["ca"].get("/admin/pools").text
    make_user("ro_p", ["readonly"])
    ro = login_as("ro_p")
    assert "公海客户" not in ro.get("/admin/").text
    assert ro.get("/admin/pools").status_code == 403
