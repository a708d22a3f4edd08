"""APScheduler in the web process: daily triggers, a periodic catch-up, started with the app.

Every app process runs a ``BackgroundScheduler``; the leases in ``scheduler.service`` make sure each
job's daily run happens once across all of them. The catch-up (at start and every 15 minutes)
runs any job whose time today has passed without a successful run — the server was down at 07:00,
or the run failed — so a missed run is never lost. Frequent jobs (sealing the audit log, every few
seconds) run on the process holding their lease (``service.run_periodic``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crm_admin.scheduler import service
from crm_admin.settings import Settings, get_settings

log = logging.getLogger(__name__)

CATCH_UP_MINUTES = 15

_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None


def _safe(fn: Any, *args: Any) -> None:
    """Job entry point: a failure is logged (and recorded by run_job), never kills the scheduler."""
    try:
        fn(*args)
    except Exception:
        log.exception("scheduled call %s%r failed", getattr(fn, "__name__", fn), args)


def build_scheduler(settings: Settings | None = None) -> BackgroundScheduler:
    settings = settings or get_settings()
    scheduler = BackgroundScheduler(
        timezone=settings.timezone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    for name, spec in service.jobs().items():
        at = service.job_time(spec)
        scheduler.add_job(
            _safe, CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.timezone),
            args=[service.scheduled_run, name], id=f"daily:{name}", name=spec.label, replace_existing=True,
        )
    scheduler.add_job(
        _safe, IntervalTrigger(minutes=CATCH_UP_MINUTES), args=[service.catch_up], id="catch_up",
        name="补跑错过的任务", replace_existing=True,
    )
    for name, periodic in service.periodic_jobs().items():
        seconds = service.periodic_seconds(periodic, settings)
        scheduler.add_job(
            _safe, IntervalTrigger(seconds=seconds), args=[service.run_periodic, name], id=f"every:{name}",
            name=periodic.label, replace_existing=True, misfire_grace_time=max(1, seconds),
        )
    return scheduler


def start(settings: Settings | None = None) -> BackgroundScheduler | None:
    """Start this process's scheduler (once) and run the catch-up in the background right away."""
    global _scheduler
    settings = settings or get_settings()
    if not settings.scheduler_enabled:
        return None
    with _lock:
        if _scheduler is not None:
            return _scheduler
        scheduler = build_scheduler(settings)
        scheduler.start()
        _scheduler = scheduler
    threading.Thread(target=_safe, args=(service.catch_up,), name="crm-catch-up", daemon=True).start()
    log.info("scheduler started: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    return scheduler


def stop() -> None:
    global _scheduler
    with _lock:
        if _scheduler is not None:
            _scheduler.shutdown(wait=False)
            _scheduler = None
            _safe(service.release_periodic_leases)


def running() -> bool:
    return _scheduler is not None and bool(_scheduler.running)


def next_runs() -> dict[str, Any]:
    if _scheduler is None:
        return {}
    return {job.id.removeprefix("daily:"): job.next_run_time for job in _scheduler.get_jobs()}


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The app's lifespan: the scheduler runs while the app serves (unless disabled in settings)."""
    settings = getattr(app.state, "settings", None) or get_settings()
    start(settings)
    try:
        yield
    finally:
        stop()
