"""Scheduled reclaim: the daily return of due customers to their rules' pools."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.reclaim.service import run_daily
from crm_admin.scheduler.service import JobContext, Outcome, register


@register("reclaim", "客户自动回收", "job_reclaim_time")
def reclaim_job(session: Session, ctx: JobContext) -> Outcome:
    report = run_daily(session, ctx.today, ctx.now)
    extra = {"status": "skipped"} if report.skipped else {}
    return Outcome(report.moved, report.describe(), extra)
