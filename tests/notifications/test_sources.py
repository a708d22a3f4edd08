"""Where notifications come from: each source notifies in the transaction of its change, once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.churn.models import ChurnRule
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.principal import load_principal
from crm_admin.notifications.models import Notification
from crm_admin.scheduler.service import run_job
from tests.care import factories as f
from tests.pools import factories as pf
from tests.pools import reclaim_helpers as rh

NOW = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 11, 20)


def _notes(*where: Any) -> list[Any]:
    with db.session_factory()() as session:
        return list(session.execute(
            select(Notification.user_id, Notification.kind, Notification.title, Notification.body)
            .where(*where).order_by(Notification.id)).all())


def test_churn_alerts_on_my_customers(make_user: Any) -> None:
    mine = make_user("churn_note", ["manager"])
    other = make_user("churn_quiet", ["manager"])
    f.add(ChurnRule(name="90天未联系", metric="days_since_contact", threshold=Decimal("90"), risk_level="high",
                    is_active=True))
    f.customer(mine.id, name="久未联系", last_contact_at=NOW - dt.timedelta(days=91))
    f.customer(other.id, name="刚联系过", last_contact_at=NOW - dt.timedelta(days=3))
    assert run_job("churn_evaluation", trigger="manual", now=NOW, today=TODAY).status == "success"
    run_job("churn_evaluation", trigger="manual", now=NOW, today=TODAY)  # nothing new: no second notice
    (note,) = _notes()
    assert (note.user_id, note.kind) == (mine.id, "churn_alert")
    assert "1 条流失预警" in note.title and "久未联系" in note.body and "高风险 1" in note.body


def test_overdue_and_plan_tasks_are_reminded_once_a_day(make_user: Any) -> None:
    m = make_user("overdue_m", ["manager"])
    c = f.customer(m.id)
    f.care(c.id, m.id, due_date=TODAY - dt.timedelta(days=3))
    f.care(c.id, m.id, due_date=TODAY - dt.timedelta(days=1))
    f.plan(c.id, m.id, TODAY)
    for _ in range(2):
        assert run_job("care_plans", trigger="manual", now=NOW, today=TODAY).status == "success"
    kinds = {n.kind: n for n in _notes(Notification.user_id == m.id)}
    assert set(kinds) == {"care_due", "care_overdue"}
    assert "2 条关怀任务已逾期" in kinds["care_overdue"].title
    assert "1 条关怀计划任务" in kinds["care_due"].title


def test_reclaim_warning_reaches_the_owner(make_user: Any) -> None:
    owner = make_user("reclaim_note", ["manager"])
    pool = pf.pool("回收公海")
    rh.rule(pool.id, days_without_follow_up=30, warn_days=5)
    rh.customer(owner.id, contact=27)  # reclaimed in 3 days: warned
    rh.customer(owner.id, contact=31)  # due now: reclaimed tonight, no warning for it
    rh.customer(owner.id, contact=10)  # far away
    rh.run()
    rh.run()  # the day is done: nothing twice
    (note,) = _notes(Notification.kind == "reclaim_warning")
    assert note.user_id == owner.id and "1 个客户即将被自动回收" in note.title


def test_a_customer_assigned_from_a_pool_is_a_notification_for_the_assignee(make_user: Any) -> None:
    from crm_admin.pools.service import assign_from_pool, claim_customers

    assignee = make_user("pool_note", ["manager"])
    claimer = make_user("pool_claimer", ["manager"])
    pool = pf.pool("华东公海")
    pf.access(pool.id, role="manager")
    first, second = pf.pooled(pool.id, "公海甲"), pf.pooled(pool.id, "公海乙")
    with acting_as(SYSTEM), db.transaction() as session:
        admin = load_principal(session.connection(),
                               session.execute(select(SysUser).where(SysUser.username == "admin")).scalar_one())
        assign_from_pool(session, admin, pool_id=pool.id, customer_ids=[first.id], user_id=assignee.id)
    with acting_as(SYSTEM), db.transaction() as session:
        me = load_principal(session.connection(), session.get(SysUser, claimer.id))
        claim_customers(session, me, pool_id=pool.id, customer_ids=[second.id])  # one's own claim: no notice
    (note,) = _notes()
    assert (note.user_id, note.kind) == (assignee.id, "transferred") and "公海甲" in note.body


def test_nothing_is_notified_when_the_change_rolls_back(make_user: Any) -> None:
    from crm_admin.core import notify

    m = make_user("rollback_m", ["manager"])
    try:
        with acting_as(SYSTEM), db.transaction() as session:
            notify.notify(session, "import_done", [m.id], "不会出现", "", None, dedupe_key="rb")
            raise RuntimeError("the change fails")
    except RuntimeError:
        pass
    assert _notes() == []


def test_an_import_finished_is_a_notification_for_whoever_started_it(tmp_path: Any, make_user: Any) -> None:
    from crm_admin.core.context import Actor
    from crm_admin.customers.importing import SPEC as CUSTOMERS
    from crm_admin.imports import runner
    from tests.customers.conftest import principal_for
    from tests.imports.jobs import workbook

    user = make_user("import_note", ["manager"])
    p = principal_for("import_note")
    path = tmp_path / "upload.xlsx"
    path.write_bytes(workbook(["客户名称", "电话"], [["导入一号公司", "13800000001"], ["导入二号公司", "13800000002"]]))
    job = runner.start_job(CUSTOMERS, p, Actor(p.id, p.username), path=str(path), filename="客户.xlsx",
                           run_async=False)
    assert job.status == "validated", job.message
    runner.apply_job(job, p, Actor(p.id, p.username), run_async=False)
    (note,) = _notes()
    assert (note.user_id, note.kind) == (user.id, "import_done")
    assert "客户.xlsx" in note.title and "成功 2 行" in note.body
