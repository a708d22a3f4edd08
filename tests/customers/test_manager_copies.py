"""Opportunities, follow-ups and churn alerts carry their customer's manager (``customer_manager_id``,
``customers.models.CarriesCustomerManager``), which the home page, the pipeline and the due follow-ups
count by. After every kind of write (create, edit, delete, status changes, transfer, hand-over, the
customer form, merge, import, the churn evaluation's bulk inserts) every row's copy equals its customer's
manager, recomputed from scratch, and every principal's numbers equal those counted through the customers
(the customer scope the pages used before). The totals kept beside the opportunities and care tasks
(``core/totals.py``) equal a direct count after each of them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import aliased

from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.churn.models import ChurnAlert
from crm_admin.core import totals
from crm_admin.core.context import SYSTEM, Actor, acting_as
from crm_admin.core.formatting import day_start_utc, local_today
from crm_admin.core.scope import scoped
from crm_admin.customers.models import Customer, manager_copy_differences
from crm_admin.dashboard.service import build
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import due_follow_ups, log_follow_up
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.opportunities.service import PipelineFilter, create_opportunity, move_stage, pipeline
from tests.cli.runner import run_cli
from tests.company import World
from tests.customers.conftest import form_token, principal_for

PRINCIPALS = ("admin", "mgr_a", "mgr_b", "mgr_c", "lead", "ro")
_BY_AMOUNT = (SalesOpportunity.amount.desc(), SalesOpportunity.probability.desc(), SalesOpportunity.id.desc())


def _today_end() -> dt.datetime:
    return day_start_utc(local_today() + dt.timedelta(days=1))


def _cents(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _through_customers(p: Any) -> dict[str, Any]:
    """The numbers recomputed from scratch through the customers (``core.scope.scoped``)."""
    mine = not p.is_admin and p.scope == "self"
    out: dict[str, Any] = {}
    with db.session_factory()() as s:
        if p.can("opportunity", "list"):
            out["stages"] = {stage: (int(n), _cents(amount)) for stage, n, amount in s.execute(
                scoped(select(SalesOpportunity.stage, func.count(), func.sum(SalesOpportunity.amount))
                       .where(SalesOpportunity.status == "open"), SalesOpportunity, p, "list")
                .group_by(SalesOpportunity.stage))}
        if p.can("follow_up", "list"):
            later = aliased(FollowUp)
            due = select(FollowUp.id).where(
                FollowUp.next_follow_up_at.is_not(None), FollowUp.next_follow_up_at < _today_end(),
                ~exists().where(and_(later.customer_id == FollowUp.customer_id,
                                     later.contacted_at > FollowUp.contacted_at)))
            if mine:
                due = due.where(FollowUp.manager_id == p.id)
            out["due"] = set(s.execute(scoped(due, FollowUp, p, "list")).scalars())
        out["alerts"] = {level: int(n) for level, n in s.execute(
            scoped(select(ChurnAlert.risk_level, func.count()).where(ChurnAlert.open_key == 1), ChurnAlert, p,
                   "list").group_by(ChurnAlert.risk_level))}
        if p.can("pipeline", "list"):
            base = scoped(select(SalesOpportunity).where(SalesOpportunity.status == "open"), SalesOpportunity, p,
                          "list", resource="pipeline")
            columns = {}
            for stage, n, total, weighted in s.execute(base.with_only_columns(
                    SalesOpportunity.stage, func.count(), func.sum(SalesOpportunity.amount),
                    func.sum(SalesOpportunity.amount * SalesOpportunity.probability))
                    .group_by(SalesOpportunity.stage)):
                top = list(s.execute(base.with_only_columns(SalesOpportunity.id)
                                     .where(SalesOpportunity.stage == stage).order_by(*_BY_AMOUNT).limit(20))
                           .scalars())
                columns[stage] = (int(n), _cents(total), (Decimal(str(weighted or 0)) / 100).quantize(Decimal("0.01")),
                                  top)
            out["pipeline"] = columns
    return out


def _as_counted(p: Any) -> dict[str, Any]:
    """The numbers as the home page, the due follow-ups and the pipeline count them now."""
    mine = not p.is_admin and p.scope == "self"
    board = build(db.session_factory(), p, today=local_today(), today_end=_today_end())
    out: dict[str, Any] = {}
    if p.can("opportunity", "list"):
        out["stages"] = {row["stage"]: (row["count"], _cents(row["amount"])) for row in board.pipeline}
    with db.session_factory()() as s:
        if p.can("follow_up", "list"):
            due = set(s.execute(due_follow_ups(p, today_end=_today_end(), mine_only=mine)
                                .with_only_columns(FollowUp.id)).scalars())
            if not p.is_admin:  # the administrator's board has company totals instead
                assert board.follow_ups_due == len(due)
            out["due"] = due
        out["alerts"] = board.alerts_open
        if p.can("pipeline", "list"):
            out["pipeline"] = {c.value: (c.count, c.total, c.weighted, [i["id"] for i in c.items])
                               for c in pipeline(s, p, PipelineFilter()) if c.count}
    return out


def assert_exact() -> dict[str, dict[str, Any]]:
    """No row's copy differs from its customer's manager, and every principal's numbers agree."""
    with db.get_engine().connect() as conn:
        assert manager_copy_differences(conn) == {
            "care_plan": 0, "churn_alert": 0, "customer_care": 0, "customer_order": 0, "follow_up": 0, "linkman": 0,
            "sales_opportunity": 0}
        # the totals kept beside the tables (core/totals.py) equal a direct count after the same writes
        assert {t.name: totals.differences(conn, t) for t in totals.registered()} == {
            "care_task_day_total": 0, "opportunity_open_total": 0}
    numbers = {}
    for name in PRINCIPALS:
        p = principal_for(name)
        numbers[name] = _through_customers(p)
        assert _as_counted(p) == numbers[name], name
    return numbers


def _uid(name: str) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(SysUser.id).where(SysUser.username == name)).scalar_one())


def _copy(model: Any, row_id: int) -> int | None:
    with db.session_factory()() as s:
        return s.execute(select(model.customer_manager_id).where(model.id == row_id)).scalar()


@pytest.fixture
def busy(world: World) -> World:
    """The world's customers with open opportunities in two stages, a due follow-up each, and the open
    alert each already has."""
    now = dt.datetime.now(dt.UTC)
    for n, owner in enumerate(("mgr_a", "mgr_b", "mgr_c"), start=1):
        p = principal_for(owner)
        cid = world.row(owner, "customer")
        with acting_as(Actor(p.id, p.username)), db.transaction() as s:
            create_opportunity(s, p, customer_id=cid, title=f"大单{owner}", stage="proposal",
                               amount=Decimal(1000 * n), probability=30)
            log_follow_up(s, p, customer_id=cid, method="phone", content="约今天回电",
                          contacted_at=now, next_follow_up_at=now)
    return world


def _lead_numbers() -> dict[str, Any]:
    return _through_customers(principal_for("lead"))


def test_rows_written_through_the_orm_carry_their_customers_manager(busy: World) -> None:
    numbers = assert_exact()
    lead = numbers["lead"]
    # the lead's team is mgr_a and mgr_b: their open opportunities, follow-ups due and open alerts
    assert lead["stages"] == {"initial": (2, Decimal("2000.00")), "proposal": (2, Decimal("3000.00"))}
    assert len(lead["due"]) == 2 and lead["alerts"] == {"high": 2}
    assert numbers["mgr_c"]["stages"]["proposal"] == (1, Decimal("3000.00"))
    assert _copy(FollowUp, busy.row("mgr_a", "follow_up")) == busy.users["mgr_a"]


def test_a_value_given_by_the_caller_is_replaced_by_the_customers_manager(world: World) -> None:
    cid = world.row("mgr_a", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        fu = FollowUp(customer_id=cid, manager_id=world.users["mgr_c"], customer_manager_id=world.users["mgr_c"],
                      method="phone", content="别人代记", contacted_at=dt.datetime.now(dt.UTC))
        s.add(fu)
        s.flush()
        fu_id = fu.id
    assert _copy(FollowUp, fu_id) == world.users["mgr_a"]
    assert_exact()


def test_a_new_customer_and_its_records_in_one_flush(world: World) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        manager = s.get(SysUser, world.users["mgr_b"])
        customer = Customer(code="C-ONE-FLUSH", name="一次写入有限公司", manager=manager)
        opp = SalesOpportunity(customer=customer, title="同时建的商机", stage="initial", amount=Decimal("5.00"))
        s.add_all([customer, opp])
        s.flush()
        opp_id = opp.id
    assert _copy(SalesOpportunity, opp_id) == world.users["mgr_b"]
    assert_exact()


def test_transfer_takes_the_numbers_to_the_new_team(busy: World) -> None:
    from crm_admin.transfers.service import transfer_customers

    before = _lead_numbers()
    admin = principal_for("admin")
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        transfer_customers(s, admin, customer_ids=[busy.row("mgr_a", "customer")], new_manager_id=busy.users["mgr_c"],
                           reason="调整到销售二部")
    after = assert_exact()["lead"]
    assert after["stages"] == {"initial": (1, Decimal("1000.00")), "proposal": (1, Decimal("2000.00"))}
    assert len(after["due"]) == len(before["due"]) - 1 and after["alerts"] == {"high": 1}
    # closed work stays with whoever did it, but its copy follows the customer: the counts are by customer
    assert _copy(FollowUp, busy.row("mgr_a", "follow_up")) == busy.users["mgr_c"]
    # a batch: both of the team's customers at once, to the other team and back
    team = [busy.row("mgr_a", "customer"), busy.row("mgr_b", "customer")]
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        transfer_customers(s, admin, customer_ids=[busy.row("mgr_b", "customer")], new_manager_id=busy.users["mgr_c"],
                           reason="整组调整")
    assert assert_exact()["lead"]["stages"] == {}
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        transfer_customers(s, admin, customer_ids=team, new_manager_id=busy.users["mgr_b"], reason="调回")
    assert assert_exact()["lead"]["stages"] == {"initial": (2, Decimal("2000.00")),
                                                "proposal": (2, Decimal("3000.00"))}


def test_hand_over_of_a_leavers_customers(busy: World) -> None:
    from crm_admin.transfers.service import hand_over_customers

    admin = principal_for("admin")
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        hand_over_customers(s, admin, from_user_id=busy.users["mgr_b"], to_user_id=busy.users["mgr_c"],
                            reason="离职交接")
    assert assert_exact()["lead"]["alerts"] == {"high": 1}


def _edit_customer(client: Any, customer_id: int, manager: str) -> Any:
    page = client.get(f"/admin/customer/edit/{customer_id}")
    assert page.status_code == 200
    with db.session_factory()() as s:
        c = s.get(Customer, customer_id)
        assert c is not None
        data = {"name": c.name, "status": c.status, "version": str(c.version), "manager": manager,
                "csrf_token": form_token(page.text)}
    return client.post(f"/admin/customer/edit/{customer_id}", data=data, follow_redirects=False)


def test_customer_form_takes_the_manager_away_and_gives_it_back(busy: World, admin_client: Any) -> None:
    cid = busy.row("mgr_b", "customer")
    r = _edit_customer(admin_client, cid, "")
    assert r.status_code == 302, r.text[:2000]
    with db.session_factory()() as s:
        assert s.get(Customer, cid).manager_id is None  # type: ignore[union-attr]
    assert _copy(SalesOpportunity, busy.row("mgr_b", "opportunity")) is None
    assert assert_exact()["lead"]["alerts"] == {"high": 1}
    r = _edit_customer(admin_client, cid, str(busy.users["mgr_c"]))
    assert r.status_code == 302, r.text[:2000]
    assert _copy(ChurnAlert, busy.row("mgr_b", "churn_alert")) == busy.users["mgr_c"]
    assert_exact()


def test_a_manager_set_through_the_relationship_is_followed(busy: World) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        customer = s.get(Customer, busy.row("mgr_a", "customer"))
        assert customer is not None
        customer.manager = s.get(SysUser, busy.users["mgr_c"])
    assert _copy(SalesOpportunity, busy.row("mgr_a", "opportunity")) == busy.users["mgr_c"]
    assert_exact()


def test_merge_across_teams_moves_the_rows_into_the_kept_customers_team(busy: World) -> None:
    from crm_admin.customers.service import merge_customers

    admin = principal_for("admin")
    keep, drop = busy.row("mgr_a", "customer"), busy.row("mgr_c", "customer")
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        merge_customers(s, admin, keep_id=keep, drop_id=drop)
    assert _copy(FollowUp, busy.row("mgr_c", "follow_up")) == busy.users["mgr_a"]
    lead = assert_exact()["lead"]
    assert lead["stages"]["proposal"] == (3, Decimal("6000.00"))


def test_records_moved_to_another_customer_in_their_forms(busy: World, admin_client: Any) -> None:
    opp_id, other = busy.row("mgr_a", "opportunity"), busy.row("mgr_c", "customer")
    page = admin_client.get(f"/admin/sales-opportunity/edit/{opp_id}")
    with db.session_factory()() as s:
        opp = s.get(SalesOpportunity, opp_id)
        assert opp is not None
        data = {"customer": str(other), "title": opp.title, "stage": opp.stage, "amount": str(opp.amount),
                "probability": str(opp.probability), "status": "open", "version": str(opp.version),
                "csrf_token": form_token(page.text)}
    r = admin_client.post(f"/admin/sales-opportunity/edit/{opp_id}", data=data, follow_redirects=False)
    assert r.status_code == 302, r.text[:2000]
    assert _copy(SalesOpportunity, opp_id) == busy.users["mgr_c"]
    with acting_as(SYSTEM), db.transaction() as s:  # the same through the ORM, for a follow-up
        fu = s.get(FollowUp, busy.row("mgr_b", "follow_up"))
        assert fu is not None
        fu.customer = s.get(Customer, other)  # the relationship only: the key is set by the flush
    assert _copy(FollowUp, busy.row("mgr_b", "follow_up")) == busy.users["mgr_c"]
    assert_exact()


@pytest.mark.parametrize("server_side", [True, False])
def test_churn_evaluation_inserts_carry_the_manager(world: World, monkeypatch: Any, server_side: bool) -> None:
    from crm_admin.churn import service

    monkeypatch.setattr(service, "BULK_SERVER_SIDE", 0 if server_side else 10**9)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    with acting_as(SYSTEM), db.transaction() as s:
        for owner in ("mgr_a", "mgr_b", "mgr_c"):
            s.add(Customer(code=f"C-STALE-{owner}", name=f"久未联系{owner}公司", manager_id=world.users[owner],
                           status="active", last_contact_at=stale, created_at=stale))
    with acting_as(SYSTEM), db.transaction() as s:
        assert service.evaluate(s, local_today()).opened == 3
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(ChurnAlert).where(
            ChurnAlert.customer_manager_id.is_(None))).scalar_one() == 0
    # the world's alerts (no longer matching, never handled) were dismissed by the same run
    assert assert_exact()["lead"]["alerts"] == {"medium": 2}


def test_deletes_and_status_changes(busy: World) -> None:
    from crm_admin.churn.service import close_alert
    from crm_admin.customers.service import delete_customer

    admin = principal_for("admin")
    lead_before = _lead_numbers()
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        move_stage(s, admin, opportunity_id=busy.row("mgr_a", "opportunity"), stage="contract")
        won = s.get(SalesOpportunity, busy.row("mgr_b", "opportunity"))
        assert won is not None
        won.status = "won"
        close_alert(s, admin, busy.row("mgr_a", "churn_alert"), outcome="retained", reason=None,
                    analysis="已回访挽回", measures="季度拜访")
    lead = assert_exact()["lead"]
    assert lead["stages"]["contract"] == (1, Decimal("1000.00")) and lead["alerts"] == {"high": 1}
    with acting_as(Actor(admin.id, admin.username)), db.transaction() as s:
        opp = s.execute(select(SalesOpportunity).where(SalesOpportunity.title == "大单mgr_b")).scalar_one()
        s.delete(opp)
        customer = s.get(Customer, busy.row("mgr_a", "customer"))
        assert customer is not None
        delete_customer(s, customer, cascade=True)
    lead = assert_exact()["lead"]
    assert lead["stages"] == {} and len(lead["due"]) == len(lead_before["due"]) - 1


def test_imported_customers_and_what_is_logged_on_them(world: World, tmp_path: Any) -> None:
    from crm_admin.customers.importing import SPEC
    from crm_admin.imports import runner
    from tests.imports.jobs import workbook

    p = principal_for("mgr_b")
    path = tmp_path / "customers.xlsx"
    path.write_bytes(workbook(["客户名称", "电话"], [["导入甲有限公司", "13900000011"], ["导入乙有限公司", None]]))
    job = runner.start_job(SPEC, p, Actor(p.id, p.username), path=str(path), filename="客户.xlsx", run_async=False)
    runner.apply_job(job, p, Actor(p.id, p.username), run_async=False)
    assert job.status == "done" and job.created == 2, job.message
    with db.session_factory()() as s:
        imported = list(s.execute(select(Customer.id).where(Customer.name.like("导入%"))).scalars())
    now = dt.datetime.now(dt.UTC)
    with acting_as(Actor(p.id, p.username)), db.transaction() as s:
        for cid in imported:
            create_opportunity(s, p, customer_id=cid, title="导入后的商机", stage="initial", amount=Decimal("10"))
            log_follow_up(s, p, customer_id=cid, method="visit", content="上门", contacted_at=now,
                          next_follow_up_at=now)
    lead = assert_exact()["lead"]
    assert lead["stages"]["initial"] == (4, Decimal("2020.00"))


def test_generated_care_tasks_and_imported_contacts_carry_the_manager(world: World, tmp_path: Any) -> None:
    from crm_admin.care.models import CustomerCare
    from crm_admin.care.service import create_plan_tasks, scan_birthdays
    from crm_admin.contacts.importing import SPEC
    from crm_admin.contacts.models import Linkman
    from crm_admin.imports import runner
    from tests.imports.jobs import workbook

    today = local_today()
    with acting_as(SYSTEM), db.transaction() as s:
        s.execute(update(Linkman).where(Linkman.id == world.row("mgr_a", "linkman")).values(
            birthday=dt.date(1990, today.month, min(today.day, 28)), birthday_md=today.month * 100 + min(today.day, 28)))
    with acting_as(SYSTEM), db.transaction() as s:
        assert scan_birthdays(s, today.replace(day=min(today.day, 28))) == 1
        assert create_plan_tasks(s, today) == 3  # the world's plans are due today
    p = principal_for("mgr_b")
    path = tmp_path / "contacts.xlsx"
    path.write_bytes(workbook(["客户名称", "姓名", "手机"], [["客户mgr_b有限公司", "导入联系人", "13900000012"]]))
    job = runner.start_job(SPEC, p, Actor(p.id, p.username), path=str(path), filename="联系人.xlsx", run_async=False)
    runner.apply_job(job, p, Actor(p.id, p.username), run_async=False)
    assert job.status == "done" and job.created == 1, job.message
    with db.session_factory()() as s:
        for model in (CustomerCare, Linkman):
            assert s.execute(select(func.count()).select_from(model).where(
                model.customer_manager_id.is_(None))).scalar_one() == 0
    assert_exact()


@pytest.mark.cli_command("manager-copies")
def test_check_command_finds_and_fixes_a_row_written_behind_the_applications_back(world: World) -> None:
    assert_exact()
    result = run_cli("manager-copies")
    assert result.exit_code == 0 and "全部一致" in result.output, result.output
    with db.get_engine().begin() as conn:  # e.g. a manual UPDATE in the database
        conn.execute(update(Customer).where(Customer.id == world.row("mgr_a", "customer"))
                     .values(manager_id=world.users["mgr_c"]))
    result = run_cli("manager-copies")
    assert result.exit_code == 1, result.output
    assert "sales_opportunity: 1 行不一致" in result.output and "--fix" in result.output
    result = run_cli("manager-copies", "--fix")
    assert result.exit_code == 0 and "已改正" in result.output, result.output
    assert_exact()


def test_a_lead_without_a_team(busy: World, make_user: Any) -> None:
    make_user("lonely_lead", ["sales_lead"])
    p = principal_for("lonely_lead")
    assert _as_counted(p) == _through_customers(p)
