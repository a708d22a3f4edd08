"""Spreadsheet import shared by every module: read, dry run, apply, error workbook, progress.

A module describes its sheet with an ``ImportSpec`` (Chinese headers, a batch validator and a batch
writer); this module does the rest:

- Reading streams, within the limits of ``core/spreadsheet.py`` (an upload may be a zip bomb):
  ``.xlsx`` through a bounded streaming reader, CSV as UTF-8 (with or without BOM) or GB18030 (what
  Chinese Excel saves), decoded while reading. The upload is spooled to a file on disk; rows are
  handled in batches, never all held at once; a file past the row cap is refused before any row is
  checked.
- A job runs in a background thread (50,000 rows do not fit a request timeout); the page polls its
  progress. First a dry run validates every row (required fields, dictionary labels, dates, phones,
  credit codes, duplicates within the file and against the database) and writes rejected rows with
  a reason to an error workbook. Then, on request, the valid rows are applied in ONE transaction
  (re-validated, since the database may have moved meanwhile) with one ``import`` audit row; the
  per-row ORM audit is silenced for speed (``audit_silent``).

A job's state is a JSON file under the data directory next to its upload and error workbooks, so
any worker process of the server can show its progress, serve its error workbook and apply it; the
move from "validated" to "applying" happens under a per-job file lock, so a job is applied once.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import io
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy.orm import Session

from crm_admin.core import audit, limits, spreadsheet
from crm_admin.core.context import Actor, acting_as
from crm_admin.core.errors import UserError
from crm_admin.core.export import safe
from crm_admin.core.principal import Principal

log = logging.getLogger(__name__)

BATCH = 500
MAX_UPLOAD_BYTES = spreadsheet.MAX_UPLOAD_BYTES
MAX_ROWS = spreadsheet.MAX_ROWS
JOB_TTL_SECONDS = 6 * 3600
ERROR_HEADER = "错误原因"
ROW_HEADER = "行号"


class RowError(Exception):
    """A row that cannot be imported; the message goes into the error workbook."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    required: bool = False
    example: str = ""
    note: str = ""


@dataclass
class Row:
    number: int  # the row number in the sheet (header is row 1)
    raw: dict[str, Any]  # key → cell text as read
    values: dict[str, Any] | None = None  # key → normalised value, when valid
    error: str | None = None

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        return "" if value is None else str(value).strip()


@dataclass
class ImportContext:
    principal: Principal
    actor: Actor
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # per pass: in-file duplicate sets…


class ImportSpec:
    """What a module provides to import one kind of row."""

    key: str = ""  # URL name: /admin/import/<key>
    resource: str = ""  # permission resource (action "import")
    title: str = ""  # e.g. "客户"
    columns: list[Column] = []

    def notes(self) -> list[str]:
        """Extra lines for the template's 说明 sheet (dictionary values, rules)."""
        return []

    def begin(self, session: Session, ctx: ImportContext) -> None:
        ctx.state.clear()

    def check(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        """Set ``row.values`` or ``row.error`` for every row of the batch."""
        raise NotImplementedError

    def apply(self, session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        """Write the batch's valid rows; returns how many were written."""
        raise NotImplementedError

    def fit(self, model: type, values: dict[str, Any]) -> None:
        """Every value of a row must fit its column of ``model`` (range, decimals, length), or the row
        is refused with the sheet's own column name; rows go in by INSERT, past the ORM's check."""
        labels = {c.key: c.header for c in self.columns}
        try:
            limits.check_values(model, values, labels)
        except UserError as exc:
            raise RowError(exc.message.rstrip("。")) from None


# ----- reading -----------------------------------------------------------------------------------

def sniff(path: str) -> str:
    """'xlsx' or 'csv', or a UserError saying clearly what is wrong with the file.

    A zip's directory is checked here, at upload, against the limits of ``core/spreadsheet.py``
    (member count, names, declared sizes, ratio, encryption): the worst files are refused on the
    import page before any job starts."""
    size = os.path.getsize(path)
    if size == 0:
        raise UserError("上传的文件是空的(0 字节),请检查后重新上传。")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        spreadsheet.open_package(path).close()
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        if _encrypted_workbook(path):
            raise UserError("文件设置了打开密码,无法读取。请在 Excel 中取消密码后另存为 .xlsx 再上传。")
        raise UserError("不支持旧版 Excel(.xls)文件,请在 Excel 中另存为 .xlsx 或 CSV 后再上传。")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError("文件是 UTF-16 编码的文本(Excel 的“Unicode 文本”),请在 Excel 中另存为 .xlsx 或"
                        "“CSV UTF-8(逗号分隔)”后上传。")
    encoding = spreadsheet.csv_encoding(path)
    if encoding is None:
        raise UserError("文件不是 Excel(.xlsx)或 CSV 表格,请使用下载的模板填写后上传。")
    spreadsheet.check_csv_text(path, encoding)
    return "csv"


def _encrypted_workbook(path: str) -> bool:
    """A password-protected .xlsx is an OLE file holding an "EncryptedPackage" stream."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as fh:
        return marker in fh.read(MAX_UPLOAD_BYTES)


def _cell_text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # phones and codes typed as numbers
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | int | float):
        return str(value)
    return str(value)


def _raw_rows(path: str, kind: str) -> Iterator[list[Any]]:
    """The sheet's rows as lists of cell texts."""
    rows = spreadsheet.xlsx_rows(path) if kind == "xlsx" else spreadsheet.csv_rows(path)
    for values in rows:
        yield [_cell_text(v) for v in values]


def estimate_rows(path: str, kind: str) -> int | None:
    """Rows of the sheet, header and blank rows included, counted without reading them (for
    progress, and to notice a file past the row cap before any row is checked)."""
    count = spreadsheet.xlsx_row_count(path) if kind == "xlsx" else spreadsheet.count_lines(path)
    return count or None


def _normal_header(text: Any) -> str:
    header = "" if text is None else str(text).strip()
    return header.replace("*", "").replace("*", "").replace(" ", "").replace("\ufeff", "")


def read_rows(path: str, kind: str, spec: ImportSpec,
              sized: Callable[[int | None], None] | None = None) -> Iterator[Row]:
    """Rows of the first sheet keyed by the spec's columns (matched by header); blank rows skipped.

    ``sized`` is told the estimated number of data rows when the reading starts."""
    if sized is not None:
        lines = estimate_rows(path, kind)
        sized(lines - 1 if lines and lines > 1 else None)  # the header row is not data
    rows = _raw_rows(path, kind)
    header: list[Any] | None = None
    for values in rows:
        if any(v not in (None, "") for v in values):
            header = values
            break
    if header is None:
        raise UserError("表格中没有内容(找不到表头行)。")
    by_header = {_normal_header(c.header): c for c in spec.columns}
    positions: dict[int, Column] = {}
    for i, text in enumerate(header):
        col = by_header.get(_normal_header(text))
        if col is not None and col.key not in {c.key for c in positions.values()}:
            positions[i] = col
    missing = [c.header for c in spec.columns if c.required and c not in positions.values()]
    if missing:
        raise UserError(f"表头缺少必填列:{'、'.join(missing)}。请使用下载的模板(第一行为表头)。")
    number = 1
    for values in rows:
        number += 1
        if not any(v not in (None, "") for v in values):
            continue
        raw = {col.key: (values[i] if i < len(values) else None) for i, col in positions.items()}
        yield Row(number=number, raw=raw)


def batches(rows: Iterator[Row], size: int = BATCH) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----- templates ---------------------------------------------------------------------------------

def template_xlsx(spec: ImportSpec) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"{spec.title}导入"
    bold = Font(bold=True)
    for i, col in enumerate(spec.columns, 1):
        cell = ws.cell(row=1, column=i, value=col.header + ("*" if col.required else ""))
        cell.font = bold
        ws.cell(row=2, column=i, value=col.example or None)
        ws.column_dimensions[cell.column_letter].width = max(12, len(col.header) * 2 + 4)
    ws.freeze_panes = "A2"
    notes = wb.create_sheet("说明")
    notes.append(["列", "必填", "说明"])
    for col in spec.columns:
        notes.append([col.header, "是" if col.required else "", col.note])
    notes.append([])
    for line in spec.notes():
        notes.append([line])
    notes.append([])
    notes.append(["第二行是示例,导入前请删除或覆盖。支持 .xlsx 和 CSV(UTF-8 或 GB18030)。"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def template_csv(spec: ImportSpec) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.header + ("*" if c.required else "") for c in spec.columns])
    writer.writerow([c.example for c in spec.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# ----- error workbook ------------------------------------------------------------------------

class ErrorBook:
    """Rejected rows with their reason, written to disk as they come (write-only workbook)."""

    def __init__(self, path: str, spec: ImportSpec) -> None:
        self.path = path
        self.spec = spec
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet(title="未导入的行")
        bold = Font(bold=True)
        headers = [ROW_HEADER, ERROR_HEADER, *(c.header for c in spec.columns)]
        cells = []
        for h in headers:
            cell = WriteOnlyCell(self.ws, value=h)
            cell.font = bold
            cells.append(cell)
        self.ws.append(cells)
        self.count = 0

    def add(self, row: Row) -> None:
        self.ws.append([row.number, row.error, *(safe(_cell_text(row.raw.get(c.key))) for c in self.spec.columns)])
        self.count += 1

    def close(self) -> None:
        self.wb.save(self.path)


# ----- jobs --------------------------------------------------------------------------------
#
# A job's state is a JSON file in the shared data directory, so that every worker process of the
# server can show it, serve its error workbook and apply it. The process that runs a pass (dry run or
# apply) rewrites the file as progress changes and at least every ``HEARTBEAT_SECONDS``; a running
# job whose file has not been rewritten for ``STALE_SECONDS`` lost its process and is failed.

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0
SAVE_EVERY_SECONDS = 0.5
RUNNING = ("queued", "validating", "applying")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")

SpecResolver = Callable[[str], ImportSpec | None]


@dataclass
class ImportJob:
    id: str
    spec: ImportSpec
    owner_id: int
    actor: Actor
    filename: str
    path: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"  # queued/validating/validated/applying/done/failed
    processed: int = 0
    total: int | None = None
    valid: int = 0
    rejected: int = 0
    created: int = 0
    message: str = ""
    error_path: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    heartbeat: float = field(default_factory=time.time)
    # who runs the current pass; only in the process that runs it
    principal: Principal | None = field(default=None, repr=False, compare=False)
    _save_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _saved_at: float = field(default=0.0, repr=False, compare=False)

    STATUS_LABELS = {
        "queued": "排队中", "validating": "正在校验", "validated": "校验完成", "applying": "正在导入",
        "done": "导入完成", "failed": "失败",
    }

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "resource": self.spec.key, "title": self.spec.title, "filename": self.filename,
            "status": self.status, "status_label": self.STATUS_LABELS.get(self.status, self.status),
            "processed": self.processed, "total": self.total, "valid": self.valid,
            "rejected": self.rejected, "created": self.created, "message": self.message,
            "has_errors": bool(self.error_path and self.rejected),
            "running": self.status in RUNNING,
            "seconds": round((self.finished or time.time()) - self.started, 1),
        }

    def state(self) -> dict[str, Any]:
        """Everything the job file holds."""
        return {
            "id": self.id, "spec": self.spec.key, "title": self.spec.title, "owner_id": self.owner_id,
            "actor": {"user_id": self.actor.user_id, "username": self.actor.username, "ip": self.actor.ip,
                      "user_agent": self.actor.user_agent, "request_id": self.actor.request_id},
            "filename": self.filename, "path": self.path, "kind": self.kind, "options": self.options,
            "status": self.status, "processed": self.processed, "total": self.total, "valid": self.valid,
            "rejected": self.rejected, "created": self.created, "message": self.message,
            "error_path": self.error_path, "started": self.started, "finished": self.finished,
            "heartbeat": self.heartbeat, "pid": os.getpid(),
        }

    def refresh(self, state: dict[str, Any]) -> None:
        """Take over the progress fields of a state read from the job file."""
        for key in ("status", "processed", "total", "valid", "rejected", "created", "message", "error_path",
                    "finished", "heartbeat"):
            setattr(self, key, state.get(key, getattr(self, key)))

    @property
    def stale(self) -> bool:
        return self.status in RUNNING and time.time() - self.heartbeat > STALE_SECONDS


def _job_from_state(state: dict[str, Any], resolve: SpecResolver) -> ImportJob | None:
    spec = resolve(str(state.get("spec", "")))
    if spec is None:
        return None
    actor = state.get("actor") or {}
    try:
        job = ImportJob(
            id=str(state["id"]), spec=spec, owner_id=int(state["owner_id"]),
            actor=Actor(user_id=actor.get("user_id"), username=str(actor.get("username", "")),
                        ip=str(actor.get("ip", "")), user_agent=str(actor.get("user_agent", "")),
                        request_id=str(actor.get("request_id", ""))),
            filename=str(state.get("filename", "")), path=str(state["path"]), kind=str(state["kind"]),
            options=dict(state.get("options") or {}), started=float(state.get("started") or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None
    job.refresh(state)
    if job.stale:
        job.finished = job.heartbeat
        committed = _committed_apply(job) if state.get("status") == "applying" else None
        if committed is not None:
            # the process stopped after the import's transaction committed, before the file said so
            job.status = "done"
            job.created, job.rejected = int(committed.get("created") or 0), int(committed.get("rejected") or 0)
            job.error_path = ""
            job.message = f"导入完成:成功 {job.created} 行" + (
                f",未导入 {job.rejected} 行(服务在导入结束时重启,错误表未能保存,可重新上传原文件查看)。"
                if job.rejected else "。")
        else:
            job.status = "failed"
            job.message = STALE_MESSAGES.get(str(state.get("status")), STALE_MESSAGES["validating"])
    return job


def _committed_apply(job: ImportJob) -> dict[str, Any] | None:
    """The summary audit row an apply writes in its own transaction: there exactly when its rows are."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from crm_admin.audit.models import AuditLog
    from crm_admin.db import session_factory

    since = dt.datetime.fromtimestamp(job.started, dt.UTC) - dt.timedelta(minutes=1)
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


STALE_MESSAGES = {
    "queued": "文件校验意外中断(服务可能已重启),没有任何数据被写入。请重新上传文件。",
    "validating": "文件校验意外中断(服务可能已重启),没有任何数据被写入。请重新上传文件。",
    "applying": "导入意外中断(服务可能已重启),本次导入已全部撤销,没有任何数据被写入。请重新上传文件后再导入。",
}


def _work_dir() -> Path:
    from crm_admin.settings import get_settings

    base = Path(getattr(get_settings(), "data_dir", "") or tempfile.gettempdir())
    folder = base / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _jobs_dir() -> Path:
    folder = _work_dir() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _state_path(job_id: str) -> Path:
    return _jobs_dir() / f"{job_id}.json"


def _write_state(state: dict[str, Any]) -> None:
    """Replace the job file atomically: readers see the old or the new state, never half of one."""
    folder = _jobs_dir()
    fd, tmp = tempfile.mkstemp(prefix=f".{state['id']}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, ensure_ascii=False)
        os.replace(tmp, folder / f"{state['id']}.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_state(job_id: str) -> dict[str, Any] | None:
    if not _JOB_ID.fullmatch(job_id):
        return None
    try:
        with open(_state_path(job_id), encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _save(job: ImportJob) -> None:
    """Write the job's state (by the process that runs it: the write is also its heartbeat)."""
    with job._save_lock:
        job.heartbeat = job._saved_at = time.time()
        _write_state(job.state())


def _progress(job: ImportJob) -> None:
    if time.time() - job._saved_at >= SAVE_EVERY_SECONDS:
        _save(job)


@contextlib.contextmanager
def _job_lock(job_id: str) -> Iterator[None]:
    """An exclusive lock on one job across processes (and threads: one open file each)."""
    with open(_jobs_dir() / f"{job_id}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_job_files(job_id: str, state: dict[str, Any]) -> None:
    folder = _work_dir()
    paths = [state.get("path"), *folder.glob(f"errors-{job_id}*.xlsx"),
             _jobs_dir() / f"{job_id}.json", _jobs_dir() / f"{job_id}.lock"]
    for p in paths:
        if p:
            with contextlib.suppress(OSError):
                os.unlink(p)


def _sweep() -> None:
    """Remove jobs (and their files) finished, or abandoned, more than ``JOB_TTL_SECONDS`` ago."""
    now = time.time()
    for file in _jobs_dir().glob("*.json"):
        state = _read_state(file.stem)
        if state is None:
            with contextlib.suppress(OSError):
                if now - file.stat().st_mtime > JOB_TTL_SECONDS:
                    file.unlink()
            continue
        last = state.get("finished") or state.get("heartbeat") or state.get("started") or 0
        if now - float(last) > JOB_TTL_SECONDS:
            _remove_job_files(file.stem, state)
    # uploads whose job never came to be (the process stopped between upload and job)
    for file in _work_dir().glob("upload-*"):
        with contextlib.suppress(OSError):
            if now - file.stat().st_mtime > 2 * JOB_TTL_SECONDS:
                file.unlink()


def save_upload(chunks: Iterator[bytes]) -> str:
    """Spool an upload to disk (bounded size); returns the file path."""
    fd, path = tempfile.mkstemp(prefix="upload-", dir=_work_dir())
    size = 0
    with os.fdopen(fd, "wb") as fh:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                fh.close()
                os.unlink(path)
                raise UserError(f"文件过大(超过 {MAX_UPLOAD_BYTES // 1024 // 1024} MB),请拆分后分批导入。")
            fh.write(chunk)
    return path


async def save_upload_async(upload: Any) -> str:
    """Spool a Starlette ``UploadFile`` to disk chunk by chunk (bounded size); returns the path."""
    fd, path = tempfile.mkstemp(prefix="upload-", dir=_work_dir())
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while True:
                chunk = await upload.read(256 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise UserError(f"文件过大(超过 {MAX_UPLOAD_BYTES // 1024 // 1024} MB),请拆分后分批导入。")
                fh.write(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def start_job(spec: ImportSpec, principal: Principal, actor: Actor, *, path: str, filename: str,
              options: dict[str, Any] | None = None, run_async: bool = True) -> ImportJob:
    """Check the file and start its dry run (in a background thread unless ``run_async`` is False)."""
    _sweep()
    try:
        kind = sniff(path)
    except UserError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    job = ImportJob(id=secrets.token_urlsafe(12), spec=spec, owner_id=principal.id, actor=actor,
                    filename=filename[:120], path=path, kind=kind, options=dict(options or {}),
                    principal=principal)
    _save(job)
    _run(job, _validate, run_async)
    return job


def get_job(job_id: str, principal: Principal, resolve: SpecResolver) -> ImportJob | None:
    """A job of this user, read from its file (another user's job does not exist for them).

    ``resolve`` turns the job's spec key back into its ``ImportSpec``."""
    state = _read_state(job_id)
    if state is None or state.get("owner_id") != principal.id:
        return None
    return _job_from_state(state, resolve)


def jobs_of(principal: Principal, resolve: SpecResolver, spec_key: str | None = None) -> list[ImportJob]:
    jobs = []
    for file in _jobs_dir().glob("*.json"):
        state = _read_state(file.stem)
        if state is None or state.get("owner_id") != principal.id:
            continue
        if spec_key is not None and state.get("spec") != spec_key:
            continue
        job = _job_from_state(state, resolve)
        if job is not None:
            jobs.append(job)
    return sorted(jobs, key=lambda j: j.started, reverse=True)


def apply_job(job: ImportJob, principal: Principal, actor: Actor, *, run_async: bool = True) -> None:
    """Apply a validated job as ``principal`` (its owner), from any process, exactly once."""
    if principal.id != job.owner_id:
        raise UserError("导入任务不存在或已过期。")
    if not principal.can(job.spec.resource, "import"):
        raise UserError("您没有导入权限。")
    with _job_lock(job.id):
        state = _read_state(job.id)
        fresh = _job_from_state(state, lambda _key: job.spec) if state else None
        if fresh is None:
            raise UserError("导入任务不存在或已过期。")
        job.refresh(fresh.state())
        if job.status != "validated":
            raise UserError("该导入任务当前不能执行(可能已导入或仍在校验)。")
        if job.valid == 0:
            raise UserError("没有可导入的有效行。")
        job.status = "applying"
        job.processed = 0
        job.finished = None
        job.principal, job.actor = principal, actor
        _save(job)
    _run(job, _apply, run_async)


class _Heartbeat:
    """Rewrites the job file every ``HEARTBEAT_SECONDS`` while a pass runs, even inside a long batch."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"import-beat-{job.id}", daemon=True)

    def _beat(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                _save(self.job)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def _run(job: ImportJob, work: Callable[[ImportJob], None], run_async: bool) -> None:
    def target() -> None:
        try:
            with _Heartbeat(job), acting_as(job.actor):
                work(job)
        except UserError as exc:
            job.status, job.message = "failed", exc.message
        except Exception:
            log.exception("import job %s failed", job.id)
            job.status, job.message = "failed", "导入过程中发生意外错误,没有任何数据被写入。请稍后重试或联系管理员。"
        finally:
            if job.status in ("failed", "done", "validated"):
                job.finished = time.time()
            if job.status == "failed":  # nothing can be done with it any more
                with contextlib.suppress(OSError):
                    os.unlink(job.path)
            try:
                _save(job)
            except OSError:
                log.exception("import job %s: state not saved", job.id)

    if run_async:
        threading.Thread(target=target, name=f"import-{job.id}", daemon=True).start()
    else:
        target()


def _ctx(job: ImportJob) -> ImportContext:
    assert job.principal is not None, "a pass runs for the principal that started it"
    return ImportContext(principal=job.principal, actor=job.actor, options=job.options)


def _validate(job: ImportJob) -> None:
    from crm_admin.db import session_factory

    job.status = "validating"
    _save(job)
    error_path = str(_work_dir() / f"errors-{job.id}.xlsx")
    book = ErrorBook(error_path, job.spec)
    ctx = _ctx(job)
    valid = 0
    try:
        lines = estimate_rows(job.path, job.kind)
        job.total = lines - 1 if lines and lines > 1 else None  # the header row is not data
        if lines and lines > MAX_ROWS + 1:
            _refuse_past_cap(job)
        with session_factory()() as session:
            job.spec.begin(session, ctx)
            for batch in batches(read_rows(job.path, job.kind, job.spec)):
                if job.processed + len(batch) > MAX_ROWS:
                    raise spreadsheet.too_many_rows()
                job.spec.check(session, ctx, batch)
                for row in batch:
                    if row.error:
                        book.add(row)
                    else:
                        valid += 1
                job.processed += len(batch)
                job.valid, job.rejected = valid, book.count
                _progress(job)
    finally:
        book.close()
    job.error_path = error_path
    job.total = job.processed
    if job.processed == 0:
        raise UserError("表格中除表头外没有数据行。")
    job.status = "validated"
    job.message = f"共 {job.processed} 行:可导入 {job.valid} 行,有问题 {job.rejected} 行。"


def _refuse_past_cap(job: ImportJob) -> None:
    """More lines than the cap may still be fewer rows (blank rows, texts over several lines):
    count the rows that hold something, without checking them, and stop one past the cap."""
    if job.kind == "xlsx":
        if spreadsheet.xlsx_rows_with_values(job.path, MAX_ROWS + 2) > MAX_ROWS + 1:  # and the header
            raise spreadsheet.too_many_rows()
        return
    for count, _row in enumerate(read_rows(job.path, job.kind, job.spec), 1):
        if count > MAX_ROWS:
            raise spreadsheet.too_many_rows()


def _apply(job: ImportJob) -> None:
    from crm_admin.db import transaction

    if not os.path.exists(job.path):
        raise UserError("上传的文件已过期被清理,没有任何数据被写入。请重新上传文件。")
    error_path = str(_work_dir() / f"errors-{job.id}-apply.xlsx")
    book = ErrorBook(error_path, job.spec)
    ctx = _ctx(job)
    created = 0
    try:
        with transaction() as session:
            # one summary row instead of one audit row per imported record
            session.info[audit.INFO_SILENT] = True
            job.spec.begin(session, ctx)
            for batch in batches(read_rows(job.path, job.kind, job.spec)):
                job.spec.check(session, ctx, batch)
                good = [r for r in batch if not r.error]
                for row in batch:
                    if row.error:
                        book.add(row)
                if good:
                    created += job.spec.apply(session, ctx, good)
                job.processed += len(batch)
                _progress(job)
            audit.record(
                session, "import", resource=job.spec.resource, resource_id="",
                changes={"file": job.filename, "rows": job.processed, "created": created,
                         "rejected": book.count, "job": job.id},
                detail=f"导入{job.spec.title}:文件“{job.filename}”,成功 {created} 行,未导入 {book.count} 行",
            )
    finally:
        book.close()
    job.created = created
    job.rejected = book.count
    job.error_path = error_path
    job.status = "done"
    job.message = f"导入完成:成功 {created} 行" + (f",未导入 {book.count} 行(见错误表)。" if book.count else "。")
    with contextlib.suppress(OSError):
        os.unlink(job.path)


# ----- helpers for specs -------------------------------------------------------------------

def parse_date_cell(text: str, label: str) -> dt.date | None:
    if not text:
        return None
    candidate = text.strip().replace("/", "-").replace(".", "-").replace("年", "-").replace("月", "-").rstrip("日")
    candidate = candidate.split(" ")[0].split("T")[0]
    try:
        parts = [int(p) for p in candidate.split("-")]
        if len(parts) == 3:
            return dt.date(parts[0], parts[1], parts[2])
    except ValueError:
        pass
    raise RowError(f"{label}“{text}”不是有效日期(应为 2024-05-01 这样的格式)")


def parse_decimal_cell(text: str, model: type, key: str, label: str) -> Decimal | None:
    """A number from a cell (``1,234.5``) that fits ``model.key``'s column; None when blank."""
    try:
        return limits.parse_decimal(text, model, key, label)
    except UserError as exc:
        raise RowError(exc.message.rstrip("。")) from None


def parse_int_cell(text: str, model: type, key: str, label: str) -> int | None:
    """A whole number from a cell that fits ``model.key``'s column; None when blank."""
    try:
        return limits.parse_integer(text, model, key, label)
    except UserError as exc:
        raise RowError(exc.message.rstrip("。")) from None


def parse_bool_cell(text: str, label: str) -> bool | None:
    if not text:
        return None
    value = text.strip().lower()
    if value in ("是", "y", "yes", "true", "1", "√", "✓"):
        return True
    if value in ("否", "n", "no", "false", "0", "×"):
        return False
    raise RowError(f"{label}只能填“是”或“否”")


def dict_cell(type_code: str, text: str, label: str) -> str | None:
    """A dictionary value from what the sheet says (label, English label or stored value)."""
    from crm_admin.dictionary.service import entries, value_for_label

    if not text:
        return None
    value = value_for_label(type_code, text)
    if value is None:
        allowed = "、".join(e.label for e in entries(type_code)[:12])
        raise RowError(f"{label}“{text}”不在字典中(可选:{allowed})")
    return value
