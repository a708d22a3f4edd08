"""Scheduled import work: old import jobs and their files go (also swept when a new job starts)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.imports import chunks, store
from crm_admin.scheduler.service import JobContext, Outcome, register


@register("import_cleanup", "清理过期导入任务", "job_import_cleanup_time")
def import_cleanup_job(session: Session, ctx: JobContext) -> Outcome:
    removed = store.sweep(session, ctx.now)
    files = chunks.sweep_files(2 * store.JOB_TTL_SECONDS)
    return Outcome(removed, f"清理 {removed} 个过期导入任务" + (f",{files} 个临时文件" if files else ""))
