"""Running scheduled jobs safely on several processes: leases, run history, catch-up.

Every process may start a scheduler (APScheduler runs every job in every process), so a job first
takes its database lease: one atomic ``UPDATE job_lease … WHERE expires_at < now OR holder = me``.
Whoever updates the row runs the job; the others skip. A crashed holder's lease simply expires.
Jobs are idempotent on top of that (unique keys on what they create), so a run repeated after a
crash, or by a process whose clock is late, creates nothing twice. Each run is one ``job_run`` row;
the job's own work is one transaction, so a failed run leaves nothing half-done.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from crm_admin.core import notify
from crm_admin.core.context import Actor, acting_as, current_actor
from crm_admin.core.errors import UserError, friendly_db_error
from crm_admin.core.formatting import company_tz
from crm_admin.db import run_in_transaction, utcnow
from crm_admin.scheduler.models import JobLease, JobRun
from crm_admin.settings import get_settings

log = logging.getLogger(__name__)

JOB_ACTOR = Actor(user_id=None, username="scheduler")
LEASE_TTL = dt.timedelta(minutes=30)
MAX_FAILED_RETRIES_PER_DAY = 3


@dataclass(frozen=True)
class JobContext:
    today: dt.date  # the business day (Asia/Shanghai)
    now: dt.datetime  # UTC
    trigger: str  # schedule / catchup / manual


@dataclass
class Outcome:
    created: int = 0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


JobFn = Callable[[Session, JobContext], Outcome]


@dataclass(frozen=True)
class JobSpec:
    name: str
    label: str
    fn: JobFn
    time_setting: str  # the Settings attribute holding "HH:MM"


@dataclass
class RunResult:
    job: str
    status: str  # success / failed / skipped
    created: int = 0
    detail: str = ""
    run_id: int | None = None


_JOBS: dict[str, JobSpec] = {}


def register(name: str, label: str, time_setting: str) -> Callable[[JobFn], JobFn]:
    def wrap(fn: JobFn) -> JobFn:
        _JOBS[name] = JobSpec(name, label, fn, time_setting)
        return fn

    return wrap


def jobs() -> dict[str, JobSpec]:
    _load_job_modules()
    return dict(_JOBS)


def _load_job_modules() -> None:
    # every model registered (the audit writer needs the whole metadata in a bare worker process)
    for module in ("crm_admin.models", "crm_admin.care.jobs", "crm_admin.churn.jobs", "crm_admin.scheduler.backup_job",
                   "crm_admin.imports.jobs", "crm_admin.audit.jobs", "crm_admin.recycle_bin.jobs",
                   "crm_admin.reclaim.jobs", "crm_admin.notifications.jobs"):
        importlib.import_module(module)


# ----- frequent jobs (every few seconds) ---------------------------------------------------------
# Housekeeping that runs all day on one process at a time (sealing the audit log). Its lease is kept
# by the process that took it and renewed at each run, so the other processes only read it; it
# lapses a minute or so after that process stops. Runs are not recorded in ``job_run`` (thousands
# a day): what they do shows where it matters (the audit log page shows the unsealed tail).

@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    label: str
    fn: Callable[[], Any]
    seconds_setting: str  # the Settings attribute holding the interval in seconds


_PERIODIC: dict[str, PeriodicSpec] = {}


def register_periodic(name: str, label: str, seconds_setting: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        _PERIODIC[name] = PeriodicSpec(name, label, fn, seconds_setting)
        return fn

    return wrap


def periodic_jobs() -> dict[str, PeriodicSpec]:
    _load_job_modules()
    return dict(_PERIODIC)


def periodic_seconds(spec: PeriodicSpec, settings: Any = None) -> int:
    return max(1, int(getattr(settings or get_settings(), spec.seconds_setting, 5) or 5))


def periodic_lease_ttl(spec: PeriodicSpec) -> dt.timedelta:
    return dt.timedelta(seconds=max(60, 6 * periodic_seconds(spec)))


_process_holder: str | None = None


def process_holder() -> str:
    """This process's lease holder for the frequent jobs (the same for its whole life)."""
    global _process_holder
    if _process_holder is None:
        _process_holder = holder_id()
    return _process_holder


def run_periodic(name: str, *, holder: str | None = None, now: dt.datetime | None = None) -> tuple[bool, Any]:
    """Run the frequent job ``name`` if this process holds its lease or can take it.

    Returns (ran, what the job returned)."""
    spec = periodic_jobs()[name]
    holder = holder or process_holder()
    if not acquire_lease(name, holder, now or utcnow(), periodic_lease_ttl(spec)):
        return False, None
    with acting_as(JOB_ACTOR):
        return True, spec.fn()


def release_periodic_leases(holder: str | None = None) -> None:
    """Hand the frequent jobs over at once (the scheduler is stopping) instead of after the TTL."""
    for name in _PERIODIC:
        release_lease(name, holder or process_holder(), succeeded_at=None)


def job_time(spec: JobSpec) -> dt.time:
    text = str(getattr(get_settings(), spec.time_setting, "") or "02:00")
    try:
        hour, minute = (int(p) for p in text.split(":", 1))
        return dt.time(hour % 24, minute % 60)
    except ValueError:
        log.warning("bad time %r for job %s; using 02:00", text, spec.name)
        return dt.time(2, 0)


def tz() -> Any:
    return company_tz()


def business_day(now: dt.datetime) -> dt.date:
    return now.astimezone(tz()).date()


def holder_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:10]}"


# ----- the lease -------------------------------------------------------------------------------

# The lease is decided by the database alone, which is what keeps it right across app nodes on a
# cluster: a conditional UPDATE (free, expired, or already ours) whose matched-row count says whether
# this holder got it. Two nodes taking it at once on a Galera cluster both match locally; the second
# commit fails certification (a deadlock error), is run again, and then matches nothing. Running
# it again is harmless even if the first commit did take effect (the row is then ours, and matches).
def acquire_lease(job: str, holder: str, now: dt.datetime, ttl: dt.timedelta = LEASE_TTL) -> bool:
    """Take ``job``'s lease if it is free or expired; True when this holder now has it."""
    return run_in_transaction(partial(_take_lease, job=job, holder=holder, now=now, ttl=ttl),
                              where=f"lease:{job}", idempotent=True)


def _take_lease(session: Session, *, job: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
    if session.get(JobLease, job) is None:
        try:
            with session.begin_nested():
                session.add(JobLease(job=job))
        except IntegrityError:  # another process created the row first
            pass
    got = _affected(session.execute(
        update(JobLease)
        .where(
            JobLease.job == job,
            or_(JobLease.expires_at.is_(None), JobLease.expires_at < now, JobLease.holder == holder),
        )
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    ))
    return bool(got)


def release_lease(job: str, holder: str, *, succeeded_at: dt.datetime | None) -> None:
    values: dict[str, Any] = {"holder": None, "expires_at": None}
    if succeeded_at is not None:
        values["last_success_at"] = succeeded_at
    run_in_transaction(
        lambda session: session.execute(
            update(JobLease).where(JobLease.job == job, JobLease.holder == holder).values(**values)
            .execution_options(synchronize_session=False)
        ),
        where=f"lease:{job}", idempotent=True,
    )


def last_success(job: str) -> dt.datetime | None:
    return run_in_transaction(
        lambda session: session.execute(select(JobLease.last_success_at).where(JobLease.job == job)).scalar(),
        where=f"lease:{job}", idempotent=True,
    )


# ----- running ---------------------------------------------------------------------------------

def run_job(
    name: str,
    *,
    trigger: str = "schedule",
    now: dt.datetime | None = None,
    today: dt.date | None = None,
    unless_done_since: dt.datetime | None = None,
    holder: str | None = None,
) -> RunResult:
    """Run one job under its lease and record the run.

    ``unless_done_since``: skip (without a record) when the job already succeeded at or after this
    moment — how a second process, or a catch-up, sees that today's run has been done.
    """
    spec = jobs().get(name)
    if spec is None:
        raise KeyError(name)
    now = now or utcnow()
    today = today or business_day(now)
    holder = holder or holder_id()
    if not acquire_lease(name, holder, utcnow()):
        return RunResult(name, "skipped", detail="该任务正在其他进程中运行。")
    succeeded_at: dt.datetime | None = None
    try:
        if unless_done_since is not None:
            done_at = last_success(name)
            if done_at is not None and done_at >= unless_done_since:
                return RunResult(name, "skipped", detail="今天的运行已完成。")
        run_id = _start_run(name, trigger, today, holder)
        ctx = JobContext(today=today, now=now, trigger=trigger)
        actor = current_actor() if trigger == "manual" else JOB_ACTOR
        try:
            # run again on a passing database error: every job is idempotent (unique keys on what
            # it creates, conditional updates), so even a commit whose outcome is unknown is safe
            with acting_as(actor):
                outcome = run_in_transaction(lambda session: spec.fn(session, ctx), where=f"job:{name}",
                                             long_running=True, idempotent=True)
            status, detail, created = "success", outcome.detail, outcome.created
            if outcome.extra.get("status") == "skipped":
                status = "skipped"
            # the run's logical start: it covers every due moment up to then (a clock given by tests too)
            succeeded_at = now
        except Exception as exc:  # recorded, never propagated into the scheduler thread
            log.exception("job %s failed", name)
            status, detail, created = "failed", _failure_reason(exc)[:2000], 0
        finished = (update(JobRun).where(JobRun.id == run_id).values(
            finished_at=utcnow(), status=status, created_count=created, detail=detail or None,
        ).execution_options(synchronize_session=False))

        def finish(session: Session) -> None:
            session.execute(finished)
            if status == "failed":  # administrators hear of it with the failure on record
                notify.notify(session, "job_failed", [notify.ADMINS], f"定时任务失败:{spec.label}", detail or "",
                              notify.Link("admin:view-scheduler"), dedupe_key=f"job_failed:{run_id}")

        run_in_transaction(finish, where=f"job:{name}", idempotent=True)
        return RunResult(name, status, created, detail, run_id)
    finally:
        release_lease(name, holder, succeeded_at=succeeded_at)


def _start_run(name: str, trigger: str, today: dt.date, holder: str) -> int:
    """Record the run as started (and, since we hold the lease, one still marked running as cut off)."""
    return run_in_transaction(partial(_record_start, name=name, trigger=trigger, today=today, holder=holder),
                              where=f"job:{name}")


def _record_start(session: Session, *, name: str, trigger: str, today: dt.date, holder: str) -> int:
    session.execute(
        update(JobRun).where(JobRun.job == name, JobRun.status == "running")
        .values(status="failed", finished_at=utcnow(), detail="运行中断(进程退出或崩溃),已由后续运行接替。")
        .execution_options(synchronize_session=False)
    )
    run = JobRun(job=name, run_key=f"{trigger}:{today.isoformat()}"[:64], started_at=utcnow(),
                 status="running", host=holder[:128])
    session.add(run)
    session.flush()
    return run.id


def _failure_reason(exc: Exception) -> str:
    """What the scheduler page shows: a refusal written for people (e.g. a backup that failed its
    verification) as is, a database error in words and never its SQL (the log has the rest)."""
    if isinstance(exc, UserError):
        return exc.message
    if isinstance(exc, SQLAlchemyError):
        return friendly_db_error(exc)
    return f"{type(exc).__name__}: {exc}"


def due_moment(spec: JobSpec, now: dt.datetime) -> dt.datetime:
    """Today's scheduled moment of ``spec`` (UTC)."""
    local = now.astimezone(tz())
    return dt.datetime.combine(local.date(), job_time(spec), tzinfo=tz()).astimezone(dt.UTC)


def failed_today(name: str, now: dt.datetime) -> int:
    start = dt.datetime.combine(business_day(now), dt.time.min, tzinfo=tz()).astimezone(dt.UTC)
    return run_in_transaction(lambda session: int(session.execute(
        select(func.count()).select_from(JobRun)
        .where(JobRun.job == name, JobRun.status == "failed", JobRun.started_at >= start)
    ).scalar_one()), where=f"job:{name}", idempotent=True)


def catch_up(now: dt.datetime | None = None) -> list[RunResult]:
    """Run every job whose time today has passed without a successful run since (missed while down)."""
    now = now or utcnow()
    results = []
    for name, spec in jobs().items():
        due = due_moment(spec, now)
        if now < due:
            continue
        done_at = last_success(name)
        if done_at is not None and done_at >= due:
            continue
        if failed_today(name, now) >= MAX_FAILED_RETRIES_PER_DAY:
            continue
        results.append(run_job(name, trigger="catchup", now=now, unless_done_since=due))
    return results


def scheduled_run(name: str) -> RunResult:
    """What the scheduler's daily trigger calls."""
    now = utcnow()
    spec = jobs()[name]
    return run_job(name, trigger="schedule", now=now, unless_done_since=due_moment(spec, now))


@dataclass
class JobStatus:
    name: str
    label: str
    time: str
    last_success_at: dt.datetime | None
    holder: str | None
    expires_at: dt.datetime | None
    last_run: dict[str, Any] | None


def status_overview(session: Session) -> list[JobStatus]:
    leases = {row.job: row for row in session.execute(select(JobLease)).scalars()}
    out = []
    for name, spec in jobs().items():
        last = session.execute(
            select(JobRun).where(JobRun.job == name).order_by(JobRun.id.desc()).limit(1)
        ).scalar_one_or_none()
        lease = leases.get(name)
        out.append(JobStatus(
            name=name, label=spec.label, time=job_time(spec).strftime("%H:%M"),
            last_success_at=lease.last_success_at if lease else None,
            holder=lease.holder if lease else None,
            expires_at=lease.expires_at if lease else None,
            last_run={"status": last.status, "started_at": last.started_at, "created": last.created_count,
                      "detail": last.detail} if last else None,
        ))
    return out


def recent_runs(session: Session, limit: int = 50) -> list[JobRun]:
    return list(session.execute(select(JobRun).order_by(JobRun.id.desc()).limit(limit)).scalars())


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def _affected(result: Any) -> int:
    """Rows matched by an UPDATE/INSERT (``CursorResult.rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)
