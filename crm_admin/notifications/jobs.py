"""Delivering the outbox (every few seconds, on one node at a time) and the daily digests."""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy.orm import Session

from crm_admin.db import run_in_transaction, utcnow
from crm_admin.notifications import service
from crm_admin.scheduler.service import JobContext, Outcome, register, register_periodic

log = logging.getLogger(__name__)


def send_pending(*, limit: int = service.SEND_BATCH, token: str | None = None) -> service.SendReport:
    """One pass: claim due rows (committed, so no other sender takes them), send them outside any
    transaction, record each result. Safe to run on several nodes at once: a row is claimed once."""
    token = token or service.new_token()
    report = service.SendReport()
    while True:
        now = utcnow()
        ids = run_in_transaction(partial(service.claim, token=token, now=now, limit=limit), where="notify:claim")
        if not ids:
            return report
        deliveries = run_in_transaction(partial(service.load_deliveries, ids=ids), where="notify:load",
                                        idempotent=True)
        results = service.deliver(deliveries)
        # the batch's results in one transaction (a row stays claimed until then: no other sender takes it)
        outcomes = run_in_transaction(partial(service.record_results, results=results, token=token, now=utcnow()),
                                      where="notify:result")
        report.sent += outcomes.count("sent")
        report.retried += outcomes.count("retried")
        report.failed += outcomes.count("failed")
        if len(ids) < limit:
            return report


@register_periodic("notification_send", "发送通知", "notify_send_seconds")
def notification_send() -> service.SendReport:
    report = send_pending()
    if report.failed:
        log.warning("notifications: %d deliveries failed for good", report.failed)
    return report


@register("notification_digest", "通知每日摘要", "job_notification_digest_time")
def notification_digest_job(session: Session, ctx: JobContext) -> Outcome:
    written = service.write_digests(session, ctx.today, ctx.now)
    return Outcome(written, f"{ctx.today.isoformat()}:生成 {written} 条每日摘要")
