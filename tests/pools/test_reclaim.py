"""Reclaim rules (回收规则) through the service and the scheduled job: who is due, what protects a
customer, the warning, the preview against the job, and the job's once-per-day guarantees."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CustomerCare
from crm_admin.core.errors import UserError
from crm_admin.customers.models import Customer
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.pools.models import RECLAIM, CustomerPoolLog
from crm_admin.reclaim import service
from crm_admin.reclaim.models import ReclaimDay, ReclaimRule
from crm_admin.scheduler import service as scheduler
from crm_admin.transfers.models import CustomerTransfer
from tests.care import factories as f
from tests.pools import factories as pf
from tests.pools.reclaim_helpers import NOW, TODAY, count, customer, days_ago, due_ids, rule, run


@pytest.fixture
def mgr(make_user: Any) -> Any:
    return make_user("rc_mgr", real_name="回收经理")


@pytest.fixture
def pool() -> Any:
    return pf.pool("回收公海")


# ----- validation ---------------------------------------------------------------------------------

def _check(pool_id: int | None, **kw: Any) -> ReclaimRule:
    values: dict[str, Any] = {"name": "规则", "pool_id": pool_id, "days_without_follow_up": 30, "warn_days": 3,
                              "priority": 10, "protect_pending_care": True, "is_active": False}
    values.update(kw)
    r = ReclaimRule(**values)
    with db.session_factory()() as s:
        service.validate_rule(s, r)
    return r


@pytest.mark.parametrize(("kw", "field"), [
    ({"name": "  "}, "name"),
    ({"name": "长" * 65}, "name"),
    ({"pool_id": None}, "pool"),
    ({"pool_id": 987654}, "pool"),
    ({"level": "Z"}, "level"),
    ({"days_without_follow_up": None, "days_without_order": None}, "days_without_follow_up"),
    ({"days_without_follow_up": 0}, "days_without_follow_up"),
    ({"days_without_follow_up": 5000}, "days_without_follow_up"),
    ({"days_without_order": "abc"}, "days_without_order"),
    ({"warn_days": 30}, "warn_days"),
    ({"warn_days": -1}, "warn_days"),
    ({"protect_from_stage": "nonsense"}, "protect_from_stage"),
    ({"priority": None}, "priority"),
])
def test_rule_validation_refuses_with_the_field(pool: Any, kw: dict[str, Any], field: str) -> None:
    pool_id = kw.pop("pool_id", pool.id)
    with pytest.raises(UserError) as err:
        _check(pool_id, **kw)
    assert err.value.field == field
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err.value.message)  # a Chinese message


def test_rule_validation_normalises_a_good_rule(pool: Any) -> None:
    r = _check(pool.id, name="  A 级 30 天 ", level="", protect_from_stage="", days_without_order="90")
    assert (r.name, r.level, r.protect_from_stage, r.days_without_order) == ("A 级 30 天", None, None, 90)
    assert service.describe(r) == "30 天未跟进 或 90 天未下单"


def test_rule_on_a_disabled_pool_cannot_be_enabled(make_user: Any) -> None:
    closed = pf.pool("停用公海", is_active=False)
    with pytest.raises(UserError) as err:
        _check(closed.id, is_active=True)
    assert err.value.field == "is_active"
    _check(closed.id, is_active=False)  # kept disabled: fine


# ----- the selection ------------------------------------------------------------------------------

def test_follow_up_clock_starts_at_contact_creation_or_receipt(mgr: Any, pool: Any, make_user: Any) -> None:
    other = make_user("rc_other")
    r = rule(pool.id, days_without_follow_up=30)
    stale = customer(mgr.id, contact=31)
    fresh = customer(mgr.id, contact=29)
    never = customer(mgr.id, contact=None, created=40)
    new = customer(mgr.id, contact=None, created=10)  # created 10 days ago: its clock started then
    received = customer(mgr.id, contact=90)  # neglected by its previous manager, transferred 5 days ago
    f.add(CustomerTransfer(customer_id=received.id, old_manager_id=other.id, new_manager_id=mgr.id,
                           reason="调整", transferred_at=days_ago(5), operator_id=None))
    claimed = customer(mgr.id, contact=90)  # claimed from a pool 3 days ago
    f.add(CustomerPoolLog(customer_id=claimed.id, pool_id=pool.id, kind="claim", user_id=mgr.id, at=days_ago(3)))
    unowned = customer(None, contact=200)
    in_pool = pf.pooled(pool.id, last_contact_at=days_ago(200), created_at=days_ago(400))
    due = due_ids([r])
    assert set(due) == {stale.id, never.id}
    assert due[stale.id] == "30 天未跟进"
    assert not {fresh.id, new.id, received.id, claimed.id, unowned.id, in_pool.id} & set(due)


def test_order_condition_and_level(mgr: Any, pool: Any) -> None:
    r = rule(pool.id, days_without_follow_up=None, days_without_order=90, level="A")
    both = rule(pool.id, name="两项", days_without_follow_up=30, days_without_order=90, level="B")
    a_old = customer(mgr.id, contact=1, order=91, level="A")
    a_never = customer(mgr.id, contact=1, order=None, level="A")
    a_recent = customer(mgr.id, contact=1, order=30, level="A")
    b_old = customer(mgr.id, contact=1, order=200, level="B")
    b_both = customer(mgr.id, contact=60, order=200, level="B")
    assert set(due_ids([r])) == {a_old.id, a_never.id}
    assert a_recent.id not in due_ids([r])
    due = due_ids([both])
    assert due == {b_old.id: "90 天未下单", b_both.id: "30 天未跟进、90 天未下单"}


def test_any_level_rule_covers_every_level(mgr: Any, pool: Any) -> None:
    r = rule(pool.id, level=None)
    ids = {customer(mgr.id, contact=40, level=lv).id for lv in ("A", "B", None)}
    assert set(due_ids([r])) == ids


def test_exclusions_are_honoured(mgr: Any, pool: Any) -> None:
    r = rule(pool.id, protect_from_stage="negotiation", protect_pending_care=True)
    late = customer(mgr.id, contact=60)
    f.opportunity(late.id, mgr.id, stage="contract")  # later than negotiation: protected
    at_stage = customer(mgr.id, contact=60)
    f.opportunity(at_stage.id, mgr.id, stage="negotiation")
    early = customer(mgr.id, contact=60)
    f.opportunity(early.id, mgr.id, stage="initial")  # an early opportunity protects nothing
    won = customer(mgr.id, contact=60)
    f.opportunity(won.id, mgr.id, stage="contract", status="won")  # closed: no protection
    care = customer(mgr.id, contact=60)
    f.care(care.id, mgr.id, status="pending")
    cared = customer(mgr.id, contact=60)
    f.care(cared.id, mgr.id, status="done")
    due = set(due_ids([r]))
    assert due == {early.id, won.id, cared.id}
    # the same rule without the care exclusion takes the customer with a pending task
    with db.transaction() as s:
        s.get(ReclaimRule, r.id).protect_pending_care = False  # type: ignore[union-attr]
    assert care.id in due_ids()


def test_rules_apply_in_priority_order_and_reclaim_once(mgr: Any, pool: Any) -> None:
    second_pool = pf.pool("二号公海")
    first = rule(pool.id, name="先", priority=1, days_without_follow_up=30)
    later = rule(second_pool.id, name="后", priority=2, days_without_follow_up=20)
    both = customer(mgr.id, contact=40)
    only_later = customer(mgr.id, contact=25)
    with db.session_factory()() as s:
        results = service.evaluate(s, [later, first], NOW)
        assert [r.name for r in results] == ["先", "后"]
        assert set(results[0].due) == {both.id} and set(results[1].due) == {only_later.id}
        p = service.preview(s, later.id, NOW)
    assert p.count == 1 and p.others_first == 1


# ----- preview = job ------------------------------------------------------------------------------

def test_preview_equals_what_the_job_moves(mgr: Any, pool: Any) -> None:
    r = rule(pool.id, active=False, days_without_follow_up=30, days_without_order=180)
    due = [customer(mgr.id, contact=35 + i, order=10) for i in range(5)]
    by_order = customer(mgr.id, contact=1, order=200)
    kept = customer(mgr.id, contact=3, order=3)
    opp = customer(mgr.id, contact=50, order=10)
    open_opp = f.opportunity(opp.id, mgr.id, stage="initial")
    with db.session_factory()() as s:
        p = service.preview(s, r.id, NOW)
    expected = {c.id for c in due} | {by_order.id, opp.id}
    assert p.count == len(expected) and {row.customer_id for row in p.rows} == expected
    assert {row.reason for row in p.rows} == {"30 天未跟进", "180 天未下单"}
    assert run().moved == 0  # not enabled yet: the job moves nothing
    with db.transaction() as s:
        s.get(ReclaimRule, r.id).is_active = True  # type: ignore[union-attr]
    report = run(day=TODAY + dt.timedelta(days=1))
    assert report.moved == len(expected)
    with db.session_factory()() as s:
        moved = set(s.execute(select(Customer.id).where(Customer.pool_id == pool.id)).scalars())
        assert moved == expected
        assert s.get(Customer, kept.id).manager_id == mgr.id  # type: ignore[union-attr]
        transfers = s.execute(select(CustomerTransfer).where(CustomerTransfer.customer_id.in_(expected))).scalars().all()
        assert {t.reason for t in transfers} == {"自动回收:30 天未跟进", "自动回收:180 天未下单"}
        assert all(t.new_manager_id is None and t.old_manager_id == mgr.id and t.operator_id is None for t in transfers)
        logs = s.execute(select(CustomerPoolLog).where(CustomerPoolLog.kind == RECLAIM)).scalars().all()
        assert {lg.customer_id for lg in logs} == expected and all(lg.user_id == mgr.id for lg in logs)
        audits = s.execute(select(AuditLog).where(AuditLog.action == "reclaim", AuditLog.resource == "customer",
                                                  AuditLog.resource_id.in_([str(i) for i in expected]))).scalars().all()
        assert {a.resource_id for a in audits} == {str(i) for i in expected}
        assert all(a.user_id is None for a in audits)  # the system, not a person
        # open work followed the customer out of the manager's hands, as a transfer hands it over
        assert s.get(SalesOpportunity, open_opp.id).customer_manager_id is None  # type: ignore[union-attr]


def test_a_follow_up_logged_after_the_evaluation_saves_the_customer(mgr: Any, pool: Any) -> None:
    r = rule(pool.id)
    saved = customer(mgr.id, contact=40)
    gone = customer(mgr.id, contact=40)
    with db.transaction() as s:
        s.get(Customer, saved.id).last_contact_at = NOW  # type: ignore[union-attr]
    with db.transaction() as s:
        moved = service.move_batch(s, s.get(ReclaimRule, r.id), {saved.id: "30 天未跟进", gone.id: "30 天未跟进"},  # type: ignore[arg-type]
                                   NOW)
    assert moved == 1
    assert f.get(Customer, saved.id).manager_id == mgr.id
    assert f.get(Customer, gone.id).pool_id == pool.id


# ----- the warning --------------------------------------------------------------------------------

def test_warning_lists_customers_due_within_k_days_with_days_left(mgr: Any, pool: Any, make_user: Any) -> None:
    from tests.pools.test_service import _principal

    other = make_user("rc_other2")
    rule(pool.id, days_without_follow_up=30, warn_days=5)
    soon = customer(mgr.id, contact=27.5)  # due in 2.5 days → 3 days left
    tomorrow = customer(mgr.id, contact=29.5)
    customer(mgr.id, contact=31)  # due now: reclaimed tonight, not a warning
    customer(mgr.id, contact=10)  # far away
    protected = customer(mgr.id, contact=28)
    f.care(protected.id, mgr.id, status="pending")
    theirs = customer(other.id, contact=28)
    with db.session_factory()() as s:
        total, rows = service.upcoming(s, _principal(mgr.id), NOW, mine_only=True)
        assert total == 2
        assert [(u.customer_id, u.days_left) for u in rows] == [(tomorrow.id, 1), (soon.id, 3)]
        assert rows[0].reason == "30 天未跟进" and rows[0].pool == "回收公海"
        everyone, _rows = service.upcoming(s, _principal(1), NOW)  # the administrator: everyone's
        assert everyone == 3 and theirs.id in {u.customer_id for u in _rows}


def test_no_warning_without_warn_days(mgr: Any, pool: Any) -> None:
    from tests.pools.test_service import _principal

    rule(pool.id, warn_days=0)
    customer(mgr.id, contact=28)
    with db.session_factory()() as s:
        assert service.upcoming(s, _principal(mgr.id), NOW) == (0, [])


# ----- the job ------------------------------------------------------------------------------------

def test_job_is_idempotent_one_run_per_day(mgr: Any, pool: Any) -> None:
    rule(pool.id)
    ids = {customer(mgr.id, contact=40).id for _ in range(3)}
    first = scheduler.run_job("reclaim", today=TODAY, now=NOW)
    assert first.status == "success" and first.created == 3
    customer(mgr.id, contact=40)  # due too, but today's run is done
    second = scheduler.run_job("reclaim", today=TODAY, now=NOW + dt.timedelta(hours=2))
    assert second.status == "skipped" and second.created == 0
    assert count(CustomerTransfer, CustomerTransfer.customer_id.in_(ids)) == 3
    assert count(CustomerPoolLog, CustomerPoolLog.kind == RECLAIM) == 3
    with db.session_factory()() as s:
        day = s.execute(select(ReclaimDay).where(ReclaimDay.day == TODAY)).scalar_one()
        assert day.status == "done" and day.moved == 3
    # the next day takes the newcomer
    assert scheduler.run_job("reclaim", today=TODAY + dt.timedelta(days=1), now=NOW + dt.timedelta(days=1)).created == 1


def test_job_catches_up_missed_days(mgr: Any, pool: Any) -> None:
    rule(pool.id)
    assert run(day=TODAY - dt.timedelta(days=4), now=NOW - dt.timedelta(days=4)).moved == 0
    # the servers were down for three days; customers became due meanwhile
    late = {customer(mgr.id, contact=c).id for c in (31, 32, 33)}
    report = run()
    assert report.moved == 3 and report.caught_up == [TODAY - dt.timedelta(days=d) for d in (3, 2, 1)]
    with db.session_factory()() as s:
        days = {d.day: d for d in s.execute(select(ReclaimDay)).scalars()}
    assert sorted(days) == [TODAY - dt.timedelta(days=d) for d in (4, 3, 2, 1, 0)]
    assert all(days[TODAY - dt.timedelta(days=d)].covered_by == TODAY for d in (3, 2, 1))
    assert {c for c in late if f.get(Customer, c).pool_id == pool.id} == late
    # the scheduler's catch-up after the start: today's run is done, nothing runs twice
    assert run().skipped


def test_two_runners_at_once_make_one_run(mgr: Any, pool: Any) -> None:
    rule(pool.id)
    ids = {customer(mgr.id, contact=40 + i).id for i in range(6)}
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def go(holder: str) -> None:
        barrier.wait()
        results.append(scheduler.run_job("reclaim", today=TODAY, now=NOW, holder=holder))

    threads = [threading.Thread(target=go, args=(f"node-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.status for r in results) == ["skipped", "success"]
    assert sum(r.created for r in results) == 6
    assert count(CustomerTransfer, CustomerTransfer.customer_id.in_(ids)) == 6
    assert count(CustomerPoolLog, CustomerPoolLog.kind == RECLAIM) == 6


def test_a_run_cut_off_half_way_is_finished_by_the_next(mgr: Any, pool: Any, monkeypatch: Any) -> None:
    from crm_admin.pools import service as pools

    rule(pool.id)
    ids = [customer(mgr.id, contact=40 + i).id for i in range(4)]
    real = pools.put_in_pool
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("node lost")
        return real(*args, **kw)

    monkeypatch.setattr(pools, "put_in_pool", flaky)
    with pytest.raises(RuntimeError):
        run(batch=1)
    # the first two batches were committed on their own; the day is not done
    assert sum(1 for i in ids if f.get(Customer, i).pool_id == pool.id) == 2
    monkeypatch.setattr(pools, "put_in_pool", real)
    report = run(batch=1)
    assert report.moved == 2 and not report.skipped
    assert all(f.get(Customer, i).pool_id == pool.id for i in ids)
    assert count(CustomerTransfer, CustomerTransfer.customer_id.in_(ids)) == 4


def test_dry_run_changes_nothing(mgr: Any, pool: Any) -> None:
    rule(pool.id)
    c = customer(mgr.id, contact=40)
    report = run(dry_run=True)
    assert report.per_rule and sum(report.per_rule.values()) == 1 and report.moved == 0
    assert f.get(Customer, c.id).manager_id == mgr.id
    assert count(ReclaimDay) == 0
    assert count(CustomerCare) == 0


def test_bench_times_the_evaluation_of_every_rule(mgr: Any, pool: Any) -> None:
    """``crm-admin bench --jobs`` row: the standard rules when none is enabled, the enabled ones otherwise."""
    from crm_admin.perf import bench

    customer(mgr.id, contact=400, order=400, level="D")
    row = bench._time_job(db.get_engine(), bench.reclaim_evaluation)
    assert row["status"] == "ok" and "D 级 30 天未跟进" in row["result"]
    rule(pool.id, name="唯一规则")
    row = bench._time_job(db.get_engine(), bench.reclaim_evaluation)
    assert row["status"] == "ok" and "唯一规则" in row["result"] and "D 级" not in row["result"]


def test_the_warning_decides_due_now_as_the_selection_does(mgr: Any, pool: Any, make_user: Any) -> None:
    """The warning list tells due-now customers apart from its candidates' clocks in Python: it must
    agree with the SQL selection on every kind of customer."""
    other = make_user("rc_agree")
    rules = [rule(pool.id, name="跟进", level="A", protect_from_stage="negotiation", days_without_order=200),
             rule(pool.id, name="下单", priority=5, days_without_follow_up=None, days_without_order=90,
                  protect_pending_care=False)]
    made = [customer(mgr.id, contact=c, order=o, created=cr, level=lv)
            for c in (None, 10, 31, 95) for o in (None, 20, 100, 300) for cr in (5, 40, 400) for lv in ("A", "B")]
    late, cared, moved = made[5], made[7], made[9]
    f.opportunity(late.id, mgr.id, stage="contract")
    f.care(cared.id, mgr.id, status="pending")
    f.add(CustomerTransfer(customer_id=moved.id, old_manager_id=other.id, new_manager_id=mgr.id, reason="调整",
                           transferred_at=days_ago(2), operator_id=None))
    ids = [c.id for c in made]
    with db.session_factory()() as s:
        loaded = service.enabled_rules(s)
        facts, received, care, stages = service._candidate_facts(s, ids)
        late_stages = {r.id: set(service._late_stages(r.protect_from_stage)) for r in loaded}
        in_python = {cid for cid in ids if any(service._due_now(r, facts[cid], received.get(cid), cid in care,
                                                                 stages.get(cid, set()), late_stages[r.id], NOW)
                                                for r in loaded)}
    assert in_python == set(due_ids(rules)) and in_python


def test_a_pool_closed_after_the_rule_was_enabled_takes_no_one(mgr: Any, pool: Any) -> None:
    from crm_admin.pools.models import CustomerPool

    rule(pool.id)
    c = customer(mgr.id, contact=40)
    with db.transaction() as s:
        s.get(CustomerPool, pool.id).is_active = False  # type: ignore[union-attr]
    assert run().moved == 0
    assert f.get(Customer, c.id).manager_id == mgr.id
