"""Import jobs shared by every process and node: state, upload and error workbook in the database,
applied once, owner only, stale heartbeats, clean-up."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete, func, select, update

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.customers.importing import SPEC as CUSTOMERS
from crm_admin.customers.models import Customer
from crm_admin.imports import chunks, runner, store
from crm_admin.imports.models import ImportChunk, ImportJob
from tests.customers.conftest import form_token
from tests.imports.test_imports import _csv, _xlsx

ROOT = Path(__file__).resolve().parents[2]

# A second server process: reads the job from the database, shows it, tries to apply it.
OTHER_PROCESS = r"""
import json, logging, sys
from sqlalchemy import select
import crm_admin.models  # noqa: F401  (every table, as in the server)
from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.principal import load_principal
from crm_admin.imports import runner, store

job_id, username, go = sys.argv[1], sys.argv[2], sys.argv[3]
with db.session_factory()() as session:
    user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
    principal = load_principal(session.connection(), user)
job = store.get_job(job_id, principal)
logging.basicConfig()
out = {"seen": job.as_dict() if job else None}
print(json.dumps(out), flush=True)
sys.stdin.readline()  # both processes apply at the same moment
if job is not None and go == "apply":
    try:
        runner.apply_job(job, principal, Actor(principal.id, principal.username), run_async=False)
        out["applied"] = job.as_dict()
    except UserError as exc:
        out["refused"] = exc.message
print(json.dumps(out), flush=True)
"""


def _actor(p: Any) -> Actor:
    return Actor(p.id, p.username)


def _validated(tmp_path: Any, p: Any, rows: list[list[Any]], data: bytes | None = None) -> store.Job:
    """A validated job of ``rows`` (or of the workbook ``data`` already built from them)."""
    path = tmp_path / "upload.bin"
    path.write_bytes(data if data is not None else _xlsx(rows))
    job = runner.start_job(CUSTOMERS, p, _actor(p), path=str(path), filename="客户.xlsx", run_async=False)
    assert job.status == "validated", job.message
    return job


def _count(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _row(job_id: str) -> ImportJob | None:
    with db.session_factory()() as s:
        return s.get(ImportJob, job_id)


def _kept(job_id: str, kind: str) -> bytes:
    return b"".join(chunks.pieces(job_id, kind))


def _rewrite(job_id: str, **values: Any) -> None:
    with db.transaction() as s:
        s.execute(update(ImportJob).where(ImportJob.id == job_id).values(**values))


ROWS = [["华东精密机械有限公司", None, "制造业", "B", None], ["华东精密机械", None, None, None, None],
        ["西部云数据有限公司", None, "信息技术", "A", "13900000002"], ["坏行", None, "造火箭", None, None]]


def test_job_is_a_row_any_process_can_read(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    uploaded = _xlsx(ROWS)  # a workbook carries the second it was made: build it once
    job = _validated(tmp_path, p, ROWS, uploaded)
    row = _row(job.id)
    assert row is not None
    assert (row.spec, row.owner_id, row.status, row.kind) == ("customer", p.id, "validated", "xlsx")
    assert row.actor["username"] == "wang" and row.filename == "客户.xlsx"
    assert (row.valid, row.rejected, row.processed, row.total) == (2, 2, 4, 4)
    assert row.heartbeat_at and row.finished_at and row.started_at <= row.finished_at
    # the durable copies: the upload as it was sent, and the error workbook
    assert _kept(job.id, chunks.UPLOAD) == uploaded and row.upload_size == len(uploaded)
    assert row.errors_size == len(_kept(job.id, chunks.ERRORS)) > 0
    assert not (tmp_path / "upload.bin").exists()  # the spooled file went once read
    # a fresh object from the row alone (what another worker sees)
    seen = store.get_job(job.id, p)
    assert seen is not None and seen is not job
    assert seen.as_dict() == {**job.as_dict(), "seconds": seen.as_dict()["seconds"]}
    assert [j.id for j in store.jobs_of(p, "customer")] == [job.id]
    assert store.jobs_of(p, "product") == []
    runner.apply_job(seen, p, _actor(p), run_async=False)
    assert seen.status == "done" and seen.created == 2
    again = store.get_job(job.id, p)
    assert again is not None and again.status == "done" and again.created == 2 and again.finished
    assert _kept(job.id, chunks.UPLOAD) == b""  # the upload goes once applied
    assert _kept(job.id, chunks.ERRORS)  # the apply's error workbook
    assert _count(Customer) == 2


def test_upload_and_error_workbook_live_in_the_database(tmp_path: Any, make_user: Any, login_as: Any) -> None:
    """Nothing of a job stays on the disk of the node that took the upload: the error workbook is
    served, and the job applied, from the database alone."""
    from crm_admin.settings import get_settings

    make_user("wang")
    client = login_as("wang")
    work = Path(get_settings().data_dir) / "imports"
    before = set(work.iterdir()) if work.exists() else set()
    page = client.get("/admin/import/customer")
    r = client.post("/admin/import/customer", data={"csrf_token": form_token(page.text)},
                    files={"file": ("客户.csv", _csv(ROWS, "utf-8"))}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    url = r.headers["location"]
    assert _wait(client, url)["status"] == "validated"
    job_id = url.rstrip("/").rsplit("/", 1)[-1]
    assert set(work.iterdir()) - before == set()  # the spooled upload and the error workbook's file went
    assert _kept(job_id, chunks.UPLOAD) == _csv(ROWS, "utf-8")
    errors = client.get(url + "/errors.xlsx")
    assert errors.status_code == 200 and errors.content == _kept(job_id, chunks.ERRORS)
    rows = list(load_workbook(io.BytesIO(errors.content), read_only=True).active.iter_rows(values_only=True))
    assert rows[0][:3] == ("行号", "错误原因", "客户名称") and len(rows) == 3
    r = client.post(url + "/apply", data={"csrf_token": form_token(page.text)}, headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json()["ok"]
    assert _wait(client, url)["status"] == "done"
    assert _count(Customer) == 2
    # the error workbook gone (cleaned up meanwhile): a clear 404
    with db.transaction() as s:
        s.execute(delete(ImportChunk).where(ImportChunk.job_id == job_id))
    assert client.get(url + "/errors.xlsx").status_code == 404


def test_another_process_shows_and_applies_once(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    procs = [subprocess.Popen([sys.executable, "-c", OTHER_PROCESS, job.id, "wang", "apply"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            seen = json.loads(line)
            assert seen["seen"]["status"] == "validated" and seen["seen"]["valid"] == 2 and seen["seen"]["has_errors"]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        outs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            outs.append({**json.loads(stdout.strip().splitlines()[-1]), "stderr": stderr})
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    applied = [o for o in outs if "applied" in o]
    refused = [o for o in outs if "refused" in o]
    assert len(applied) == 1 and len(refused) == 1, outs
    assert applied[0]["applied"]["status"] == "done", applied[0]["stderr"]
    assert applied[0]["applied"]["created"] == 2
    assert "不能执行" in refused[0]["refused"]
    assert _count(Customer) == 2
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(AuditLog)
                         .where(AuditLog.action == "import")).scalar_one() == 1
    here = store.get_job(job.id, p)
    assert here is not None and here.status == "done" and here.created == 2


def test_concurrent_apply_attempts_apply_once(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, [[f"并发导入测试{i}有限公司", None, None, None, None] for i in range(50)])
    copies = [store.get_job(job.id, p) for _ in range(4)]
    barrier = threading.Barrier(len(copies))
    outcomes: list[str] = []

    def attempt(copy: Any) -> None:
        barrier.wait()
        try:
            runner.apply_job(copy, p, _actor(p), run_async=False)
            outcomes.append(copy.status)
        except UserError as exc:
            outcomes.append(exc.message)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count("done") == 1, outcomes
    assert len(outcomes) == 4 and all("不能执行" in o for o in outcomes if o != "done")
    assert _count(Customer) == 50


def test_another_user_cannot_see_or_apply(tmp_path: Any, make_user: Any, principal: Any, login_as: Any,
                                          admin_client: Any) -> None:
    make_user("wang")
    make_user("li")
    wang, li = principal("wang"), principal("li")
    job = _validated(tmp_path, wang, ROWS)
    assert store.get_job(job.id, li) is None
    assert store.jobs_of(li) == []
    with pytest.raises(UserError) as err:
        runner.apply_job(job, li, _actor(li), run_async=False)
    assert "不存在" in err.value.message
    # over HTTP: the admin's job is not found for li, and li cannot apply it
    page = admin_client.get("/admin/import/customer")
    r = admin_client.post("/admin/import/customer", data={"csrf_token": form_token(page.text)},
                          files={"file": ("客户.csv", _csv(ROWS, "utf-8"))}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    url = r.headers["location"]
    status = _wait(admin_client, url)
    assert status["status"] == "validated", status
    other = login_as("li")
    li_page = other.get("/admin/import/customer")
    assert other.get(url + "/status").status_code == 404
    assert other.get(url).status_code == 404
    assert other.get(url + "/errors.xlsx").status_code == 404
    r = other.post(url + "/apply", data={"csrf_token": form_token(li_page.text)},
                   headers={"accept": "application/json"})
    assert r.status_code == 404
    assert admin_client.get(url + "/status").json()["status"] == "validated"
    assert _count(Customer) == 0
    r = admin_client.post(url + "/apply", data={"csrf_token": form_token(page.text)},
                          headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json()["ok"]
    assert _wait(admin_client, url)["status"] == "done"
    assert _count(Customer) == 2


def _wait(client: Any, url: str) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(300):
        status = client.get(url + "/status").json()
        if not status["running"]:
            break
        time.sleep(0.1)
    return status


def _ago(seconds: float) -> dt.datetime:
    return db.utcnow() - dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("status, message", [("validating", "校验意外中断"), ("applying", "已全部撤销")])
def test_job_of_a_dead_process_is_failed(tmp_path: Any, make_user: Any, principal: Any, status: str,
                                         message: str) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    _rewrite(job.id, status=status, finished_at=None, heartbeat_at=_ago(30))
    alive = store.get_job(job.id, p)
    assert alive is not None and alive.status == status and alive.as_dict()["running"]
    _rewrite(job.id, status=status, finished_at=None, heartbeat_at=_ago(store.STALE_SECONDS + 60))
    dead = store.get_job(job.id, p)
    assert dead is not None and dead.status == "failed" and message in dead.message
    assert not dead.as_dict()["running"] and "重新上传" in dead.message
    assert [j.status for j in store.jobs_of(p)] == ["failed"]
    with pytest.raises(UserError):
        runner.apply_job(dead, p, _actor(p), run_async=False)
    assert _count(Customer) == 0
    again = _validated(tmp_path, p, ROWS)  # the same file uploaded again
    runner.apply_job(again, p, _actor(p), run_async=False)
    assert again.status == "done" and _count(Customer) == 2


def test_heartbeat_while_running(tmp_path: Any, make_user: Any, principal: Any, monkeypatch: Any) -> None:
    make_user("wang")
    p = principal("wang")
    monkeypatch.setattr(store, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(runner, "SAVE_EVERY_SECONDS", 0.05)
    since = db.utcnow()
    beats: set[dt.datetime] = set()
    real_check = CUSTOMERS.check

    def slow_check(session: Any, ctx: Any, rows: Any) -> None:
        for _ in range(5):
            time.sleep(0.1)
            with db.session_factory()() as s:
                for row in s.execute(select(ImportJob).where(ImportJob.status == "validating")).scalars():
                    if row.heartbeat_at > since:
                        beats.add(row.heartbeat_at)
        real_check(session, ctx, rows)

    monkeypatch.setattr(CUSTOMERS, "check", slow_check)
    _validated(tmp_path, p, ROWS)
    assert len(beats) >= 3  # the row is written during one long batch


def test_sweep_removes_old_jobs_and_their_files(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    keep = _validated(tmp_path, p, ROWS)
    assert _kept(job.id, chunks.ERRORS) and _kept(job.id, chunks.UPLOAD)
    _rewrite(job.id, finished_at=_ago(store.JOB_TTL_SECONDS + 10))
    with db.transaction() as s:
        assert store.sweep(s) == 1
    assert store.get_job(job.id, p) is None
    assert _kept(job.id, chunks.ERRORS) == b"" and _kept(job.id, chunks.UPLOAD) == b""
    assert store.get_job(keep.id, p) is not None and _kept(keep.id, chunks.UPLOAD)


def test_cleanup_is_a_scheduled_job(tmp_path: Any, make_user: Any, principal: Any) -> None:
    from crm_admin.scheduler import service

    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    _rewrite(job.id, finished_at=_ago(store.JOB_TTL_SECONDS + 10))
    result = service.run_job("import_cleanup")
    assert result.status == "success" and result.created == 1, result
    assert _row(job.id) is None and _count(ImportChunk) == 0


def test_upload_gone_before_apply(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    store.drop_upload(job.id)
    runner.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "failed" and "重新上传" in job.message
    assert _count(Customer) == 0
    row = _row(job.id)
    assert row is not None and row.status == "failed" and "重新上传" in row.message


@pytest.mark.parametrize("job_id", ["../../secret_key", "", "a/b", "x" * 200, "..", "abc"])
def test_odd_job_ids_are_not_found(make_user: Any, principal: Any, job_id: str) -> None:
    make_user("wang")
    assert store.get_job(job_id, principal("wang")) is None


def test_job_whose_process_stopped_right_after_the_commit_is_done(
        tmp_path: Any, make_user: Any, principal: Any) -> None:
    """The rows and the import's audit row were committed, the job's row still says "applying": the
    job reports what was imported instead of claiming that nothing was written."""
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    runner.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "done" and _count(Customer) == 2
    _rewrite(job.id, status="applying", finished_at=None, created=0,
             heartbeat_at=_ago(store.STALE_SECONDS + 60))
    seen = store.get_job(job.id, p)
    assert seen is not None and seen.status == "done" and seen.created == 2 and seen.rejected == 2
    assert "成功 2 行" in seen.message and "撤销" not in seen.message
    with pytest.raises(UserError):
        runner.apply_job(seen, p, _actor(p), run_async=False)
    assert _count(Customer) == 2
    with db.session_factory()() as s:
        summary = s.execute(select(AuditLog.changes).where(AuditLog.action == "import")).scalar_one()
    assert summary["job"] == job.id


def test_apply_of_a_job_swept_meanwhile_writes_nothing(tmp_path: Any, make_user: Any, principal: Any,
                                                         monkeypatch: Any) -> None:
    """The job's "done" commits with the imported rows: a job that is no longer "applying" when the
    apply ends (removed meanwhile) rolls the whole import back."""
    if db.get_engine().dialect.name == "sqlite":
        pytest.skip("SQLite has one writer: another connection cannot write while the import holds the lock")
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    real_apply = CUSTOMERS.apply

    def apply_then_lose_the_job(session: Any, ctx: Any, rows: Any) -> int:
        written = real_apply(session, ctx, rows)
        with db.session_factory()() as other, other.begin():  # another node's clean-up
            other.execute(update(ImportJob).where(ImportJob.id == job.id).values(status="failed"))
        return written

    monkeypatch.setattr(CUSTOMERS, "apply", apply_then_lose_the_job)
    runner.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "failed" and _count(Customer) == 0


def test_no_temporary_file_is_left(tmp_path: Any, make_user: Any, principal: Any) -> None:
    from crm_admin.settings import get_settings

    make_user("wang")
    p = principal("wang")
    work = Path(get_settings().data_dir) / "imports"
    before = set(work.iterdir()) if work.exists() else set()
    job = _validated(tmp_path, p, ROWS)
    runner.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "done"
    assert set(work.iterdir()) - before == set()
    assert os.path.isdir(work)
