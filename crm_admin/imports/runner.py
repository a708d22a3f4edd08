"""Running an import job: the dry run, then (on request, from any process) the apply.

Each pass runs in a background thread (50,000 rows do not fit a request timeout) while a reporter
thread writes its progress and heartbeat to the job's row. The dry run validates every row (required
fields, dictionary labels, dates, phones, credit codes, duplicates within the file and against the
database) and keeps rejected rows with a reason in an error workbook. The apply writes the valid rows
in ONE transaction (re-validated, since the database may have moved meanwhile) with one ``import``
audit row, its error workbook and the job's "done": all of it or none. The per-row ORM audit is
silenced for speed (``audit_silent``).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core import audit, notify
from crm_admin.core.context import Actor, acting_as
from crm_admin.core.errors import UserError
from crm_admin.core.principal import Principal
from crm_admin.core.ticker import Ticker
from crm_admin.db import run_in_transaction, session_factory, transaction, utcnow
from crm_admin.imports import chunks, spreadsheet, store, updating
from crm_admin.imports.reading import (
    MAX_ROWS,
    batches,
    estimate_rows,
    read_rows,
    refuse_past_cap,
    sniff,
)
from crm_admin.imports.spec import (
    CREATE,
    LOST_MATCH,
    NEW_MATCH,
    REJECT,
    STALE_MATCH,
    UNCHANGED,
    UPDATE,
    ImportContext,
    ImportSpec,
    Planned,
    Row,
)
from crm_admin.imports.store import Job
from crm_admin.imports.workbooks import ErrorBook

log = logging.getLogger(__name__)

SAVE_EVERY_SECONDS = 0.5
UNEXPECTED = "导入过程中发生意外错误,没有任何数据被写入。请稍后重试或联系管理员。"
UPLOAD_GONE = "上传的文件已过期被清理,没有任何数据被写入。请重新上传文件。"


def start_job(spec: ImportSpec, principal: Principal, actor: Actor, *, path: str, filename: str,
              options: dict[str, Any] | None = None, run_async: bool = True) -> Job:
    """Check the spooled upload at ``path``, keep it with a new job and start its dry run (in a
    background thread unless ``run_async`` is False). The file at ``path`` is the job's from here on:
    it is removed once the dry run has read it (or at once when it is refused)."""
    sweep_now()
    try:
        kind = sniff(path)
        job = Job(id=secrets.token_urlsafe(12), spec=spec, owner_id=principal.id, actor=actor,
                  filename=filename[:120], kind=kind, options=dict(options or {}), principal=principal)
        store.create(job, path)
    except BaseException:
        chunks.remove(path)
        raise
    _run(job, lambda j: _validate(j, path), "queued", run_async, cleanup=path)
    return job


def apply_job(job: Job, principal: Principal, actor: Actor, *, run_async: bool = True) -> None:
    """Apply a validated job as ``principal`` (its owner), from any process, exactly once."""
    if principal.id != job.owner_id:
        raise UserError("导入任务不存在或已过期。")
    if not principal.can(job.spec.resource, "import"):
        raise UserError("您没有导入权限。")
    if not store.claim_for_apply(job.id, job.owner_id, actor):
        fresh = store.get_job(job.id, principal)
        if fresh is None:
            raise UserError("导入任务不存在或已过期。")
        if fresh.status != "validated":
            raise UserError("该导入任务当前不能执行(可能已导入或仍在校验)。")
        raise UserError("没有可导入的有效行。")
    fresh = store.get_job(job.id, principal)
    if fresh is not None:
        for key in ("processed", "total", "valid", "rejected", "created", "updated", "unchanged", "upload_size",
                    "errors_size", "plan_size", "started"):
            setattr(job, key, getattr(fresh, key))
    job.status, job.processed, job.finished, job.message = "applying", 0, None, ""
    job.principal, job.actor = principal, actor
    _run(job, _apply, "applying", run_async)


def sweep_now() -> None:
    """Old jobs go before a new one starts (and daily: ``jobs.py``)."""
    try:
        with transaction() as session:
            store.sweep(session)
        chunks.sweep_files(2 * store.JOB_TTL_SECONDS)
    except Exception:  # a clean-up that failed must not refuse the upload
        log.exception("import jobs: sweep failed")


class _Reporter(Ticker):
    """Writes the job's progress every ``SAVE_EVERY_SECONDS`` when it moved, and its heartbeat every
    ``HEARTBEAT_SECONDS`` regardless, from a thread of its own: the pass never waits for it (on SQLite
    the apply's transaction holds the write lock; the row catches up when it commits)."""

    def __init__(self, job: Job) -> None:
        super().__init__(SAVE_EVERY_SECONDS, name=f"import-beat-{job.id}")
        self.job = job
        self.last: tuple[Any, ...] = ()
        self.beat = utcnow()

    def tick(self) -> None:
        job = self.job
        seen = (job.status, *(getattr(job, k) for k in store.PROGRESS))
        if seen == self.last and (utcnow() - self.beat).total_seconds() < store.HEARTBEAT_SECONDS:
            return
        try:
            store.report(job)
        except Exception:
            log.warning("import job %s: progress not saved", job.id, exc_info=True)
            return
        self.last, self.beat = seen, utcnow()


def _run(job: Job, work: Callable[[Job], None], claimed: str, run_async: bool, cleanup: str | None = None) -> None:
    """Run ``work`` for ``job`` whose row says ``claimed``; the final state is written unless ``work``
    wrote it itself (the apply, with its rows)."""

    def target() -> None:
        store.run_here(job)
        expect = claimed
        try:
            with acting_as(job.actor):
                if job.status == "queued":
                    job.status = "validating"
                    store.write_state(job, expect)
                    expect = "validating"
                with _Reporter(job):
                    work(job)
        except UserError as exc:
            job.status, job.message = "failed", exc.message
        except Exception:
            log.exception("import job %s failed", job.id)
            job.status, job.message = "failed", UNEXPECTED
        finally:
            chunks.remove(cleanup)
            try:
                if job.status in ("failed", "validated"):
                    job.finished = utcnow()
                    with transaction() as session:
                        if not store.write_state(job, expect, session):
                            log.warning("import job %s: no longer %s, state not saved", job.id, expect)
                        if job.status == "failed":  # nothing can be done with it any more
                            chunks.drop(session, job.id, chunks.UPLOAD)
            except Exception:
                log.exception("import job %s: state not saved", job.id)
            finally:
                store.done_here(job)

    if run_async:
        threading.Thread(target=target, name=f"import-{job.id}", daemon=True).start()
    else:
        target()


def _ctx(job: Job) -> ImportContext:
    assert job.principal is not None, "a pass runs for the principal that started it"
    return ImportContext(principal=job.principal, actor=job.actor, options=job.options)


def _validate(job: Job, path: str) -> None:
    error_path = chunks.temp_path("errors-", ".xlsx")
    plan_path = chunks.temp_path("errors-", ".plan") if updating.updating(job.options) else None
    try:
        book = ErrorBook(error_path, job.spec)
        plan = updating.PlanWriter(plan_path) if plan_path else None
        ctx = _ctx(job)
        valid = 0
        try:
            lines = estimate_rows(path, job.kind)
            job.total = lines - 1 if lines and lines > 1 else None  # the header row is not data
            if lines and lines > MAX_ROWS + 1:
                refuse_past_cap(path, job.kind, job.spec, job.options)
            with session_factory()() as session:
                job.spec.begin(session, ctx)
                for batch in batches(read_rows(path, job.kind, job.spec, options=job.options)):
                    if job.processed + len(batch) > MAX_ROWS:
                        raise spreadsheet.too_many_rows()
                    job.spec.check(session, ctx, batch)
                    for row in batch:
                        if row.error:
                            book.add(row)
                        elif row.action == UNCHANGED:
                            job.unchanged += 1
                        else:
                            valid += 1
                            job.updated += row.action == UPDATE
                        if plan is not None:
                            plan.add(row)
                    job.processed += len(batch)
                    job.valid, job.rejected = valid, book.count
        finally:
            book.close()
            if plan is not None:
                plan.close()
        job.total = job.processed
        if job.processed == 0:
            raise UserError("表格中除表头外没有数据行。")
        with transaction() as session:
            job.errors_size = chunks.store_file(session, job.id, chunks.ERRORS, error_path)
            if plan_path:
                job.plan_size = chunks.store_file(session, job.id, updating.PLAN, plan_path)
    finally:
        chunks.remove(error_path)
        chunks.remove(plan_path)
    job.status = "validated"
    if plan_path:
        job.message = (f"共 {job.processed} 行:新建 {job.valid - job.updated} 行,更新 {job.updated} 行,"
                       f"无变化 {job.unchanged} 行,有问题 {job.rejected} 行。")
    else:
        job.message = f"共 {job.processed} 行:可导入 {job.valid} 行,有问题 {job.rejected} 行。"


def _against_plan(ctx: ImportContext, rows: list[Row]) -> None:
    """An updating import's apply: a row whose match is not what the dry run showed is refused (the
    existing row changed, was deleted or left the scope, or a row that created now matches one)."""
    assert ctx.planned is not None
    for row in rows:
        if row.error:
            continue
        was = ctx.planned.get(row.number) or Planned(REJECT, None, None)
        if row.action in (UPDATE, UNCHANGED):  # only a change the dry run showed is made
            if was.action not in (UPDATE, UNCHANGED) or was.target != row.target:
                row.error = NEW_MATCH
            elif was.version != row.version:
                row.error = STALE_MATCH.format(before=was.version, now=row.version)
        elif row.action == CREATE and was.action in (UPDATE, UNCHANGED):
            row.error = LOST_MATCH


def _apply(job: Job) -> None:
    path = chunks.restore_file(job.id, chunks.UPLOAD, job.upload_size, "apply-")
    if path is None:
        raise UserError(UPLOAD_GONE)
    error_path = chunks.temp_path("errors-", ".xlsx")

    update = updating.updating(job.options)
    planned = updating.planned(job.id) if update and job.plan_size is not None else None
    if update and planned is None:
        raise UserError(UPLOAD_GONE)

    def apply_once(session: Session) -> Job:
        book = ErrorBook(error_path, job.spec)
        ctx = _ctx(job)
        ctx.planned = planned
        written = updated = unchanged = 0
        job.processed = 0
        # one summary row instead of one audit row per created record (an update writes the field-level
        # diff the customer form writes: the importer asks for it)
        session.info[audit.INFO_SILENT] = True
        job.spec.begin(session, ctx)
        try:
            for batch in batches(read_rows(path, job.kind, job.spec, options=job.options)):
                job.spec.check(session, ctx, batch)
                if planned is not None:
                    _against_plan(ctx, batch)
                good = [r for r in batch if not r.error and r.action != UNCHANGED]
                if good:
                    written += job.spec.apply(session, ctx, good)  # may still refuse a row (locked, stale)
                for row in batch:
                    if row.error:
                        book.add(row)
                    elif row.action == UPDATE:
                        updated += 1
                    elif row.action == UNCHANGED:
                        unchanged += 1
                job.processed += len(batch)
        finally:
            book.close()
        created = written - updated
        summary: dict[str, Any] = {"file": job.filename, "rows": job.processed, "created": created,
                                   "rejected": book.count, "job": job.id}
        detail = f"导入{job.spec.title}:文件“{job.filename}”,成功 {written} 行,未导入 {book.count} 行"
        if update:
            summary.update(updated=updated, unchanged=unchanged, match_by=job.options.get("match_by"),
                           update_columns=job.options.get("update_columns"))
            detail = (f"导入{job.spec.title}:文件“{job.filename}”,新建 {created} 行,更新 {updated} 行,"
                      f"无变化 {unchanged} 行,未导入 {book.count} 行")
        audit.record(session, "import", resource=job.spec.resource, resource_id="", changes=summary,
                     detail=detail)
        # the job's outcome commits with the rows, or neither does
        done = Job(**{f: getattr(job, f) for f in job.__dataclass_fields__ if f != "principal"})
        done.created, done.rejected, done.status, done.finished = created, book.count, "done", utcnow()
        done.updated, done.unchanged = updated, unchanged
        done.errors_size = chunks.store_file(session, job.id, chunks.ERRORS, error_path)
        if update:
            done.message = (f"导入完成:新建 {created} 行,更新 {updated} 行,无变化 {unchanged} 行"
                            + (f",未导入 {book.count} 行(见错误表)。" if book.count else "。"))
        else:
            done.message = f"导入完成:成功 {created} 行" + (
                f",未导入 {book.count} 行(见错误表)。" if book.count else "。")
        chunks.drop(session, job.id, chunks.UPLOAD)  # applied: the upload is not needed any more
        if not store.write_state(done, "applying", session):
            raise UserError("导入任务已过期被清理,没有任何数据被写入。请重新上传文件。")
        notify.notify(session, "import_done", [job.owner_id], f"导入{job.spec.title}完成:{job.filename}"[:200],
                      done.message, notify.Link("admin:view-import-job", {"job_id": job.id}),
                      dedupe_key=f"import_done:{job.id}")
        return done

    try:
        # Run again from the file on a passing database error (a deadlock, a cluster node leaving).
        # Safe even when a commit's outcome is unknown: the job's row moves from "applying" to "done"
        # in the same transaction, so a second run after a first one that did commit is refused by
        # that conditional update and rolled back whole.
        done = run_in_transaction(apply_once, where=f"import:{job.spec.key}", idempotent=True)
        for key in ("created", "updated", "unchanged", "rejected", "errors_size", "message", "finished", "status"):
            setattr(job, key, getattr(done, key))
    finally:
        chunks.remove(path)
        chunks.remove(error_path)
