"""Import jobs as rows of ``import_job``: created, read, reported on, claimed and swept.

The process that runs a pass (dry run or apply) reports its progress to the row, and at least every
``HEARTBEAT_SECONDS``; a running job whose heartbeat is older than ``STALE_SECONDS`` lost its process
and is shown as failed (unless its apply had committed: then it is done). Moving a job from
"validated" to "applying" is one conditional UPDATE, so exactly one process applies it. Every write
names the status it expects, so a late write of a process that lost the job changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crm_admin.core.context import Actor
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.db import run_in_transaction, session_factory, transaction, utcnow
from crm_admin.imports import chunks, registry
from crm_admin.imports.models import ImportChunk, ImportJob
from crm_admin.imports.spec import ImportSpec

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0
JOB_TTL_SECONDS = 6 * 3600
RUNNING = ("queued", "validating", "applying")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")

STATUS_LABELS = Labels({
    "queued": "排队中", "validating": "正在校验", "validated": "校验完成", "applying": "正在导入",
    "done": "导入完成", "failed": "失败",
})
STALE_MESSAGES = {
    "queued": "文件校验意外中断(服务可能已重启),没有任何数据被写入。请重新上传文件。",
    "validating": "文件校验意外中断(服务可能已重启),没有任何数据被写入。请重新上传文件。",
    "applying": "导入意外中断(服务可能已重启),本次导入已全部撤销,没有任何数据被写入。请重新上传文件后再导入。",
}
PROGRESS = ("processed", "total", "valid", "rejected")


def runner_id() -> str:
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


@dataclass
class Job:
    """A job as its row says (plus, in the process running a pass, who runs it)."""

    id: str
    spec: ImportSpec
    owner_id: int
    actor: Actor
    filename: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    processed: int = 0
    total: int | None = None
    valid: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    message: str = ""
    upload_size: int = 0
    errors_size: int | None = None
    plan_size: int | None = None
    started: dt.datetime = field(default_factory=utcnow)
    heartbeat: dt.datetime = field(default_factory=utcnow)
    finished: dt.datetime | None = None
    principal: Principal | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "resource": self.spec.key, "title": self.spec.title, "filename": self.filename,
            "status": self.status, "status_label": STATUS_LABELS.get(self.status, self.status),
            "processed": self.processed, "total": self.total, "valid": self.valid,
            "rejected": self.rejected, "created": self.created, "updated": self.updated,
            "unchanged": self.unchanged, "message": self.message, "has_plan": self.plan_size is not None,
            "has_errors": bool(self.errors_size is not None and self.rejected),
            "running": self.status in RUNNING,
            "seconds": round(((self.finished or utcnow()) - self.started).total_seconds(), 1),
        }

    @property
    def stale(self) -> bool:
        return self.status in RUNNING and (utcnow() - self.heartbeat).total_seconds() > STALE_SECONDS


# jobs whose pass runs in this process: shown as they are while they run, not as last reported (a
# finished pass is shown once its row says so)
_live: dict[str, Job] = {}
_live_lock = threading.Lock()


def run_here(job: Job) -> None:
    with _live_lock:
        _live[job.id] = job


def done_here(job: Job) -> None:
    with _live_lock:
        _live.pop(job.id, None)


def _actor_dict(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "username": actor.username, "ip": actor.ip,
            "user_agent": actor.user_agent, "request_id": actor.request_id}


def create(job: Job, upload_path: str) -> None:
    """The job's row and its upload, in one transaction."""
    with transaction() as session:
        session.execute(insert(ImportJob).values(
            id=job.id, owner_id=job.owner_id, spec=job.spec.key, status=job.status, filename=job.filename,
            kind=job.kind, options=job.options, actor=_actor_dict(job.actor), processed=0, valid=0,
            rejected=0, created=0, message="", upload_size=0, runner=runner_id(), started_at=job.started,
            heartbeat_at=job.heartbeat))
        job.upload_size = chunks.store_file(session, job.id, chunks.UPLOAD, upload_path)
        session.execute(update(ImportJob).where(ImportJob.id == job.id).values(upload_size=job.upload_size))


def _from_row(row: ImportJob) -> Job | None:
    spec = registry.spec(row.spec)
    if spec is None:
        return None
    a = row.actor or {}
    job = Job(id=row.id, spec=spec, owner_id=row.owner_id, filename=row.filename, kind=row.kind,
              actor=Actor(user_id=a.get("user_id"), username=str(a.get("username", "")), ip=str(a.get("ip", "")),
                          user_agent=str(a.get("user_agent", "")), request_id=str(a.get("request_id", ""))),
              options=dict(row.options or {}), status=row.status, processed=row.processed, total=row.total,
              valid=row.valid, rejected=row.rejected, created=row.created, updated=row.updated or 0,
              unchanged=row.unchanged or 0, message=row.message, plan_size=row.plan_size,
              upload_size=row.upload_size, errors_size=row.errors_size, started=row.started_at,
              heartbeat=row.heartbeat_at, finished=row.finished_at)
    if job.stale:
        _report_lost(job)
    return job


def _report_lost(job: Job) -> None:
    """A running job whose process stopped: failed, or done when its apply had committed."""
    job.finished = job.heartbeat
    committed = _committed_apply(job) if job.status == "applying" else None
    if committed is not None:
        # the process stopped after the import's transaction committed, before the row said so
        job.status = "done"
        job.created, job.rejected = int(committed.get("created") or 0), int(committed.get("rejected") or 0)
        job.updated = int(committed.get("updated") or 0)
        job.errors_size = None
        job.message = f"导入完成:成功 {job.created + job.updated} 行" + (
            f",未导入 {job.rejected} 行(服务在导入结束时重启,错误表未能保存,可重新上传原文件查看)。"
            if job.rejected else "。")
    else:
        job.message = STALE_MESSAGES.get(job.status, STALE_MESSAGES["validating"])
        job.status = "failed"


def _committed_apply(job: Job) -> dict[str, Any] | None:
    """The summary audit row an apply writes in its own transaction: there exactly when its rows are."""
    from crm_admin.audit.models import AuditLog

    since = job.started - dt.timedelta(minutes=1)
    try:
        with session_factory()() as session:
            for changes in session.execute(
                select(AuditLog.changes).where(AuditLog.action == "import", AuditLog.occurred_at >= since)
            ).scalars():
                if isinstance(changes, dict) and changes.get("job") == job.id:
                    return changes
    except SQLAlchemyError:
        log.warning("import job %s: could not look for its audit row", job.id)
    return None


def load(job_id: str) -> Job | None:
    """The job as this process runs it, or as its row says."""
    if not _JOB_ID.fullmatch(job_id or ""):
        return None
    with _live_lock:
        live = _live.get(job_id)
    if live is not None and live.status in RUNNING:
        return Job(**{f: getattr(live, f) for f in live.__dataclass_fields__ if f != "principal"})
    with session_factory()() as session:
        row = session.get(ImportJob, job_id)
        return _from_row(row) if row is not None else None


def get_job(job_id: str, principal: Principal) -> Job | None:
    """A job of this user (another user's job does not exist for them)."""
    job = load(job_id)
    return job if job is not None and job.owner_id == principal.id else None


def jobs_of(principal: Principal, spec_key: str | None = None, limit: int = 50) -> list[Job]:
    """The user's latest jobs, newest first."""
    stmt = select(ImportJob).where(ImportJob.owner_id == principal.id)
    if spec_key is not None:
        stmt = stmt.where(ImportJob.spec == spec_key)
    with session_factory()() as session:
        rows = session.execute(stmt.order_by(ImportJob.started_at.desc()).limit(limit)).scalars().all()
        found = [_from_row(r) for r in rows]
    out = []
    for job in found:
        if job is None:
            continue
        live = load(job.id) if job.status in RUNNING else None
        out.append(live or job)
    return out


def report(job: Job) -> None:
    """Progress and heartbeat of a running pass (only while the row still says what this pass does)."""
    now = utcnow()
    with transaction() as session:
        session.execute(update(ImportJob).where(ImportJob.id == job.id, ImportJob.status == job.status).values(
            heartbeat_at=now, **{k: getattr(job, k) for k in PROGRESS}))
    job.heartbeat = now


def write_state(job: Job, expect: str, session: Session | None = None) -> bool:
    """Write the job's status, counts and message if its row still says ``expect``; True if written.

    ``session``: inside the caller's transaction (the apply writes "done" with the imported rows)."""
    values = {k: getattr(job, k) for k in PROGRESS}
    values.update(status=job.status, created=job.created, updated=job.updated, unchanged=job.unchanged,
                  message=job.message[:1000], errors_size=job.errors_size, plan_size=job.plan_size,
                  finished_at=job.finished, heartbeat_at=utcnow())
    stmt = update(ImportJob).where(ImportJob.id == job.id, ImportJob.status == expect).values(**values)
    if session is not None:
        return _affected(session.execute(stmt)) == 1
    return run_in_transaction(lambda own: _affected(own.execute(stmt)) == 1, where="import:state")


def claim_for_apply(job_id: str, owner_id: int, actor: Actor) -> bool:
    """Move a validated job with valid rows to "applying": True for exactly one caller (the
    conditional UPDATE decides, on every node of a cluster alike)."""
    return run_in_transaction(lambda session: _affected(session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.owner_id == owner_id, ImportJob.status == "validated",
                   ImportJob.valid > 0)
            .values(status="applying", processed=0, finished_at=None, heartbeat_at=utcnow(), message="",
                    actor=_actor_dict(actor), runner=runner_id())
            .execution_options(synchronize_session=False))) == 1, where="import:claim")


def drop_upload(job_id: str) -> None:
    with transaction() as session:
        chunks.drop(session, job_id, chunks.UPLOAD)


def sweep(session: Session, now: dt.datetime | None = None) -> int:
    """Remove jobs (with their files) finished, or abandoned, more than ``JOB_TTL_SECONDS`` ago."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=JOB_TTL_SECONDS)
    old = or_(ImportJob.finished_at < cutoff, and_(ImportJob.finished_at.is_(None), ImportJob.heartbeat_at < cutoff))
    ids = list(session.execute(select(ImportJob.id).where(old)).scalars())
    removed = 0
    for start in range(0, len(ids), 100):
        batch = ids[start:start + 100]
        # still old when deleted: a job claimed meanwhile stays, with its files
        removed += _affected(session.execute(delete(ImportJob).where(ImportJob.id.in_(batch), old)))
    # the files of the jobs gone (the foreign key cascades too, where the database enforces it)
    session.execute(delete(ImportChunk).where(ImportChunk.job_id.not_in(select(ImportJob.id))))
    return removed


def _affected(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
