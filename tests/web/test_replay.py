"""A request that meets a passing database error (a deadlock at commit, a cluster node leaving) is
run again: the user sees the normal answer and the change exists once, audit row included; when every
attempt fails, a friendly message and nothing written; a commit with an unknown outcome is not
repeated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from crm_admin import db, retry
from crm_admin.audit.models import AuditLog
from crm_admin.core.errors import BUSY_MESSAGE
from crm_admin.followups.models import FollowUp
from crm_admin.web.middleware import CatchErrorsMiddleware, ReplayMiddleware
from tests.conftest import csrf_token
from tests.core.faults import FAST, failing, fast_retries  # noqa: F401
from tests.customers.conftest import form_token, make_customer, principal  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_retries")  # every test here retries without waiting


def _written(since: int) -> tuple[int, int]:
    """Follow-ups, and audit rows written after the audit row ``since``."""
    with db.session_factory()() as s:
        rows = s.execute(select(func.count()).select_from(FollowUp)).scalar_one()
        audits = s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.id > since)).scalar_one()
    return rows, audits


def _last_audit() -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.max(AuditLog.id))).scalar() or 0)


@pytest.fixture
def wang(make_user: Any, make_customer: Any, login_as: Any) -> tuple[Any, Any]:  # noqa: F811
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    return login_as("wang"), customer


def _form_save(client: Any, customer: Any) -> Any:
    return client.post("/admin/follow-up/create", data={
        "customer": str(customer.id), "method": "phone", "content": "电话沟通",
        "contacted_at": (dt.date.today() - dt.timedelta(days=1)).isoformat() + "T10:00",
        "csrf_token": csrf_token(client)}, follow_redirects=False)


def _page_save(client: Any, customer: Any) -> Any:
    token = form_token(client.get(f"/admin/customer/360/{customer.id}").text)
    return client.post(f"/admin/customer/360/{customer.id}/follow-up",
                       data={"csrf_token": token, "method": "wechat", "content": "微信确认报价",
                             "next_follow_up_at": ""}, follow_redirects=False)


def test_form_save_deadlocked_at_commit_succeeds_once(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    client, customer = wang
    token_page = csrf_token(client)
    assert token_page
    since = _last_audit()
    with failing(monkeypatch, commits=1, code=1213) as faults:
        r = _form_save(client, customer)
    assert r.status_code == 302, r.text[:500]
    assert faults.raised == 1
    assert _written(since) == (1, 1)  # one follow-up, one audit row
    assert retry.counters()["retried@save:follow-up"] == 1


def test_custom_page_deadlocked_at_commit_is_replayed_once(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    client, customer = wang
    since = _last_audit()
    with failing(monkeypatch, commits=1, code=1213) as faults:
        r = _page_save(client, customer)
    assert r.status_code == 303 and "error=" not in r.headers["location"], r.headers.get("location")
    assert faults.raised == 1
    assert _written(since) == (1, 1)
    assert retry.counters()["retried@web"] == 1
    # the replayed request passed the CSRF check once and kept the session: the next one works too
    assert _page_save(client, customer).status_code == 303
    assert _written(since)[0] == 2


def test_form_save_that_stays_deadlocked_says_so_and_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                    wang: Any) -> None:
    client, customer = wang
    since = _last_audit()
    with failing(monkeypatch, commits=100, code=1213) as faults:
        r = _form_save(client, customer)
    assert r.status_code == 400 and BUSY_MESSAGE in r.text
    assert "Traceback" not in r.text and "Deadlock" not in r.text
    assert faults.raised == FAST.attempts  # the form save's own attempts; the request is not run again
    assert _written(since) == (0, 0)


def test_custom_page_that_stays_deadlocked_shows_a_friendly_page(monkeypatch: pytest.MonkeyPatch,
                                                                 wang: Any) -> None:
    client, customer = wang
    token = form_token(client.get(f"/admin/customer/360/{customer.id}").text)
    since = _last_audit()
    with failing(monkeypatch, commits=100, code=1213) as faults:
        r = client.post(f"/admin/customer/360/{customer.id}/follow-up",
                        data={"csrf_token": token, "method": "wechat", "content": "微信确认报价",
                              "next_follow_up_at": ""}, follow_redirects=False)
    assert r.status_code == 503 and "系统繁忙" in r.text
    assert "Traceback" not in r.text and "Deadlock" not in r.text
    assert faults.raised == FAST.attempts
    assert _written(since) == (0, 0)
    assert retry.counters()["exhausted@web"] == 1


def test_commit_with_unknown_outcome_is_not_replayed(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    client, customer = wang
    token = form_token(client.get(f"/admin/customer/360/{customer.id}").text)
    with failing(monkeypatch, commits=1, code=2013) as faults:
        r = client.post(f"/admin/customer/360/{customer.id}/follow-up",
                        data={"csrf_token": token, "method": "wechat", "content": "微信确认报价",
                              "next_follow_up_at": ""}, follow_redirects=False)
    assert faults.raised == 1
    assert r.status_code == 503 and "无法确定" in r.text
    assert retry.counters()["outcome_unknown@web"] == 1


def test_page_read_on_a_node_that_is_not_ready_is_replayed(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    client, customer = wang
    with failing(monkeypatch, statements=1, code=1047) as faults:
        r = client.get(f"/admin/customer/360/{customer.id}")
    assert faults.raised == 1
    assert r.status_code == 200 and "甲客户" in r.text


def test_readiness_reports_what_was_run_again(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    client, customer = wang
    with failing(monkeypatch, commits=1, code=1213):
        _page_save(client, customer)
    counts = client.get("/readyz").json()["db_retries"]
    assert counts["retried"] == 1 and counts["retried:1213"] == 1


# ----- the middleware on its own: the session as it came, the same body each time --------------

def _app(fail_times: int) -> Starlette:
    calls: list[bytes] = []

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.body()
        calls.append(body)
        request.session["shown"] = request.session.pop("flash", None)
        request.session.setdefault("log", []).append(len(calls))
        if len(calls) <= fail_times:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("COMMIT", {}, Exception(1213, "Deadlock found"))
        return JSONResponse({"calls": len(calls), "bodies": [b.decode() for b in calls],
                             "session": dict(request.session)})

    async def seed(request: Request) -> JSONResponse:
        request.session["flash"] = "已保存"
        return JSONResponse({})

    return Starlette(routes=[Route("/go", endpoint, methods=["POST"]), Route("/seed", seed)],
                     middleware=[Middleware(CatchErrorsMiddleware),
                                 Middleware(SessionMiddleware, secret_key="k" * 32),
                                 Middleware(ReplayMiddleware)])


def test_each_attempt_gets_the_same_body_and_the_session_as_it_came() -> None:
    with TestClient(_app(fail_times=2)) as c:
        c.get("/seed")
        r = c.post("/go", content=b"a=1&b=2", headers={"content-type": "application/x-www-form-urlencoded"})
    data = r.json()
    assert data["calls"] == 3 and data["bodies"] == ["a=1&b=2"] * 3
    # the message shown once was taken by the attempt that succeeded, not lost to the failed ones
    assert data["session"] == {"shown": "已保存", "log": [3]}


def test_after_the_last_attempt_the_error_page_is_friendly() -> None:
    with TestClient(_app(fail_times=10)) as c:
        r = c.post("/go", content=b"x", headers={"accept": "text/html"})
    assert r.status_code == 503 and "系统繁忙" in r.text and "Deadlock" not in r.text


# ----- editing a customer (optimistic locking) -------------------------------------------------

def _edit(client: Any, customer: Any, remark: str, version: str = "1") -> Any:
    page = client.get(f"/admin/customer/edit/{customer.id}").text
    return client.post(f"/admin/customer/edit/{customer.id}",
                       data={"name": "甲客户", "status": "active", "version": version, "remark": remark,
                             "csrf_token": form_token(page)}, follow_redirects=False)


def test_customer_edit_deadlocked_at_commit_is_saved_once(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    from crm_admin.customers.models import Customer

    client, customer = wang
    since = _last_audit()
    with failing(monkeypatch, commits=1, code=1213) as faults:
        r = _edit(client, customer, "重试后保存")
    assert r.status_code == 302, r.text[:800]
    assert faults.raised == 1
    with db.session_factory()() as s:
        row = s.get(Customer, customer.id)
        assert row is not None and (row.remark, row.version) == ("重试后保存", 2)  # one update, not two
        audits = s.execute(select(AuditLog.action, AuditLog.resource).where(AuditLog.id > since)).all()
    assert audits == [("update", "customer")]


def test_a_retried_save_still_refuses_a_concurrent_change(monkeypatch: pytest.MonkeyPatch, wang: Any,
                                                          make_user: Any) -> None:
    """Each attempt checks the submitted version against the row as it is then: a change committed by
    someone else between the attempts is not overwritten."""
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.customers.models import Customer

    client, customer = wang
    page = client.get(f"/admin/customer/edit/{customer.id}").text

    class SomeoneSavesMeanwhile(retry.Policy):
        def pause(self, retry_number: int) -> float:
            # between the failed attempt (rolled back) and the next one, another user saves
            with acting_as(SYSTEM), db.transaction() as s:
                row = s.get(Customer, customer.id)
                assert row is not None
                row.remark = "别人的修改"
            return 0.0

    retry.set_policy(SomeoneSavesMeanwhile(attempts=3))
    with failing(monkeypatch, commits=1, code=1213) as faults:
        r = client.post(f"/admin/customer/edit/{customer.id}",
                        data={"name": "甲客户", "status": "active", "version": "1", "remark": "我的修改",
                              "csrf_token": form_token(page)}, follow_redirects=False)
    assert faults.raised == 1
    assert r.status_code == 400 and "已被他人修改" in r.text
    with db.session_factory()() as s:
        row = s.get(Customer, customer.id)
        assert row is not None and row.remark == "别人的修改"


def test_form_save_whose_commit_outcome_is_unknown_says_so(monkeypatch: pytest.MonkeyPatch, wang: Any) -> None:
    from crm_admin.core.errors import OUTCOME_UNKNOWN_MESSAGE

    client, customer = wang
    with failing(monkeypatch, commits=1, code=2013) as faults:
        r = _edit(client, customer, "提交时断开")
    assert faults.raised == 1  # not run again: the first commit may have been applied
    assert r.status_code == 400 and OUTCOME_UNKNOWN_MESSAGE in r.text


def test_sign_in_deadlocked_at_commit_signs_in_once(monkeypatch: pytest.MonkeyPatch, make_user: Any,
                                                    make_client: Any) -> None:
    """The address's attempt is counted (its own transaction) before the sign-in's transaction fails
    at commit; the sign-in runs again, the attempt is not counted again."""
    from crm_admin.accounts import auth
    from crm_admin.accounts.models import SysSession
    from tests.conftest import PASSWORD, login

    make_user("li")
    client = make_client()
    since = _last_audit()
    with failing(monkeypatch) as faults:
        real = auth.check_login

        def check_login(*args: Any, **kwargs: Any) -> Any:
            faults.commits = 1 if faults.raised == 0 else 0  # the sign-in's own commit fails once
            return real(*args, **kwargs)

        monkeypatch.setattr(auth, "check_login", check_login)
        r = login(client, "li", PASSWORD)
    assert r.status_code == 302, r.text[:500]
    assert faults.raised == 1 and retry.counters()["retried@login"] == 1
    with db.session_factory()() as s:
        actions = s.execute(select(AuditLog.action).where(AuditLog.id > since,
                                                          AuditLog.resource != "login_throttle")).scalars().all()
        sessions = s.execute(select(func.count()).select_from(SysSession)).scalar_one()
    assert actions == ["login"] and sessions == 1
    assert client.get("/admin/customer/list").status_code == 200
