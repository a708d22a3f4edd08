"""Scheduled recycle-bin work: entries whose time in the bin is over are purged for good, once a day
(under the job's lease; a second run, or a catch-up after downtime, purges what is due by then)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.recycle_bin import service
from crm_admin.scheduler.service import JobContext, Outcome, register


@register("recycle_purge", "清理回收站过期记录", "job_recycle_purge_time")
def recycle_purge_job(session: Session, ctx: JobContext) -> Outcome:
    purged = service.purge_expired(session, ctx.now)
    return Outcome(purged, f"彻底删除 {purged} 条到期的回收站记录")
