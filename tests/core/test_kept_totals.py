"""The totals kept beside the open opportunities and the care tasks (``core/totals.py``): after every kind
of write — pages, forms, deletes, transfers, a leaver's hand-over, the daily jobs' bulk inserts and the
repair of stray tasks — each equals a direct count of its table, and the pages that read them show what
counting the rows gives. ``crm-admin totals`` finds a count changed behind the application's back and
``--fix`` counts it again. (The writes of ``tests/customers/test_manager_copies.py`` check them too.)"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from crm_admin import db
from crm_admin.care.models import CareTaskDayTotal, CustomerCare
from crm_admin.core import totals
from crm_admin.core.context import SYSTEM, Actor, acting_as
from crm_admin.core.formatting import local_today
from crm_admin.opportunities.models import OpportunityOpenTotal, SalesOpportunity
from crm_admin.opportunities.service import PipelineFilter, open_by_stage, pipeline
from tests.care import factories as f
from tests.cli.runner import run_cli
from tests.company import World
from tests.conftest import IS_MYSQL, csrf_token
from tests.customers.conftest import form_token, principal_for


def assert_exact() -> None:
    with db.get_engine().connect() as conn:
        assert {t.name: totals.differences(conn, t) for t in totals.registered()} == {
            "care_task_day_total": 0, "opportunity_open_total": 0}


def _kept(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _post(client: Any, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client), **data}, follow_redirects=False)


@pytest.fixture
def tasks(world: World) -> dict[str, int]:
    """Dated care tasks of mgr_a and mgr_b (today, overdue, upcoming, closed) and one of nobody's."""
    today = local_today()
    out = {}
    for owner in ("mgr_a", "mgr_b"):
        cid, mid = world.row(owner, "customer"), world.users[owner]
        out[f"{owner}_today"] = f.care(cid, mid, due_date=today).id
        out[f"{owner}_late"] = f.care(cid, mid, due_date=today - dt.timedelta(days=3)).id
        out[f"{owner}_soon"] = f.care(cid, mid, due_date=today + dt.timedelta(days=2)).id
        out[f"{owner}_done"] = f.care(cid, mid, due_date=today - dt.timedelta(days=5), status="done").id
    out["nobody"] = f.care(f.customer(None, "无经理客户").id, None, due_date=today).id
    assert_exact()
    return out


def test_care_tasks_worked_through_the_pages_keep_the_counts(world: World, tasks: dict[str, int],
                                                              login_as: Any, admin_client: Any) -> None:
    a = login_as("mgr_a")
    task = tasks["mgr_a_today"]
    r = _post(a, "/admin/care/execute", {"care_id": task, "care_type": "visit", "care_time": "", "detail": "上门"})
    assert r.status_code == 303, r.text[:500]
    r = _post(a, "/admin/care/feedback", {"care_id": task, "feedback": "满意", "status": "done"})
    assert r.status_code == 303, r.text[:500]
    assert f.get(CustomerCare, task).status == "done"
    assert_exact()
    r = _post(a, "/admin/care/feedback", {"care_id": tasks["mgr_a_late"], "feedback": "客户拒绝", "status": "cancelled"})
    assert r.status_code == 303, r.text[:500]
    # a care record entered by hand, closed at once
    r = _post(a, "/admin/care/manual", {"customer_id": world.row("mgr_a", "customer"), "care_type": "visit",
                                        "care_time": "", "detail": "电话", "feedback": "好"})
    assert r.status_code == 303, r.text[:500]
    assert_exact()
    # the record's form moves it to another day; another manager's probe changes nothing
    soon = tasks["mgr_a_soon"]
    page = admin_client.get(f"/admin/customer-care/edit/{soon}")
    assert page.status_code == 200
    r = admin_client.post(f"/admin/customer-care/edit/{soon}", data={
        "customer": str(world.row("mgr_a", "customer")), "care_type": "visit",
        "due_date": (local_today() + dt.timedelta(days=6)).isoformat(), "detail": "改期",
        "csrf_token": form_token(page.text)}, follow_redirects=False)
    assert r.status_code == 302, r.text[:2000]
    assert f.get(CustomerCare, soon).due_date == local_today() + dt.timedelta(days=6)
    assert_exact()
    r = admin_client.delete(f"/admin/customer-care/delete?pks={tasks['mgr_b_done']}",
                            headers={"X-CSRF-Token": csrf_token(admin_client)})
    assert r.status_code == 200, r.text[:500]
    assert f.get(CustomerCare, tasks["mgr_b_done"]) is None
    assert_exact()


def test_transfer_leaver_and_realigned_tasks_keep_the_counts(world: World, tasks: dict[str, int]) -> None:
    from crm_admin.care.service import realign_pending_tasks
    from crm_admin.transfers.service import hand_over_customers, transfer_customers

    admin = principal_for("admin")
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        transfer_customers(s, admin, customer_ids=[world.row("mgr_a", "customer")], new_manager_id=world.users["mgr_c"],
                           reason="调整")
    assert f.get(CustomerCare, tasks["mgr_a_late"]).manager_id == world.users["mgr_c"]
    assert_exact()
    # a pending task assigned to someone else than its customer's manager (an ORM write, so counted)
    with acting_as(SYSTEM), db.transaction() as s:
        stray = s.get(CustomerCare, tasks["mgr_b_soon"])
        assert stray is not None
        stray.manager_id = world.users["mgr_a"]
    assert_exact()
    with acting_as(SYSTEM), db.transaction() as s:
        assert realign_pending_tasks(s) == 1
    assert f.get(CustomerCare, tasks["mgr_b_soon"]).manager_id == world.users["mgr_b"]
    assert_exact()
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        hand_over_customers(s, admin, from_user_id=world.users["mgr_b"], to_user_id=world.users["mgr_c"],
                            reason="离职交接")
    assert_exact()


def test_the_workbench_counts_equal_the_rows(world: World, tasks: dict[str, int]) -> None:
    from crm_admin.care.service import completion_by_manager, workbench

    today = local_today()
    for name in ("admin", "lead", "mgr_a"):
        p = principal_for(name)
        with db.session_factory()() as s:
            wb = workbench(s, p, today)
            lines = {c.manager_id: (c.total, c.done, c.pending, c.overdue)
                     for c in completion_by_manager(s, p, today - dt.timedelta(days=30), today, today)}
            rows = s.execute(select(CustomerCare.manager_id, CustomerCare.due_date, CustomerCare.status)).all()
        seen = {world.users["mgr_a"]} if name == "mgr_a" else (
            {world.users["mgr_a"], world.users["mgr_b"]} if name == "lead" else {*world.users.values(), None})
        mine = [(m, d, st) for m, d, st in rows if m in seen and d is not None]
        pending = [d for _m, d, st in mine if st == "pending"]
        assert (wb.today.total, wb.overdue.total, wb.upcoming.total) == (
            sum(d == today for d in pending), sum(d < today for d in pending),
            sum(today < d <= today + dt.timedelta(days=7) for d in pending)), name
        want: dict[int | None, list[int]] = {}
        for m, d, st in mine:
            if today - dt.timedelta(days=30) <= d <= today:
                line = want.setdefault(m, [0, 0, 0, 0])
                line[0] += 1
                line[1] += st == "done"
                line[2] += st == "pending"
                line[3] += st == "pending" and d < today
        assert lines == {m: tuple(v) for m, v in want.items()}, name
    assert (wb.today.total, wb.overdue.total, wb.upcoming.total) == (1, 1, 1)


def test_opportunities_changed_in_forms_on_the_board_and_deleted_keep_the_sums(world: World, admin_client: Any,
                                                                            login_as: Any) -> None:
    opp_id = world.row("mgr_a", "opportunity")
    page = admin_client.get(f"/admin/sales-opportunity/edit/{opp_id}")
    with db.session_factory()() as s:
        opp = s.get(SalesOpportunity, opp_id)
        assert opp is not None
        data = {"customer": str(opp.customer_id), "title": opp.title, "stage": "proposal", "amount": "2345.67",
                "probability": "40", "status": "open", "version": str(opp.version), "csrf_token": form_token(page.text)}
    r = admin_client.post(f"/admin/sales-opportunity/edit/{opp_id}", data=data, follow_redirects=False)
    assert r.status_code == 302, r.text[:2000]
    assert_exact()
    with db.session_factory()() as s:
        sums = open_by_stage(s, principal_for("lead"))
    assert (sums["proposal"].count, sums["proposal"].amount, sums["proposal"].weighted) == (
        1, Decimal("2345.67"), Decimal("93826.80"))
    b = login_as("mgr_b")
    with db.session_factory()() as s:
        version = s.get(SalesOpportunity, world.row("mgr_b", "opportunity")).version  # type: ignore[union-attr]
    r = _post(b, "/admin/pipeline/move", {"opportunity_id": world.row("mgr_b", "opportunity"), "stage": "contract",
                                          "version": version})
    assert r.status_code in (200, 303), r.text[:500]
    assert_exact()
    r = admin_client.delete(f"/admin/sales-opportunity/delete?pks={world.row('mgr_c', 'opportunity')}",
                            headers={"X-CSRF-Token": csrf_token(admin_client)})
    assert r.status_code == 200, r.text[:500]
    assert_exact()
    # what the pipeline shows (read from the totals) is what counting the rows gives
    with db.session_factory()() as s:
        rows = s.execute(select(SalesOpportunity.stage, func.count(), func.sum(SalesOpportunity.amount))
                         .where(SalesOpportunity.status == "open").group_by(SalesOpportunity.stage)).all()
        shown = {c.value: (c.count, c.total) for c in pipeline(s, principal_for("admin"), PipelineFilter()) if c.count}
    assert shown == {stage: (n, Decimal(str(amount)).quantize(Decimal("0.01"))) for stage, n, amount in rows}
    assert _kept(OpportunityOpenTotal) == len(rows)  # no group left at zero


@pytest.mark.cli_command("totals")
def test_the_check_command_finds_and_recounts_totals_changed_behind_the_applications_back(
        world: World, tasks: dict[str, int]) -> None:
    result = run_cli("totals")
    assert result.exit_code == 0 and "全部一致" in result.output, result.output
    with db.get_engine().begin() as conn:  # e.g. a manual UPDATE in the database
        conn.execute(update(SalesOpportunity).where(SalesOpportunity.id == world.row("mgr_a", "opportunity"))
                     .values(stage="contract"))
        conn.execute(update(CustomerCare).where(CustomerCare.id == tasks["mgr_a_late"]).values(status="done"))
    result = run_cli("totals")
    assert result.exit_code == 1, result.output
    assert "opportunity_open_total: 2 组不一致" in result.output and "care_task_day_total: 2 组不一致" in result.output
    assert "--fix" in result.output
    result = run_cli("totals", "--fix")
    assert result.exit_code == 0 and "已重新计数" in result.output, result.output
    assert_exact()
    with db.session_factory()() as s:
        from crm_admin.audit.models import AuditLog

        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.detail.like("重新计数汇总%"))).scalar_one() == 2
    assert _kept(CareTaskDayTotal) > 0


@pytest.mark.skipif(not IS_MYSQL, reason="MariaDB/MySQL only (set CRM_TEST_DATABASE_URL)")
def test_concurrent_writes_to_the_same_groups_stay_exact(world: World) -> None:
    """Four threads at once move opportunities between the same stages, close care tasks of the same day
    and manager, and transfer a customer back and forth: each group's row is added to, never written
    over, so the totals still equal a direct count (deadlocks, if any, are retried)."""
    import threading

    from crm_admin.care.service import record_feedback
    from crm_admin.opportunities.service import move_stage
    from crm_admin.transfers.service import transfer_customers

    today = local_today()
    cid = world.row("mgr_a", "customer")
    mid = world.users["mgr_a"]
    opps = [f.opportunity(cid, mid, amount=f"{100 + n}.25").id for n in range(8)]
    cares = [f.care(cid, mid, due_date=today, care_time=dt.datetime.now(dt.UTC), detail="已执行").id
             for _ in range(8)]
    admin = principal_for("admin")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with acting_as(Actor(admin.id, admin.username)):
                _work(n)
        except BaseException as exc:
            errors.append(exc)

    def move(opp_id: int, stage: str) -> None:
        def unit(s: Any) -> None:
            move_stage(s, admin, opportunity_id=opp_id, stage=stage)
        db.run_in_transaction(unit, where="test")

    def close(care_id: int) -> None:
        def unit(s: Any) -> None:
            record_feedback(s, admin, care_id, feedback="好", status="done")
        db.run_in_transaction(unit, where="test")

    def transfer(target: str) -> None:
        def unit(s: Any) -> None:
            transfer_customers(s, admin, customer_ids=[cid], new_manager_id=world.users[target], reason="来回")
        db.run_in_transaction(unit, where="test")

    def _work(n: int) -> None:
        for stage in ("proposal", "contract", "initial"):
            for opp_id in opps[n::4]:
                move(opp_id, stage)
        for care_id in cares[n::4]:
            close(care_id)
        if n == 0:
            for target in ("mgr_c", "mgr_a"):
                transfer(target)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_exact()


def test_records_deleted_to_the_recycle_bin_and_restored_keep_the_counts(world: World, tasks: dict[str, int],
                                                                        admin_client: Any) -> None:
    from tests.recycle_bin.test_recycle_bin import delete_customer_360, entries, post_bin

    r = admin_client.delete(f"/admin/sales-opportunity/delete?pks={world.row('mgr_b', 'opportunity')}",
                            headers={"X-CSRF-Token": csrf_token(admin_client)})
    assert r.status_code == 200, r.text[:300]
    assert delete_customer_360(admin_client, world.row("mgr_a", "customer"), "客户mgr_a有限公司").status_code == 303
    assert f.get(CustomerCare, tasks["mgr_a_late"]) is None
    assert_exact()
    r = post_bin(admin_client, "restore", [e.id for e in entries()])
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]
    assert f.get(CustomerCare, tasks["mgr_a_late"]) is not None
    assert_exact()
    with db.session_factory()() as s:
        sums = open_by_stage(s, principal_for("lead"))
    assert sums["initial"].count == 2


def test_a_relationship_set_to_another_object_moves_the_row_between_groups(world: World,
                                                                         tasks: dict[str, int]) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.customers.models import Customer

    with acting_as(SYSTEM), db.transaction() as s:
        opp = s.get(SalesOpportunity, world.row("mgr_a", "opportunity"))
        care = s.get(CustomerCare, tasks["mgr_a_soon"])
        assert opp is not None and care is not None
        opp.customer = s.get(Customer, world.row("mgr_c", "customer"))  # the key is set by the flush
        care.manager = s.get(SysUser, world.users["mgr_c"])
    assert f.get(SalesOpportunity, world.row("mgr_a", "opportunity")).customer_manager_id == world.users["mgr_c"]
    assert f.get(CustomerCare, tasks["mgr_a_soon"]).manager_id == world.users["mgr_c"]
    assert_exact()
