from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from crm_admin import db
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.care.service import create_plan_tasks, scan_birthdays
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import birthday_keys
from crm_admin.core.context import SYSTEM, acting_as
from tests.care import factories as f
from tests.conftest import csrf_token


def _scan(day: dt.date) -> int:
    with acting_as(SYSTEM), db.transaction() as s:
        return scan_birthdays(s, day)


def _plans(day: dt.date) -> int:
    with acting_as(SYSTEM), db.transaction() as s:
        return create_plan_tasks(s, day)


def _tasks(*where: Any) -> list[CustomerCare]:
    with db.session_factory()() as s:
        return list(s.execute(select(CustomerCare).where(*where).order_by(CustomerCare.id)).scalars())


@pytest.fixture
def managers(make_user: Any) -> tuple[Any, Any]:
    return make_user("care_a", real_name="赵经理"), make_user("care_b", real_name="钱经理")


def test_birthday_keys() -> None:
    assert birthday_keys(dt.date(2027, 2, 28)) == [228, 229]  # common year
    assert birthday_keys(dt.date(2028, 2, 28)) == [228]
    assert birthday_keys(dt.date(2028, 2, 29)) == [229]
    assert birthday_keys(dt.date(2026, 11, 25)) == [1125]


def test_birthday_scan_creates_one_task_per_linkman_once(managers: Any) -> None:
    a, b = managers
    cust = f.customer(a.id)
    lm = f.linkman(cust.id, dt.date(1985, 3, 10), name="孙小姐")
    f.linkman(cust.id, dt.date(1985, 3, 11))
    f.linkman(cust.id, None)
    lost = f.customer(b.id, status="lost")
    f.linkman(lost.id, dt.date(1990, 3, 10))

    assert _scan(dt.date(2026, 3, 10)) == 1
    assert _scan(dt.date(2026, 3, 10)) == 0  # run again: nothing twice
    tasks = _tasks()
    assert len(tasks) == 1
    t = tasks[0]
    assert (t.customer_id, t.linkman_id, t.manager_id) == (cust.id, lm.id, a.id)
    assert (t.status, t.origin, t.care_type, t.due_date) == ("pending", "birthday", "birthday", dt.date(2026, 3, 10))
    assert t.task_key == f"birthday:{lm.id}:2026-03-10"
    # next year is a new task
    assert _scan(dt.date(2027, 3, 10)) == 1


def test_feb_29_birthdays_fall_on_feb_28_in_common_years(managers: Any) -> None:
    a, _ = managers
    cust = f.customer(a.id)
    leapling = f.linkman(cust.id, dt.date(1992, 2, 29))
    feb28 = f.linkman(cust.id, dt.date(1990, 2, 28))
    assert _scan(dt.date(2027, 2, 28)) == 2
    assert {t.linkman_id for t in _tasks()} == {leapling.id, feb28.id}
    assert _scan(dt.date(2027, 3, 1)) == 0
    # leap year: each on their own day
    assert _scan(dt.date(2028, 2, 28)) == 1
    assert _scan(dt.date(2028, 2, 29)) == 1
    assert [t.linkman_id for t in _tasks(CustomerCare.due_date == dt.date(2028, 2, 29))] == [leapling.id]


def test_task_goes_to_the_current_manager(managers: Any) -> None:
    a, b = managers
    cust = f.customer(a.id)
    f.linkman(cust.id, dt.date(1980, 6, 1))
    with acting_as(SYSTEM), db.transaction() as s:
        from crm_admin.customers.models import Customer

        c = s.get(Customer, cust.id)
        assert c is not None
        c.manager_id = b.id
    _scan(dt.date(2026, 6, 1))
    assert _tasks()[0].manager_id == b.id


def test_birthday_md_is_kept_by_orm_writes_and_repaired_for_bulk_rows(managers: Any) -> None:
    a, _ = managers
    cust = f.customer(a.id)
    with acting_as(SYSTEM), db.transaction() as s:
        lm = Linkman(customer_id=cust.id, name="周先生", birthday=dt.date(1970, 7, 8))
        s.add(lm)
        s.flush()
        assert lm.birthday_md == 708
        lm.birthday = dt.date(1970, 12, 31)
        s.flush()
        assert lm.birthday_md == 1231
        # a bulk import bypassing the ORM leaves birthday_md empty: the scan repairs it
        s.execute(insert(Linkman).values(customer_id=cust.id, name="批量导入", birthday=dt.date(1975, 7, 8),
                                         is_primary=False))
    assert _scan(dt.date(2026, 7, 8)) == 1
    assert _scan(dt.date(2026, 12, 31)) == 1


def test_due_plan_creates_task_and_advances(managers: Any) -> None:
    a, _ = managers
    cust = f.customer(a.id)
    lm = f.linkman(cust.id)
    plan = f.plan(cust.id, a.id, next_date=dt.date(2026, 5, 1), interval_days=30, linkman_id=lm.id,
                  care_type="phone_call")
    assert _plans(dt.date(2026, 4, 30)) == 0
    assert _plans(dt.date(2026, 5, 1)) == 1
    assert _plans(dt.date(2026, 5, 1)) == 0
    t = _tasks()[0]
    assert (t.origin, t.plan_id, t.linkman_id, t.care_type, t.manager_id) == ("plan", plan.id, lm.id, "phone_call", a.id)
    assert t.task_key == f"plan:{plan.id}:2026-05-01"
    assert f.get(CarePlan, plan.id).next_date == dt.date(2026, 5, 31)


def test_missed_plan_occurrences_create_one_task_and_skip_past_today(managers: Any) -> None:
    a, _ = managers
    cust = f.customer(a.id)
    plan = f.plan(cust.id, a.id, next_date=dt.date(2026, 1, 1), interval_days=7)
    f.plan(cust.id, a.id, next_date=dt.date(2026, 1, 1), interval_days=7, is_active=False)
    assert _plans(dt.date(2026, 1, 20)) == 1
    assert f.get(CarePlan, plan.id).next_date == dt.date(2026, 1, 22)


# ----- the workbench -----------------------------------------------------------------------------

def _post(client: Any, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client), **data}, follow_redirects=False)


def test_manager_executes_task_then_records_feedback(managers: Any, login_as: Any) -> None:
    a, _b = managers
    from crm_admin.core.formatting import local_today

    cust = f.customer(a.id, "关怀客户甲")
    f.linkman(cust.id, local_today().replace(year=1992), name="生日联系人")  # 1992: a leap year
    _scan(local_today())
    task = _tasks()[0]
    ca, cb = login_as("care_a"), login_as("care_b")

    page = ca.get("/admin/care/workbench")
    assert page.status_code == 200 and "关怀客户甲" in page.text and "生日联系人" in page.text
    assert "关怀客户甲" not in cb.get("/admin/care/workbench").text

    # another manager cannot touch it (404, nothing changed)
    r = _post(cb, "/admin/care/execute", {"care_id": task.id, "care_type": "birthday", "detail": "越权"})
    assert r.status_code == 404
    assert f.get(CustomerCare, task.id).detail is None

    r = _post(cb, "/admin/care/feedback", {"care_id": task.id, "feedback": "越权", "status": "cancelled"})
    assert r.status_code == 404
    assert f.get(CustomerCare, task.id).status == "pending"

    # feedback before execution is refused
    r = _post(ca, "/admin/care/feedback", {"care_id": task.id, "feedback": "很好", "status": "done"})
    assert r.status_code == 400 and "先执行" in r.text

    r = _post(ca, "/admin/care/execute", {"care_id": task.id, "care_type": "birthday",
                                          "care_time": "", "detail": "电话送上生日祝福并寄送贺卡"})
    assert r.status_code == 303, r.text
    t = f.get(CustomerCare, task.id)
    assert t.status == "pending" and t.care_time is not None and t.detail == "电话送上生日祝福并寄送贺卡"

    r = _post(ca, "/admin/care/feedback", {"care_id": task.id, "feedback": "", "status": "done"})
    assert r.status_code == 400
    r = _post(ca, "/admin/care/feedback", {"care_id": task.id, "feedback": "客户表示感谢", "status": "done"})
    assert r.status_code == 303
    t = f.get(CustomerCare, task.id)
    assert (t.status, t.feedback) == ("done", "客户表示感谢")
    r = _post(ca, "/admin/care/feedback", {"care_id": task.id, "feedback": "再次", "status": "cancelled"})
    assert r.status_code == 400  # closed tasks stay closed


def test_bad_care_type_and_future_time_are_refused(managers: Any, login_as: Any) -> None:
    a, _ = managers
    cust = f.customer(a.id)
    task = f.care(cust.id, a.id, due_date=dt.date(2026, 1, 1))
    ca = login_as("care_a")
    r = _post(ca, "/admin/care/execute", {"care_id": task.id, "care_type": "nonsense", "detail": "x"})
    assert r.status_code == 400 and "关怀类型" in r.text
    r = _post(ca, "/admin/care/execute", {"care_id": task.id, "care_type": "visit", "detail": "x",
                                          "care_time": "2999-01-01T10:00"})
    assert r.status_code == 400
    assert f.get(CustomerCare, task.id).care_time is None


def test_manual_care_record_within_scope_only(managers: Any, login_as: Any) -> None:
    a, b = managers
    mine = f.customer(a.id, "我的客户")
    lm = f.linkman(mine.id)
    theirs = f.customer(b.id, "别人的客户")
    ca = login_as("care_a")
    r = _post(ca, "/admin/care/manual", {"customer_id": mine.id, "linkman_id": lm.id, "care_type": "visit",
                                         "care_time": "2026-01-05T10:00", "detail": "上门拜访", "feedback": "满意"})
    assert r.status_code == 303, r.text
    rec = _tasks()[0]
    assert (rec.origin, rec.status, rec.manager_id, rec.customer_id) == ("manual", "done", a.id, mine.id)
    r = _post(ca, "/admin/care/manual", {"customer_id": theirs.id, "care_type": "visit", "detail": "越权"})
    assert r.status_code == 400
    other_lm = f.linkman(theirs.id)
    r = _post(ca, "/admin/care/manual", {"customer_id": mine.id, "linkman_id": other_lm.id, "care_type": "visit",
                                         "detail": "错配联系人"})
    assert r.status_code == 400
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(CustomerCare)).scalar_one() == 1
    found = ca.get("/admin/care/lookup/customers?q=客户").json()["results"]
    assert [x["id"] for x in found] == [mine.id]
    assert ca.get(f"/admin/care/lookup/linkmen?customer_id={theirs.id}").json()["results"] == []


def test_readonly_sees_workbench_but_cannot_act(managers: Any, make_user: Any, login_as: Any) -> None:
    a, _ = managers
    make_user("care_ro", roles=("readonly",))
    task = f.care(f.customer(a.id).id, a.id, due_date=dt.date(2026, 1, 1))
    c = login_as("care_ro")
    assert c.get("/admin/care/workbench").status_code == 200
    r = _post(c, "/admin/care/execute", {"care_id": task.id, "care_type": "visit", "detail": "只读"})
    assert r.status_code == 403
    assert f.get(CustomerCare, task.id).detail is None


def test_completion_rate_per_manager(managers: Any, admin_client: Any) -> None:
    from crm_admin.core.formatting import local_today

    a, _b = managers
    cust = f.customer(a.id)
    day = local_today() - dt.timedelta(days=2)
    f.care(cust.id, a.id, due_date=day, status="done")
    f.care(cust.id, a.id, due_date=day, status="pending")
    f.care(cust.id, a.id, due_date=day, status="cancelled")
    page = admin_client.get("/admin/care/workbench")
    assert page.status_code == 200
    assert "赵经理" in page.text and "50.0%" in page.text


def test_care_on_the_customer_timeline_and_model_views_are_scoped(managers: Any, login_as: Any) -> None:
    a, _b = managers
    cust = f.customer(a.id)
    rec = f.care(cust.id, a.id, detail="历史记录")
    page = login_as("care_a").get(f"/admin/customer/360/{cust.id}")
    assert page.status_code == 200 and 'data-kind="客户关怀"' in page.text and "历史记录" in page.text
    assert login_as("care_b").get(f"/admin/customer/360/{cust.id}").status_code == 404
    assert login_as("care_b").get(f"/admin/customer-care/details/{rec.id}").status_code == 404
    assert login_as("care_a").get(f"/admin/customer-care/details/{rec.id}").status_code == 200


def test_migration_0004_backfills_birthday_md(engine: Any, managers: Any) -> None:
    """Rows without birthday_md (written before it was kept, or in bulk) get it from the migration."""
    import importlib

    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import update

    a, _ = managers
    cust = f.customer(a.id)
    lm = f.linkman(cust.id, dt.date(1979, 2, 29 - 1))
    with engine.begin() as conn:
        conn.execute(update(Linkman).values(birthday_md=None))
        migration = importlib.import_module("crm_admin.migrations.versions.0004_care_transfers_churn_scheduler")
        with Operations.context(MigrationContext.configure(conn)):
            migration.backfill_birthday_md()
    assert f.get(Linkman, lm.id).birthday_md == 228


def test_workbench_pages_long_sections_and_keeps_real_counts(managers: Any, login_as: Any) -> None:
    import re

    from crm_admin.core.formatting import local_today

    a, b = managers
    today = local_today()
    cust = f.customer(a.id, "逾期很多的客户")
    for i in range(25):
        f.care(cust.id, a.id, due_date=today - dt.timedelta(days=30 - i), detail=f"逾期任务{i:02d}")
    f.care(cust.id, a.id, due_date=today, detail="今天的任务")
    other = f.customer(b.id, "别人的客户")
    f.care(other.id, b.id, due_date=today - dt.timedelta(days=1), detail="别人的逾期任务")
    ca = login_as("care_a")

    def overdue_rows(html: str) -> int:
        table = html.split('id="tasks-overdue"', 1)[1].split("</table>", 1)[0]
        return len(re.findall(r"<tr data-task-id=", table))

    first = ca.get("/admin/care/workbench")
    assert first.status_code == 200
    assert re.search(r'id="count-overdue">25<', first.text)  # the full count, not the page's
    assert re.search(r'id="count-today">1<', first.text)
    assert overdue_rows(first.text) == 20 and 'id="pager-overdue"' in first.text
    assert "别人的" not in first.text
    second = ca.get("/admin/care/workbench?overdue_page=2")
    assert overdue_rows(second.text) == 5 and "逾期任务24" in second.text and "逾期任务00" not in second.text
    # a page past the end shows the last page; nonsense shows the first
    assert overdue_rows(ca.get("/admin/care/workbench?overdue_page=99").text) == 5
    assert overdue_rows(ca.get("/admin/care/workbench?overdue_page=abc").text) == 20
    # acting on a task of page 2 comes back to page 2
    task_id = int(re.findall(r'<tr data-task-id="(\d+)"', second.text.split('id="tasks-overdue"', 1)[1])[0])
    r = ca.post("/admin/care/execute?overdue_page=2",
                data={"csrf_token": csrf_token(ca), "care_id": task_id, "care_type": "phone_call",
                      "detail": "已电话回访"}, follow_redirects=False)
    assert r.status_code == 303 and "overdue_page=2" in r.headers["location"]


@pytest.fixture
def department(make_user: Any) -> dict[str, Any]:
    """A sales lead over two managers, and a manager of another department."""
    from crm_admin.accounts.models import SysDept

    east = f.add(SysDept(name="华东销售部"))
    west = f.add(SysDept(name="华西销售部"))
    return {
        "lead": make_user("care_lead", roles=("sales_lead",), dept_id=east.id),
        "m1": make_user("care_m1", real_name="孙经理", dept_id=east.id),
        "m2": make_user("care_m2", real_name="周经理", dept_id=east.id),
        "out": make_user("care_out", real_name="吴经理", dept_id=west.id),
    }


def _principal(user: Any) -> Any:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    with db.session_factory()() as s:
        return load_principal(s.connection(), s.get(SysUser, user.id))


def test_department_workbench_finds_pending_tasks_by_manager_and_never_shows_a_stray_one(
        department: dict[str, Any], login_as: Any) -> None:
    from crm_admin.care.service import realign_pending_tasks, workbench
    from crm_admin.core.formatting import local_today

    today = local_today()
    m1, m2, out = department["m1"], department["m2"], department["out"]
    f.care(f.customer(m1.id, "孙的客户").id, m1.id, due_date=today)
    f.care(f.customer(m2.id, "周的客户").id, m2.id, due_date=today - dt.timedelta(days=3))
    outside = f.customer(out.id, "外部门客户")
    # written around the application: a task of another department's customer carrying m1 as manager
    stray = f.care(outside.id, m1.id, due_date=today, detail="不该出现的任务")
    lead = login_as("care_lead")
    page = lead.get("/admin/care/workbench").text
    assert "孙的客户" in page and "周的客户" in page
    assert "外部门客户" not in page and "不该出现的任务" not in page
    # the daily job hands it to the customer's manager, whose workbench then has it
    with acting_as(SYSTEM), db.transaction() as s:
        assert realign_pending_tasks(s) == 1
        assert realign_pending_tasks(s) == 0
    assert f.get(CustomerCare, stray.id).manager_id == out.id
    with db.session_factory()() as s:
        wb = workbench(s, _principal(department["lead"]), today)
        assert (wb.today.total, wb.overdue.total) == (1, 1)
        assert [r.customer for r in wb.today.rows] == ["孙的客户"]
        assert [r.customer for r in workbench(s, _principal(out), today).today.rows] == ["外部门客户"]
    with db.session_factory()() as s:
        from crm_admin.audit.models import AuditLog

        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.resource == "customer_care", AuditLog.detail.like("%交给客户当前的客户经理%"))).scalar_one() == 1


@pytest.mark.parametrize("chunks", [(2, 3, 50), (1,)])
def test_newest_closed_tasks_of_a_department_match_the_customer_driven_read(
        department: dict[str, Any], monkeypatch: Any, chunks: tuple[int, ...]) -> None:
    """The chunked scan (several rounds, or too thin and falling back) gives the same list as asking
    through the department's customers."""
    from crm_admin.care import service
    from crm_admin.core.scope import scoped

    m1, m2, out = department["m1"], department["m2"], department["out"]
    mine = [f.customer(m1.id, "孙甲").id, f.customer(m2.id, "周乙").id]
    theirs = f.customer(out.id, "吴丙").id
    base = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    for i in range(30):  # mostly another department's, some of ours; equal times are told apart by id
        customer_id = mine[i % 2] if i % 5 == 0 else theirs
        f.care(customer_id, m1.id if customer_id == mine[0] else (m2.id if customer_id == mine[1] else out.id),
               status="done" if i % 3 else "cancelled", updated_at=base + dt.timedelta(minutes=i // 2))
    monkeypatch.setattr(service, "RECENT_SCAN_CHUNKS", chunks)
    lead = _principal(department["lead"])
    with db.session_factory()() as s:
        got = [r.id for r in service._recent_closed(s, lead, None, 4)]
        expected = list(s.execute(
            scoped(select(CustomerCare.id).where(CustomerCare.status != "pending"), CustomerCare, lead)
            .order_by(CustomerCare.updated_at.desc(), CustomerCare.id.desc()).limit(4)).scalars())
    assert len(expected) == 4 and got == expected


def test_completion_stays_with_the_manager_who_did_the_work_after_a_transfer(
        department: dict[str, Any]) -> None:
    from crm_admin.care.service import completion_by_manager, completion_totals
    from crm_admin.core.formatting import local_today
    from crm_admin.transfers.service import transfer_customers

    today = local_today()
    m1, out = department["m1"], department["out"]
    cust = f.customer(m1.id, "将被转走的客户")
    f.care(cust.id, m1.id, due_date=today - dt.timedelta(days=1), status="done")
    pending = f.care(cust.id, m1.id, due_date=today - dt.timedelta(days=1))
    with acting_as(SYSTEM), db.transaction() as s:
        from tests.customers.conftest import principal_for

        transfer_customers(s, principal_for("admin"), customer_ids=[cust.id], new_manager_id=out.id,
                           reason="跨部门调整")
    assert f.get(CustomerCare, pending.id).manager_id == out.id
    start = today - dt.timedelta(days=30)
    with db.session_factory()() as s:
        mine = {c.manager: (c.done, c.pending) for c in completion_by_manager(s, _principal(m1), start, today, today)}
        theirs = {c.manager: (c.done, c.pending)
                  for c in completion_by_manager(s, _principal(out), start, today, today)}
        assert mine == {"孙经理": (1, 0)} and theirs == {"吴经理": (0, 1)}
        assert completion_totals(s, _principal(m1), start, today) == (1, 1)
        assert completion_totals(s, _principal(out), start, today) == (0, 1)


def test_hand_entered_pending_task_of_an_unassigned_customer_has_no_manager(
        managers: Any, admin_client: Any) -> None:
    from crm_admin.care.service import create_manual_care
    from tests.customers.conftest import principal_for

    cust = f.customer(None, "无人负责的客户")
    with acting_as(SYSTEM), db.transaction() as s:
        admin = principal_for("admin")
        pending = create_manual_care(s, admin, customer_id=cust.id, linkman_id=None, care_type="visit",
                                     care_time=None, detail="上门拜访")
        done = create_manual_care(s, admin, customer_id=cust.id, linkman_id=None, care_type="visit",
                                  care_time=None, detail="电话问候", feedback="客户满意")
    assert f.get(CustomerCare, pending.id).manager_id is None
    assert f.get(CustomerCare, done.id).manager_id == admin.id


def test_a_care_record_entered_before_eight_in_the_morning_is_dated_that_day(
        managers: Any, admin_client: Any) -> None:
    """07:30 in Beijing is 23:30 UTC the day before: the record is due that (Beijing) day, not overdue."""
    import datetime as dt

    from crm_admin.care.service import create_manual_care
    from tests.customers.conftest import principal_for

    cust = f.customer(managers[0].id, "清晨拜访的客户")
    morning_utc = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    local_morning = morning_utc.astimezone(dt.timezone(dt.timedelta(hours=8))).replace(hour=7, minute=30)
    with acting_as(SYSTEM), db.transaction() as s:
        care = create_manual_care(s, principal_for("admin"), customer_id=cust.id, linkman_id=None,
                                  care_type="visit", care_time=local_morning.astimezone(dt.UTC),
                                  detail="早上上门拜访")
    assert f.get(CustomerCare, care.id).due_date == local_morning.date()


def test_migration_0007_hands_pending_tasks_to_the_customers_manager(engine: Any, managers: Any) -> None:
    import importlib

    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    a, b = managers
    cust = f.customer(b.id)
    left_behind = f.care(cust.id, a.id)
    closed = f.care(cust.id, a.id, status="done")
    with engine.begin() as conn:
        migration = importlib.import_module("crm_admin.migrations.versions.0007_pending_care_follows_manager")
        with Operations.context(MigrationContext.configure(conn)):
            migration.upgrade()
    assert f.get(CustomerCare, left_behind.id).manager_id == b.id
    assert f.get(CustomerCare, closed.id).manager_id == a.id


def test_an_identical_active_care_plan_is_refused(managers: Any, admin_client: Any) -> None:
    """Two active plans of the same kind for the same customer would care twice: the second is refused."""
    cust = f.customer(managers[0].id, "计划重复的客户")
    token = csrf_token(admin_client)
    form = {"customer": str(cust.id), "care_type": "phone_call", "interval_days": "30",
            "next_date": "2030-01-01", "is_active": "y", "remark": "", "csrf_token": token, "save": "Save"}
    first = admin_client.post("/admin/care-plan/create", data=form, follow_redirects=False)
    assert first.status_code == 302, first.text[-800:]
    second = admin_client.post("/admin/care-plan/create", data={**form, "remark": "又一个"}, follow_redirects=False)
    assert second.status_code == 400 and "已有一个启用中的同类关怀计划" in second.text

    def plans() -> int:
        with db.session_factory()() as s:
            return int(s.execute(select(func.count()).select_from(CarePlan)
                                 .where(CarePlan.customer_id == cust.id)).scalar_one())

    assert plans() == 1
    # another kind of care, or a paused duplicate, is fine
    assert admin_client.post("/admin/care-plan/create", data={**form, "care_type": "visit"},
                             follow_redirects=False).status_code == 302
    paused = {k: v for k, v in form.items() if k != "is_active"}
    assert admin_client.post("/admin/care-plan/create", data=paused, follow_redirects=False).status_code == 302
    assert plans() == 3


def test_workbench_shows_the_birthdays_of_the_coming_week_in_scope(managers: Any, login_as: Any) -> None:
    from crm_admin.core.formatting import local_today

    a, b = managers
    today = local_today()
    soon = today + dt.timedelta(days=2)
    later = today + dt.timedelta(days=40)
    mine = f.customer(a.id, "生日客户甲")
    theirs = f.customer(b.id, "生日客户乙")
    f.linkman(mine.id, dt.date(1985, soon.month, min(soon.day, 28)), name="两天后寿星")
    f.linkman(mine.id, dt.date(1985, later.month, min(later.day, 28)), name="四十天后寿星")
    f.linkman(theirs.id, dt.date(1985, soon.month, min(soon.day, 28)), name="别人的寿星")
    page = login_as("care_a").get("/admin/care/workbench")
    assert page.status_code == 200
    card = page.text.split('id="birthdays"', 1)[1].split("</table>", 1)[0]
    assert "两天后寿星" in card and "生日客户甲" in card
    assert "四十天后寿星" not in card and "别人的寿星" not in card


# ----- the workbench's task forms: one dialog of each, and a row's own forms without script ------

def _row(html: str, task_id: int) -> str:
    """The markup of one task row (empty when the row is not on the page)."""
    start = html.find(f'<tr data-task-id="{task_id}"')
    return "" if start < 0 else html[start:html.index("</tr>", start)]


def _tables(html: str) -> str:
    """The three task tables, without the dialogs."""
    return html[html.index('id="tasks-today"'):html.index("</table>", html.index('id="tasks-upcoming"'))]


def test_task_rows_carry_links_to_one_shared_dialog_of_each_kind(managers: Any, login_as: Any) -> None:
    from crm_admin.core.formatting import local_today

    a, _b = managers
    today = local_today()
    cust = f.customer(a.id, "对话框客户")
    todo = f.care(cust.id, a.id, due_date=today, care_type="visit")
    done_once = f.care(cust.id, a.id, due_date=today - dt.timedelta(days=2), care_type="phone_call",
                       care_time=dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC), detail="已打电话 <b>问候</b>")
    html = login_as("care_a").get("/admin/care/workbench?overdue_page=1").text
    # one execute and one feedback form on the page, in the dialogs; none in the rows
    assert html.count('id="care-execute-dialog"') == 1 and html.count('id="care-feedback-dialog"') == 1
    assert html.count('execute-form"') == 1 and html.count('feedback-form"') == 1
    assert "<form" not in _tables(html)
    assert "js/care-workbench.js" in html and "<script>" not in html
    row = _row(html, todo.id)
    # the links keep the page's parameters and, without script, open the row's own forms
    link = f'href="/admin/care/workbench?overdue_page=1&amp;open={todo.id}#task-{todo.id}"'
    assert row.count(link) == 2 and f'id="task-{todo.id}"' in row
    assert f'data-care-action="execute" data-care-id="{todo.id}" data-care-type="visit"' in row
    assert f'data-care-action="feedback" data-care-id="{todo.id}"' in row and "data-detail" not in row
    # what was recorded goes with the link (escaped), to be shown in the dialog
    assert 'data-detail="已打电话 &lt;b&gt;问候&lt;/b&gt;"' in _row(html, done_once.id)


def test_without_script_a_rows_link_opens_that_rows_forms_only(managers: Any, login_as: Any) -> None:
    import re

    from crm_admin.core.formatting import local_today

    a, b = managers
    today = local_today()
    cust = f.customer(a.id, "无脚本客户")
    first = f.care(cust.id, a.id, due_date=today, care_type="visit", detail="上次写的")
    second = f.care(cust.id, a.id, due_date=today - dt.timedelta(days=1))
    theirs = f.care(f.customer(b.id, "别人的无脚本客户").id, b.id, due_date=today)
    ca = login_as("care_a")

    html = ca.get(f"/admin/care/workbench?overdue_page=1&open={first.id}").text
    tables, row = _tables(html), _row(html, first.id)
    assert tables.count("<form") == 2 and row.count("<form") == 2  # that row's execute and feedback forms
    assert 'class="mt-2 execute-form"' in row and 'class="mt-2 feedback-form"' in row
    assert "<form" not in _row(html, second.id)
    assert f'name="care_id" value="{first.id}"' in row and "上次写的</textarea>" in row
    assert re.search(r'<option value="visit" selected>', row)
    # they post where the dialogs post, back to the same page of the workbench
    action = re.search(r'<form method="POST" action="([^"]+)" class="mt-2 execute-form"', row)
    assert action and action.group(1).endswith("/admin/care/execute?overdue_page=1")

    r = _post(ca, "/admin/care/execute?overdue_page=1", {"care_id": first.id, "care_type": "visit",
                                                        "care_time": "", "detail": "上门拜访,无脚本"})
    assert r.status_code == 303 and "overdue_page=1" in r.headers["location"]
    assert f.get(CustomerCare, first.id).detail == "上门拜访,无脚本"

    # another manager's task (or none at all) opens nothing and shows nothing
    for other in (theirs.id, 99999999, "abc"):
        html = ca.get(f"/admin/care/workbench?open={other}").text
        assert "<form" not in _tables(html) and "别人的无脚本客户" not in html


def test_a_refused_form_comes_back_open_in_its_row_with_what_was_typed(managers: Any, login_as: Any) -> None:
    from crm_admin.core.formatting import local_today

    a, _b = managers
    task = f.care(f.customer(a.id, "被拒客户").id, a.id, due_date=local_today())
    ca = login_as("care_a")
    r = _post(ca, "/admin/care/execute?today_page=1", {"care_id": task.id, "care_type": "nonsense",
                                                      "detail": "我写了很多内容"})
    assert r.status_code == 400 and "关怀类型" in r.text
    row = _row(r.text, task.id)
    assert row.count("<form") == 2 and "我写了很多内容</textarea>" in row
    # the page was rendered at the form's address: its links still lead to the workbench
    assert f'href="/admin/care/workbench?today_page=1&amp;open={task.id}#task-{task.id}"' in row

    r = _post(ca, "/admin/care/feedback", {"care_id": task.id, "feedback": "客户不在", "status": "done"})
    assert r.status_code == 400 and "先执行" in r.text
    row = _row(r.text, task.id)
    assert "客户不在</textarea>" in row and f.get(CustomerCare, task.id).status == "pending"


def test_who_may_not_act_gets_neither_links_nor_dialogs(managers: Any, make_user: Any, login_as: Any) -> None:
    from crm_admin.core.formatting import local_today

    a, _ = managers
    make_user("care_ro2", roles=("readonly",))
    task = f.care(f.customer(a.id, "只读看到的客户").id, a.id, due_date=local_today())
    html = login_as("care_ro2").get(f"/admin/care/workbench?open={task.id}").text
    row = _row(html, task.id)
    assert row and "<form" not in row and "data-care-action" not in row
    assert "care-execute-dialog" not in html and "care-workbench.js" not in html


# ----- counts of wide scopes ---------------------------------------------------------------------

def _care_rows(manager_ids: set[int | None]) -> list[tuple[int | None, dt.date | None, str]]:
    with db.session_factory()() as s:
        return [(m, d, st) for m, d, st in s.execute(
            select(CustomerCare.manager_id, CustomerCare.due_date, CustomerCare.status)).all() if m in manager_ids]


def test_completion_and_section_counts_of_everyone_and_of_a_department_match_the_rows(
        department: dict[str, Any]) -> None:
    """Everyone's completion is counted per day first and then per manager; a department's per manager
    directly: both give what counting the rows one by one gives, unassigned tasks included."""
    from crm_admin.care.service import completion_by_manager, workbench
    from crm_admin.core.formatting import local_today
    from tests.customers.conftest import principal_for

    today = local_today()
    start = today - dt.timedelta(days=30)
    m1, m2, out = department["m1"], department["m2"], department["out"]
    customers = {m.id: f.customer(m.id).id for m in (m1, m2, out)}
    orphan = f.customer(None, "无经理客户").id
    statuses = ("pending", "done", "cancelled", "done")
    for i, day in enumerate((-40, -31, -30, -12, -1, -1, 0, 0, 3, 7, 8)):
        for j, (manager_id, customer_id) in enumerate([*customers.items(), (None, orphan)]):
            if (i + j) % 4 == 3 and manager_id is not None:
                continue  # not every manager every day
            f.care(customer_id, manager_id, due_date=today + dt.timedelta(days=day), status=statuses[(i + j) % 4])
    f.care(customers[m1.id], m1.id, due_date=None)  # a task without a date counts nowhere

    def expected(managers: set[int | None]) -> dict[str, tuple[int, int, int, int, int]]:
        names = {m1.id: "孙经理", m2.id: "周经理", out.id: "吴经理", None: "未分配"}
        got: dict[str, list[int]] = {}
        for m, d, st in _care_rows(managers):
            if d is None or not start <= d <= today:
                continue
            line = got.setdefault(names[m], [0, 0, 0, 0, 0])
            line[0] += 1
            line[1] += st == "done"
            line[2] += st == "cancelled"
            line[3] += st == "pending"
            line[4] += st == "pending" and d < today
        return {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in got.items()}

    def lines(principal: Any) -> dict[str, tuple[int, int, int, int, int]]:
        with db.session_factory()() as s:
            return {c.manager: (c.total, c.done, c.cancelled, c.pending, c.overdue)
                    for c in completion_by_manager(s, principal, start, today, today)}

    everyone = lines(principal_for("admin"))
    assert everyone == expected({m1.id, m2.id, out.id, None}) and len(everyone) == 4
    assert lines(_principal(department["lead"])) == expected({m1.id, m2.id})
    assert lines(_principal(m1)) == expected({m1.id})

    def counts(principal: Any, managers: set[int | None]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        pending = [d for m, d, st in _care_rows(managers) if st == "pending" and d is not None]
        want = (sum(d == today for d in pending), sum(d < today for d in pending),
                sum(today < d <= today + dt.timedelta(days=7) for d in pending))
        with db.session_factory()() as s:
            wb = workbench(s, principal, today)
        return (wb.today.total, wb.overdue.total, wb.upcoming.total), want

    got, want = counts(principal_for("admin"), {m1.id, m2.id, out.id, None})
    assert got == want and all(want)
    got, want = counts(_principal(department["lead"]), {m1.id, m2.id})
    assert got == want and all(want)


def test_the_completion_table_is_paged_with_a_line_for_all(managers: Any, admin_client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from crm_admin.care import admin as care_admin
    from crm_admin.core.formatting import local_today

    a, b = managers
    day = local_today() - dt.timedelta(days=1)
    for manager, statuses in ((a, ("done", "done", "pending")), (b, ("done", "cancelled", "pending", "pending"))):
        cust = f.customer(manager.id)
        for status in statuses:
            f.care(cust.id, manager.id, due_date=day, status=status)
    monkeypatch.setattr(care_admin, "COMPLETION_PAGE_SIZE", 1)

    def table(html: str) -> str:
        return html[html.index('id="completion"'):html.index("</table>", html.index('id="completion"'))]

    first = admin_client.get("/admin/care/workbench?overdue_page=1").text
    assert "赵经理" in table(first) and "钱经理" not in table(first)  # 66.7% before 33.3%
    assert re.search(r'id="completion-all"><td>合计</td><td>7</td><td>3</td><td>1</td><td>3</td><td>50.0%</td>',
                     table(first))
    assert 'href="/admin/care/workbench?overdue_page=1&amp;completion_page=2#completion"' in first
    second = admin_client.get("/admin/care/workbench?completion_page=2").text
    assert "钱经理" in table(second) and "赵经理" not in table(second) and "33.3%" in table(second)
    assert "钱经理" in table(admin_client.get("/admin/care/workbench?completion_page=99").text)


def test_birthdays_of_the_week_for_a_wide_scope_come_day_by_day_in_order(department: dict[str, Any]) -> None:
    """A department or everyone: read a day at a time until the list is full; the same contacts in the
    same order as sorting them all (soonest first, then by id), lost customers and later days left out."""
    from crm_admin.contacts.service import upcoming_birthdays
    from crm_admin.core.formatting import local_today
    from tests.customers.conftest import principal_for

    today = local_today()
    m1, m2, out = department["m1"], department["m2"], department["out"]
    mine = {m1.id: f.customer(m1.id).id, m2.id: f.customer(m2.id).id}
    theirs = f.customer(out.id).id
    lost = f.customer(m1.id, status="lost").id
    made: list[tuple[int, int, int]] = []  # (days left, linkman id, customer id)
    for n in (3, 0, 9, 1, 0, 7, 3, 8, 2, 0):
        day = today + dt.timedelta(days=n)
        if (day.month, day.day) == (2, 29):
            continue
        for customer_id in (*mine.values(), theirs, lost):
            lm = f.linkman(customer_id, dt.date(1984, day.month, day.day))  # 1984: a leap year
            made.append((n, lm.id, customer_id))

    def expected(customers: set[int], limit: int) -> list[int]:
        return [i for n, i, c in sorted(made) if c in customers and n <= 7][:limit]

    admin, lead = principal_for("admin"), _principal(department["lead"])
    with db.session_factory()() as s:
        for limit in (1, 4, 100):
            assert [b.linkman_id for b in upcoming_birthdays(s, admin, today, limit=limit)] == expected(
                {*mine.values(), theirs}, limit)
            assert [b.linkman_id for b in upcoming_birthdays(s, lead, today, limit=limit)] == expected(
                set(mine.values()), limit)
        # one manager's (one statement) agrees
        assert [b.linkman_id for b in upcoming_birthdays(s, _principal(m1), today)] == expected({mine[m1.id]}, 20)
        assert [b.days_left for b in upcoming_birthdays(s, lead, today)] == sorted(
            n for n, _i, c in made if c in mine.values() and n <= 7)


def test_the_manager_picker_offers_the_users_in_scope(department: dict[str, Any], login_as: Any) -> None:
    import re

    def picker(html: str) -> str:
        return html[html.index('name="manager_id"'):html.index("</select>", html.index('name="manager_id"'))]

    lead = login_as("care_lead")
    m1, m2 = department["m1"].id, department["m2"].id
    options = picker(lead.get("/admin/care/workbench").text)
    assert re.search(rf'<option value="{m1}"\s*>孙经理\(care_m1\)</option>', options)
    assert "吴经理" not in options and "selected" not in options
    chosen = picker(lead.get(f"/admin/care/workbench?manager_id={m2}").text)
    assert re.search(rf'<option value="{m2}"\s*selected>周经理\(care_m2\)</option>', chosen)
