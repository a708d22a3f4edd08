"""Import jobs shared by the server's worker processes: state in files, applied once, owner only, stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.core import importing
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.customers.importing import SPEC as CUSTOMERS
from crm_admin.customers.imports import SPECS
from crm_admin.customers.models import Customer
from tests.customers.conftest import form_token
from tests.imports.test_imports import _csv, _xlsx

ROOT = Path(__file__).resolve().parents[2]

# A second server process: reads the job from the shared data directory, shows it, tries to apply it.
OTHER_PROCESS = r"""
import json, logging, sys
from sqlalchemy import select
import crm_admin.models  # noqa: F401  (every table, as in the server)
from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.core import importing
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.principal import load_principal
from crm_admin.customers.importing import SPEC

job_id, username, go = sys.argv[1], sys.argv[2], sys.argv[3]
with db.session_factory()() as session:
    user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
    principal = load_principal(session.connection(), user)
job = importing.get_job(job_id, principal, lambda key: SPEC if key == SPEC.key else None)
logging.basicConfig()
out = {"seen": job.as_dict() if job else None, "error_file": bool(job and job.error_path)}
print(json.dumps(out), flush=True)
sys.stdin.readline()  # both processes apply at the same moment
if job is not None and go == "apply":
    try:
        importing.apply_job(job, principal, Actor(principal.id, principal.username), run_async=False)
        out["applied"] = job.as_dict()
    except UserError as exc:
        out["refused"] = exc.message
print(json.dumps(out), flush=True)
"""


def _actor(p: Any) -> Actor:
    return Actor(p.id, p.username)


def _validated(tmp_path: Any, p: Any, rows: list[list[Any]]) -> importing.ImportJob:
    path = tmp_path / "upload.bin"
    path.write_bytes(_xlsx(rows))
    job = importing.start_job(CUSTOMERS, p, _actor(p), path=str(path), filename="客户.xlsx", run_async=False)
    assert job.status == "validated", job.message
    return job


def _count(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


ROWS = [["华东精密机械有限公司", None, "制造业", "B", None], ["华东精密机械", None, None, None, None],
        ["西部云数据有限公司", None, "信息技术", "A", "13900000002"], ["坏行", None, "造火箭", None, None]]


def test_job_state_is_a_file_any_process_can_read(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    state = json.loads((Path(os.environ["CRM_DATA_DIR"]) / "imports" / "jobs" / f"{job.id}.json")
                       .read_text(encoding="utf-8"))
    assert state["spec"] == "customer" and state["owner_id"] == p.id and state["status"] == "validated"
    assert state["actor"]["username"] == "wang" and state["path"] == job.path and state["kind"] == "xlsx"
    assert (state["valid"], state["rejected"], state["processed"]) == (2, 2, 4)
    assert state["heartbeat"] and state["finished"] and state["error_path"]
    # a fresh object from the file alone (what another worker sees)
    seen = importing.get_job(job.id, p, SPECS.get)
    assert seen is not None and seen is not job
    assert seen.as_dict() == {**job.as_dict(), "seconds": seen.as_dict()["seconds"]}
    assert [j.id for j in importing.jobs_of(p, SPECS.get, "customer")] == [job.id]
    assert importing.jobs_of(p, SPECS.get, "product") == []
    importing.apply_job(seen, p, _actor(p), run_async=False)
    assert seen.status == "done" and seen.created == 2
    again = importing.get_job(job.id, p, SPECS.get)
    assert again is not None and again.status == "done" and again.created == 2
    assert not os.path.exists(job.path)  # the upload goes once applied
    assert _count(Customer) == 2


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
            assert seen["seen"]["status"] == "validated" and seen["seen"]["valid"] == 2 and seen["error_file"]
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
    here = importing.get_job(job.id, p, SPECS.get)
    assert here is not None and here.status == "done" and here.created == 2


def test_concurrent_apply_attempts_apply_once(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, [[f"并发导入测试{i}有限公司", None, None, None, None] for i in range(50)])
    copies = [importing.get_job(job.id, p, SPECS.get) for _ in range(4)]
    barrier = threading.Barrier(len(copies))
    outcomes: list[str] = []

    def attempt(copy: Any) -> None:
        barrier.wait()
        try:
            importing.apply_job(copy, p, _actor(p), run_async=False)
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
    assert importing.get_job(job.id, li, SPECS.get) is None
    assert importing.jobs_of(li, SPECS.get) == []
    with pytest.raises(UserError) as err:
        importing.apply_job(job, li, _actor(li), run_async=False)
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


def _rewrite(job_id: str, **changes: Any) -> None:
    path = Path(os.environ["CRM_DATA_DIR"]) / "imports" / "jobs" / f"{job_id}.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    state.update(changes)
    path.write_text(json.dumps(state), encoding="utf-8")


@pytest.mark.parametrize("status, message", [("validating", "校验意外中断"), ("applying", "已全部撤销")])
def test_job_of_a_dead_process_is_failed(tmp_path: Any, make_user: Any, principal: Any, status: str,
                                         message: str) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    _rewrite(job.id, status=status, finished=None, heartbeat=time.time() - 30)
    alive = importing.get_job(job.id, p, SPECS.get)
    assert alive is not None and alive.status == status and alive.as_dict()["running"]
    _rewrite(job.id, status=status, finished=None, heartbeat=time.time() - importing.STALE_SECONDS - 60)
    dead = importing.get_job(job.id, p, SPECS.get)
    assert dead is not None and dead.status == "failed" and message in dead.message
    assert not dead.as_dict()["running"] and "重新上传" in dead.message
    with pytest.raises(UserError):
        importing.apply_job(dead, p, _actor(p), run_async=False)
    assert _count(Customer) == 0
    again = _validated(tmp_path, p, ROWS)  # the same file uploaded again
    importing.apply_job(again, p, _actor(p), run_async=False)
    assert again.status == "done" and _count(Customer) == 2


def test_heartbeat_while_running(tmp_path: Any, make_user: Any, principal: Any, monkeypatch: Any) -> None:
    make_user("wang")
    p = principal("wang")
    monkeypatch.setattr(importing, "HEARTBEAT_SECONDS", 0.05)
    since = time.time()
    beats: set[float] = set()
    real_check = CUSTOMERS.check

    def slow_check(session: Any, ctx: Any, rows: Any) -> None:
        for _ in range(5):
            time.sleep(0.1)
            for file in importing._jobs_dir().glob("*.json"):
                state = importing._read_state(file.stem)
                if state and state["status"] == "validating" and state["heartbeat"] > since:
                    beats.add(state["heartbeat"])
        real_check(session, ctx, rows)

    monkeypatch.setattr(CUSTOMERS, "check", slow_check)
    _validated(tmp_path, p, ROWS)
    assert len(beats) >= 3  # the file is rewritten during one long batch


def test_sweep_removes_old_jobs_and_their_files(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    keep = _validated(tmp_path, p, ROWS)
    assert job.error_path and os.path.exists(job.error_path) and os.path.exists(job.path)
    _rewrite(job.id, finished=time.time() - importing.JOB_TTL_SECONDS - 10)
    importing._sweep()
    assert importing.get_job(job.id, p, SPECS.get) is None
    assert not os.path.exists(job.error_path) and not os.path.exists(job.path)
    assert importing.get_job(keep.id, p, SPECS.get) is not None


def test_upload_gone_before_apply(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    os.unlink(job.path)
    importing.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "failed" and "重新上传" in job.message
    assert _count(Customer) == 0


@pytest.mark.parametrize("job_id", ["../../secret_key", "", "a/b", "x" * 200, "..", "abc"])
def test_odd_job_ids_are_not_found(make_user: Any, principal: Any, job_id: str) -> None:
    make_user("wang")
    assert importing.get_job(job_id, principal("wang"), SPECS.get) is None


def test_job_whose_process_stopped_right_after_the_commit_is_done(
        tmp_path: Any, make_user: Any, principal: Any) -> None:
    """The rows and the import's audit row were committed, the job file still says "applying": the job
    reports what was imported instead of claiming that nothing was written."""
    make_user("wang")
    p = principal("wang")
    job = _validated(tmp_path, p, ROWS)
    importing.apply_job(job, p, _actor(p), run_async=False)
    assert job.status == "done" and _count(Customer) == 2
    _rewrite(job.id, status="applying", finished=None, created=0,
             heartbeat=time.time() - importing.STALE_SECONDS - 60)
    seen = importing.get_job(job.id, p, SPECS.get)
    assert seen is not None and seen.status == "done" and seen.created == 2 and seen.rejected == 2
    assert "成功 2 行" in seen.message and "撤销" not in seen.message
    with pytest.raises(UserError):
        importing.apply_job(seen, p, _actor(p), run_async=False)
    assert _count(Customer) == 2
    with db.session_factory()() as s:
        summary = s.execute(select(AuditLog.changes).where(AuditLog.action == "import")).scalar_one()
    assert summary["job"] == job.id
