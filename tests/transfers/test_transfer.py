from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.customers.models import Customer
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.transfers.models import CustomerTransfer
from tests.care import factories as f
from tests.conftest import IS_MYSQL, csrf_token


def _post(client: Any, data: dict[str, Any]) -> Any:
    return client.post("/admin/transfer/submit", data={"csrf_token": csrf_token(client), **data},
                       follow_redirects=False)


def _count(model: type, *where: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


@pytest.fixture
def people(make_user: Any, login_as: Any) -> dict[str, Any]:
    a = make_user("mgr_a", real_name="张经理")
    b = make_user("mgr_b", real_name="李经理")
    c = make_user("mgr_c", real_name="王经理")
    return {"a": a, "b": b, "c": c, "ca": login_as("mgr_a"), "cb": login_as("mgr_b"), "cc": login_as("mgr_c")}


def _customer_with_work(manager_id: int, name: str) -> tuple[Any, Any, Any, Any, Any]:
    """A customer with a pending and a done care task, a care plan and an open opportunity."""
    import datetime as dt

    cust = f.customer(manager_id, name)
    return (cust, f.care(cust.id, manager_id), f.care(cust.id, manager_id, status="done"),
            f.plan(cust.id, manager_id, next_date=dt.date(2030, 1, 1)), f.opportunity(cust.id, manager_id))


def test_manager_transfers_customer_and_everything_follows(people: dict[str, Any]) -> None:
    a, b = people["a"], people["b"]
    cust, pending, done, plan, opp = _customer_with_work(a.id, "转移测试公司")
    won = f.opportunity(cust.id, a.id, status="won")

    page = people["ca"].get("/admin/transfer")
    assert page.status_code == 200 and "转移测试公司" in page.text
    r = _post(people["ca"], {"customer_id": cust.id, f"version_{cust.id}": 1,
                             "new_manager_id": b.id, "reason": "岗位调整,由李经理接手"})
    assert r.status_code == 303, r.text

    assert f.get(Customer, cust.id).manager_id == b.id
    assert f.get(CustomerCare, pending.id).manager_id == b.id
    assert f.get(CustomerCare, done.id).manager_id == a.id  # history keeps who did it
    assert f.get(CarePlan, plan.id).manager_id == b.id
    assert f.get(SalesOpportunity, opp.id).manager_id == b.id
    assert f.get(SalesOpportunity, won.id).manager_id == a.id
    with db.session_factory()() as s:
        t = s.execute(select(CustomerTransfer)).scalar_one()
        assert (t.customer_id, t.old_manager_id, t.new_manager_id, t.operator_id) == (cust.id, a.id, b.id, a.id)
        assert t.reason == "岗位调整,由李经理接手" and t.transferred_at is not None
        labelled = set(s.execute(select(AuditLog.resource).where(AuditLog.action == "transfer")).scalars())
    assert {"customer", "transfer"} <= labelled

    # from now on the new manager has the customer and what hangs off it; the old one gets 404
    assert people["ca"].get(f"/admin/customer/details/{cust.id}").status_code == 404
    assert people["cb"].get(f"/admin/customer/details/{cust.id}").status_code == 200
    hist_b = people["cb"].get(f"/admin/transfer/history?customer_id={cust.id}")
    assert "岗位调整" in hist_b.text
    # the manager who handed the customer over (here also the operator) still sees that it moved;
    # someone not involved does not
    assert "岗位调整" in people["ca"].get("/admin/transfer/history").text
    assert "岗位调整" not in people["cc"].get("/admin/transfer/history").text
    assert "转移测试公司" not in people["ca"].get("/admin/transfer").text


@pytest.mark.parametrize("reason", ["", "   ", "好", "长" * 501])
def test_reason_is_required_and_bounded(people: dict[str, Any], reason: str) -> None:
    cust = f.customer(people["a"].id)
    r = _post(people["ca"], {"customer_id": cust.id, "new_manager_id": people["b"].id, "reason": reason})
    assert r.status_code == 400
    assert "转移原因" in r.text
    assert f.get(Customer, cust.id).manager_id == people["a"].id
    assert _count(CustomerTransfer) == 0


def test_other_managers_customer_is_not_found(people: dict[str, Any]) -> None:
    mine = f.customer(people["a"].id)
    theirs = f.customer(people["c"].id)
    r = _post(people["ca"], {"customer_id": [mine.id, theirs.id], "new_manager_id": people["b"].id,
                             "reason": "越权尝试"})
    assert r.status_code == 404
    # all or nothing: the own customer did not move either
    assert f.get(Customer, mine.id).manager_id == people["a"].id
    assert f.get(Customer, theirs.id).manager_id == people["c"].id
    assert _count(CustomerTransfer) == 0


def test_new_manager_must_be_active_and_able_to_own(people: dict[str, Any], make_user: Any) -> None:
    ro = make_user("viewer", roles=("readonly",))
    cust = f.customer(people["a"].id)
    r = _post(people["ca"], {"customer_id": cust.id, "new_manager_id": ro.id, "reason": "交给只读用户"})
    assert r.status_code == 400 and "不能负责客户" in r.text
    r = _post(people["ca"], {"customer_id": cust.id, "new_manager_id": 999999, "reason": "不存在的人"})
    assert r.status_code == 400
    assert f.get(Customer, cust.id).manager_id == people["a"].id


def test_stale_version_is_refused(people: dict[str, Any]) -> None:
    cust = f.customer(people["a"].id)
    r = _post(people["ca"], {"customer_id": cust.id, f"version_{cust.id}": 7,
                             "new_manager_id": people["b"].id, "reason": "版本过期"})
    assert r.status_code == 409 and "刷新" in r.text
    assert f.get(Customer, cust.id).manager_id == people["a"].id


def test_readonly_cannot_open_or_post(make_user: Any, login_as: Any, people: dict[str, Any]) -> None:
    make_user("viewer2", roles=("readonly",))
    c = login_as("viewer2")
    cust = f.customer(people["a"].id)
    # may read the history (transfer:list) but is never shown the form it cannot use
    page = c.get("/admin/transfer", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].endswith("/admin/transfer/history")
    assert c.get("/admin/transfer/history").status_code == 200
    r = _post(c, {"customer_id": cust.id, "new_manager_id": people["b"].id, "reason": "只读用户"})
    assert r.status_code == 403
    assert f.get(Customer, cust.id).manager_id == people["a"].id


def test_post_without_csrf_token_is_refused(people: dict[str, Any]) -> None:
    cust = f.customer(people["a"].id)
    r = people["ca"].post("/admin/transfer/submit", data={"customer_id": cust.id,
                          "new_manager_id": people["b"].id, "reason": "无令牌"}, follow_redirects=False)
    assert r.status_code == 403
    assert f.get(Customer, cust.id).manager_id == people["a"].id


def test_admin_hands_over_all_customers_of_a_leaver(people: dict[str, Any], admin_client: Any) -> None:
    a, b = people["a"], people["b"]
    custs = [f.customer(a.id) for _ in range(3)]
    other = f.customer(people["c"].id)
    task = f.care(custs[0].id, a.id)
    stray = f.care(other.id, a.id)  # the leaver's pending task on a customer someone else manages
    r = admin_client.post("/admin/transfer/handover", data={
        "csrf_token": csrf_token(admin_client), "from_user_id": a.id, "to_user_id": b.id,
        "reason": "员工离职交接"})
    assert r.status_code == 200 and "交接完成" in r.text, r.text
    assert "3 个客户" in r.text and "1 条待办关怀" in r.text
    assert all(f.get(Customer, c.id).manager_id == b.id for c in custs)
    assert f.get(Customer, other.id).manager_id == people["c"].id
    assert f.get(CustomerCare, task.id).manager_id == b.id
    assert f.get(CustomerCare, stray.id).manager_id == people["c"].id
    assert _count(CustomerTransfer, CustomerTransfer.old_manager_id == a.id) == 3
    # a manager may not use the hand-over
    assert people["cb"].get("/admin/transfer/handover").status_code == 403


def test_concurrent_transfers_of_one_customer_exactly_one_wins(
    people: dict[str, Any], admin_client: Any
) -> None:
    """Two real requests at once (threads, separate connections): one succeeds, one is refused."""
    cust = f.customer(people["a"].id, "并发转移公司")
    f.care(cust.id, people["a"].id)
    clients = [people["ca"], admin_client]
    targets = [people["b"].id, people["c"].id]
    tokens = [csrf_token(c) for c in clients]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def go(i: int) -> None:
        barrier.wait()
        results[i] = clients[i].post("/admin/transfer/submit", data={
            "csrf_token": tokens[i], "customer_id": cust.id, f"version_{cust.id}": 1,
            "new_manager_id": targets[i], "reason": f"并发转移{i}"}, follow_redirects=False)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 303 and codes[1] in (404, 409), [(r.status_code, r.text[:300]) for r in results]
    loser = next(r for r in results if r.status_code != 303)
    assert re.search("已被转移|已被其他人转移|刷新", loser.text)
    winner = results.index(next(r for r in results if r.status_code == 303))
    assert f.get(Customer, cust.id).manager_id == targets[winner]
    assert _count(CustomerTransfer) == 1
    with db.session_factory()() as s:
        task_manager = s.execute(select(CustomerCare.manager_id)).scalar_one()
    assert task_manager == targets[winner]


@pytest.mark.skipif(not IS_MYSQL, reason="row locks are a MariaDB/MySQL matter")
def test_concurrent_service_calls_on_mariadb_without_versions(people: dict[str, Any]) -> None:
    """The owner and a second transfer race with no version given: the row lock decides."""
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.errors import UserError
    from crm_admin.core.principal import load_principal
    from crm_admin.transfers.service import transfer_customers

    cust = f.customer(people["a"].id)
    with db.session_factory()() as s:
        principal = load_principal(s.connection(), s.get(SysUser, people["a"].id))
    barrier = threading.Barrier(4)
    outcome: list[str] = []
    lock = threading.Lock()

    def go(target: int) -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                transfer_customers(session, principal, customer_ids=[cust.id], new_manager_id=target,
                                   reason="并发服务调用")
            res = "ok"
        except UserError as exc:
            res = exc.message
        with lock:
            outcome.append(res)

    threads = [threading.Thread(target=go, args=(t,)) for t in
               (people["b"].id, people["c"].id, people["b"].id, people["c"].id)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcome.count("ok") == 1, outcome
    assert _count(CustomerTransfer) == 1


def test_eligible_managers_are_active_owning_roles(people: dict[str, Any], make_user: Any) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.errors import UserError
    from crm_admin.core.principal import load_principal
    from crm_admin.core.scope import TRANSFER, assignable_users, check_assignee

    make_user("viewer3", roles=("readonly",))
    lead = make_user("lead1", roles=("sales_lead",))
    gone = make_user("gone1")
    with db.transaction() as s:
        u = s.get(SysUser, gone.id)
        assert u is not None
        u.is_active = False
    with db.session_factory()() as s:
        operator = load_principal(s.connection(), s.get(SysUser, people["a"].id))
        names = {u.username for u in assignable_users(s, operator, purpose=TRANSFER)}
        assert {"mgr_a", "mgr_b", "mgr_c", "lead1", "admin"} <= names
        assert "viewer3" not in names and "gone1" not in names

        def accepted(user: SysUser) -> bool:
            try:
                check_assignee(s, operator, user.id, purpose=TRANSFER)
            except UserError:
                return False
            return True

        assert {u.username for u in s.execute(select(SysUser)).scalars() if accepted(u)} == names
    assert lead.id


def test_sales_lead_transfers_within_department_only(make_user: Any, login_as: Any) -> None:
    from crm_admin.accounts.models import SysDept

    east = f.add(SysDept(name="华东销售部"))
    west = f.add(SysDept(name="华西销售部"))
    make_user("lead_e", roles=("sales_lead",), dept_id=east.id)
    m_east = make_user("m_east", dept_id=east.id)
    m_east2 = make_user("m_east2", dept_id=east.id)
    m_west = make_user("m_west", dept_id=west.id)
    team = f.customer(m_east.id, "华东客户")
    other = f.customer(m_west.id, "华西客户")
    lead = login_as("lead_e")
    page = lead.get("/admin/transfer").text
    assert "华东客户" in page and "华西客户" not in page
    assert _post(lead, {"customer_id": team.id, "new_manager_id": m_east2.id, "reason": "组内调整"}).status_code == 303
    assert f.get(Customer, team.id).manager_id == m_east2.id
    r = _post(lead, {"customer_id": other.id, "new_manager_id": m_east2.id, "reason": "跨部门抢客户"})
    assert r.status_code == 404
    assert f.get(Customer, other.id).manager_id == m_west.id


def _edit_customer(client: Any, cust: Any, **fields: Any) -> Any:
    from tests.customers.conftest import form_token

    page = client.get(f"/admin/customer/edit/{cust.id}")
    assert page.status_code == 200
    data = {"name": cust.name, "status": "active", "version": str(f.get(Customer, cust.id).version),
            "csrf_token": form_token(page.text), **fields}
    return client.post(f"/admin/customer/edit/{cust.id}", data=data, follow_redirects=False)


def test_admin_changing_the_manager_in_the_form_hands_over_like_a_transfer(
        people: dict[str, Any], admin_client: Any) -> None:
    a, b = people["a"], people["b"]
    cust, pending, done, plan, opp = _customer_with_work(a.id, "表单换人公司")
    r = _edit_customer(admin_client, cust, manager=str(b.id))
    assert r.status_code == 302, r.text[:2000]

    assert f.get(Customer, cust.id).manager_id == b.id
    assert f.get(CustomerCare, pending.id).manager_id == b.id
    assert f.get(CustomerCare, done.id).manager_id == a.id
    assert f.get(CarePlan, plan.id).manager_id == b.id
    assert f.get(SalesOpportunity, opp.id).manager_id == b.id
    with db.session_factory()() as s:
        t = s.execute(select(CustomerTransfer)).scalar_one()
        assert (t.customer_id, t.old_manager_id, t.new_manager_id) == (cust.id, a.id, b.id)
        assert t.reason == "在客户资料中更换客户经理"
        summary = s.execute(select(AuditLog).where(AuditLog.action == "transfer",
                                                   AuditLog.resource == "customer")).scalar_one()
    assert summary.changes["care_tasks"] == 1 and summary.changes["opportunities"] == 1
    # the new manager's workbench has the task, the old one's does not
    assert "表单换人公司" in people["cb"].get("/admin/care/workbench").text
    assert "表单换人公司" not in people["ca"].get("/admin/care/workbench").text

    # saving the form again without a change of manager moves nothing and writes no transfer
    r = _edit_customer(admin_client, cust, manager=str(b.id), remark="只改备注")
    assert r.status_code == 302, r.text[:2000]
    assert _count(CustomerTransfer) == 1


def test_form_refuses_a_manager_who_cannot_own_customers(
        people: dict[str, Any], admin_client: Any, make_user: Any) -> None:
    a = people["a"]
    viewer = make_user("viewer_x", roles=("readonly",))
    cust = f.customer(a.id, "只读不能负责公司")
    task = f.care(cust.id, a.id)
    r = _edit_customer(admin_client, cust, manager=str(viewer.id))
    assert r.status_code == 400 and "不能负责客户" in r.text
    assert f.get(Customer, cust.id).manager_id == a.id
    assert f.get(CustomerCare, task.id).manager_id == a.id
    assert _count(CustomerTransfer) == 0


def test_merge_hands_the_dropped_customers_open_work_to_the_kept_customers_manager(
        people: dict[str, Any]) -> None:
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.customers.service import merge_customers
    from tests.customers.conftest import principal_for

    a, b = people["a"], people["b"]
    keep = f.customer(a.id, "保留公司")
    drop = f.customer(b.id, "并入公司")
    pending = f.care(drop.id, b.id)
    done = f.care(drop.id, b.id, status="done")
    opp = f.opportunity(drop.id, b.id)
    with acting_as(SYSTEM), db.transaction() as s:
        moved = merge_customers(s, principal_for("admin"), keep_id=keep.id, drop_id=drop.id)
    assert moved["care_tasks_handed_over"] == 1 and moved["opportunities_handed_over"] == 1
    assert f.get(CustomerCare, pending.id).manager_id == a.id
    assert f.get(CustomerCare, done.id).manager_id == b.id
    assert f.get(SalesOpportunity, opp.id).manager_id == a.id
    assert "保留公司" in people["ca"].get("/admin/care/workbench").text


def test_manager_cannot_hand_a_customer_over_through_the_form(people: dict[str, Any]) -> None:
    a, b = people["a"], people["b"]
    cust = f.customer(a.id, "不能在表单里转走的公司")
    task = f.care(cust.id, a.id)
    r = _edit_customer(people["ca"], cust, manager=str(b.id))
    assert r.status_code in (400, 403) and "客户转移" in r.text
    assert f.get(Customer, cust.id).manager_id == a.id
    assert f.get(CustomerCare, task.id).manager_id == a.id
    assert _count(CustomerTransfer) == 0
    # the same form without a change of manager still saves
    r = _edit_customer(people["ca"], cust, manager=str(a.id), remark="只改备注")
    assert r.status_code == 302, r.text[:2000]


@pytest.mark.parametrize("bad", ["abc", "999999", "-1"])
def test_form_with_a_manager_that_is_no_user_is_refused_clearly(
        people: dict[str, Any], admin_client: Any, bad: str) -> None:
    cust = f.customer(people["a"].id, "坏值公司")
    r = _edit_customer(admin_client, cust, manager=bad)
    assert r.status_code == 400
    assert "不存在" in r.text and "invalid literal" not in r.text
    assert f.get(Customer, cust.id).manager_id == people["a"].id
    assert _count(CustomerTransfer) == 0
