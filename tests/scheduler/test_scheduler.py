from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.care.models import CustomerCare
from crm_admin.scheduler import service
from crm_admin.scheduler.models import JobLease, JobRun
from tests.care import factories as f
from tests.conftest import TEST_DB_URL, csrf_token

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 4, 18)
NOON = dt.datetime(2026, 4, 18, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai


def _count(model: type, *where: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _runs(job: str | None = None) -> list[JobRun]:
    with db.session_factory()() as s:
        stmt = select(JobRun).order_by(JobRun.id)
        if job:
            stmt = stmt.where(JobRun.job == job)
        return list(s.execute(stmt).scalars())


@pytest.fixture
def birthdays(make_user: Any) -> int:
    m = make_user("sched_m")
    n = 0
    for i in range(5):
        cust = f.customer(m.id)
        for _ in range(2):
            f.linkman(cust.id, dt.date(1980 + i, DAY.month, DAY.day))
            n += 1
    return n


def test_run_twice_creates_nothing_twice_and_records_runs(birthdays: int) -> None:
    first = service.run_job("birthday_scan", today=DAY, now=NOON)
    second = service.run_job("birthday_scan", today=DAY, now=NOON)
    assert (first.status, first.created) == ("success", birthdays)
    assert (second.status, second.created) == ("success", 0)
    assert _count(CustomerCare) == birthdays
    runs = _runs("birthday_scan")
    assert [r.status for r in runs] == ["success", "success"]
    assert [r.created_count for r in runs] == [birthdays, 0]
    assert all(r.finished_at and r.finished_at >= r.started_at for r in runs)
    with db.session_factory()() as s:
        lease = s.get(JobLease, "birthday_scan")
        assert lease is not None and lease.holder is None and lease.last_success_at is not None


def test_concurrent_threads_create_each_task_once(birthdays: int) -> None:
    barrier = threading.Barrier(4)
    results: list[service.RunResult] = []

    def go() -> None:
        barrier.wait()
        results.append(service.run_job("birthday_scan", today=DAY, now=NOON))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert _count(CustomerCare) == birthdays
    assert sum(r.created for r in results) == birthdays
    assert {r.status for r in results} <= {"success", "skipped"}


def test_two_processes_at_once_create_each_task_once(birthdays: int) -> None:
    code = (
        "import datetime as dt, sys\n"
        "from crm_admin.scheduler import service\n"
        f"r = service.run_job('birthday_scan', today=dt.date({DAY.year}, {DAY.month}, {DAY.day}))\n"
        "print(r.status, r.created)\n"
    )
    env = {**os.environ, "CRM_DATABASE_URL": TEST_DB_URL, "CRM_SCHEDULER_ENABLED": "false"}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    created = sum(int(out.split()[-1]) for out, _err in outs)
    assert created == birthdays, outs
    assert _count(CustomerCare) == birthdays


def test_lease_is_exclusive_until_released_or_expired() -> None:
    now = NOON
    assert service.acquire_lease("backup", "host-a", now)
    assert not service.acquire_lease("backup", "host-b", now)
    assert service.acquire_lease("backup", "host-a", now)  # the holder may renew
    # a crashed holder's lease expires
    assert service.acquire_lease("backup", "host-b", now + service.LEASE_TTL + dt.timedelta(seconds=1))
    service.release_lease("backup", "host-b", succeeded_at=None)
    assert service.acquire_lease("backup", "host-c", now)


def test_failed_run_is_recorded_and_leaves_nothing_half_done(birthdays: int, monkeypatch: Any) -> None:
    from crm_admin.care import service as care_service

    real = care_service.scan_birthdays

    def crash(session: Any, ctx: service.JobContext) -> service.Outcome:
        real(session, ctx.today)  # the tasks are inserted …
        raise RuntimeError("磁盘已满")  # … then the process dies mid-way

    spec = service.jobs()["birthday_scan"]
    monkeypatch.setitem(service._JOBS, "birthday_scan", service.JobSpec(spec.name, spec.label, crash,
                                                                         spec.time_setting))
    result = service.run_job("birthday_scan", today=DAY, now=NOON)
    assert result.status == "failed" and "磁盘已满" in result.detail
    assert _count(CustomerCare) == 0
    run = _runs("birthday_scan")[-1]
    assert run.status == "failed" and "磁盘已满" in (run.detail or "") and run.finished_at is not None
    monkeypatch.setitem(service._JOBS, "birthday_scan", spec)
    assert service.run_job("birthday_scan", today=DAY, now=NOON).created == birthdays
    assert _count(CustomerCare) == birthdays


def test_catch_up_runs_missed_jobs_once(birthdays: int) -> None:
    # 12:00 Shanghai: every daily time (02:30 … 07:05) has passed, nothing ran today
    first = {r.job: r for r in service.catch_up(NOON)}
    assert set(first) == {"birthday_scan", "care_plans", "churn_evaluation", "backup", "import_cleanup",
                          "recycle_purge", "reclaim"}
    assert first["birthday_scan"].created == birthdays
    assert service.catch_up(NOON + dt.timedelta(minutes=15)) == []
    # before the daily time nothing is due (01:30, 02:30, 03:00, 04:00 and 04:10 have passed)
    early = dt.datetime(2026, 4, 19, 21, 0, tzinfo=dt.UTC)  # 05:00 on the 20th in Shanghai
    assert {r.job for r in service.catch_up(early)} == {"churn_evaluation", "backup", "import_cleanup",
                                                         "recycle_purge", "reclaim"}


def test_scheduler_is_built_from_settings() -> None:
    from crm_admin.scheduler.runner import build_scheduler

    sched = build_scheduler()
    ids = {j.id for j in sched.get_jobs()}
    assert ids == {"daily:birthday_scan", "daily:care_plans", "daily:churn_evaluation", "daily:backup",
                   "daily:import_cleanup", "daily:recycle_purge", "daily:reclaim", "daily:notification_digest",
                   "catch_up", "every:audit_seal", "every:notification_send"}
    seal = sched.get_job("every:audit_seal")
    assert seal.trigger.interval == dt.timedelta(seconds=5)  # CRM_AUDIT_SEAL_SECONDS
    assert service.job_time(service.jobs()["birthday_scan"]) == dt.time(7, 0)


def test_admin_sees_history_and_runs_a_job_now(admin_client: Any, make_user: Any, login_as: Any) -> None:
    page = admin_client.get("/admin/scheduler")
    assert page.status_code == 200 and "生日关怀扫描" in page.text
    r = admin_client.post("/admin/scheduler/run", data={"csrf_token": csrf_token(admin_client),
                                                        "job": "birthday_scan"}, follow_redirects=False)
    assert r.status_code == 303
    runs = _runs("birthday_scan")
    assert len(runs) == 1 and runs[0].status == "success" and (runs[0].run_key or "").startswith("manual:")
    assert "成功" in admin_client.get(r.headers["location"]).text

    make_user("sched_mgr")
    mgr = login_as("sched_mgr")
    assert mgr.get("/admin/scheduler").status_code == 403
    r = mgr.post("/admin/scheduler/run", data={"csrf_token": csrf_token(mgr), "job": "birthday_scan"},
                 follow_redirects=False)
    assert r.status_code == 403
    assert len(_runs("birthday_scan")) == 1


def test_run_cut_off_by_a_crash_is_marked_failed_by_the_next_run() -> None:
    from crm_admin.core.context import SYSTEM, acting_as

    with acting_as(SYSTEM), db.transaction() as s:
        s.add(JobRun(job="care_plans", started_at=NOON, status="running", host="dead-host:1:x"))
    assert service.run_job("care_plans", today=DAY, now=NOON).status == "success"
    assert [r.status for r in _runs("care_plans")] == ["failed", "success"]


def test_the_running_scheduler_seals_new_audit_rows_within_seconds() -> None:
    """The frequent job as the app runs it: APScheduler's interval trigger, the lease, the job session."""
    import time

    from crm_admin.core import audit
    from crm_admin.scheduler.runner import build_scheduler
    from crm_admin.settings import get_settings

    settings = get_settings().model_copy(update={"audit_seal_seconds": 1})
    sched = build_scheduler(settings)
    for job in sched.get_jobs():
        if job.id != "every:audit_seal":
            job.remove()
    assert sched.get_job("every:audit_seal").trigger.interval == dt.timedelta(seconds=1)
    audit.record_now("export", resource="customer", detail="等待封存")
    sched.start()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with db.get_engine().connect() as conn:
                if audit.unsealed_tail(conn)[0] == 0:
                    break
            time.sleep(0.2)
    finally:
        sched.shutdown(wait=True)
        service.release_periodic_leases()
    with db.get_engine().connect() as conn:
        report = audit.verify_chain(conn)
    assert report.intact and report.unsealed == 0 and report.checked >= 1
    with db.session_factory()() as session:
        assert session.get(JobLease, "audit_seal").holder is None  # handed over when the scheduler stops
