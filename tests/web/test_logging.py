"""One access-log line per request (request id, user, method, path, status, duration); errors carry the
request id in the log and on the page, never a stack trace for the user."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from crm_admin.web.middleware import RequestMiddleware

LINE = re.compile(r"^(?P<rid>[0-9a-f]{12}) (?P<user>\S+) (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) "
                  r"(?P<ms>\d+\.\d)ms$")


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    out = []
    for rec in caplog.records:
        if rec.name == "crm_admin.access":
            m = LINE.match(rec.getMessage())
            assert m, rec.getMessage()
            out.append(m)
    return out


def test_one_line_per_request_with_user_and_duration(admin_client: Any, client: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crm_admin.access")
    r = admin_client.get("/admin/customer/list")
    assert r.status_code == 200
    lines = _access_lines(caplog)
    assert len(lines) == 1
    line = lines[0]
    assert (line["user"], line["method"], line["path"], line["status"]) == (
        "admin", "GET", "/admin/customer/list", "200")
    assert line["rid"] == r.headers["x-request-id"]

    caplog.clear()
    client.get("/admin/customer/list", follow_redirects=False)
    line = _access_lines(caplog)[0]
    assert (line["user"], line["status"]) == ("-", "302")


def _boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("secret internals: password=hunter2")


def _db_gone(request: Request) -> PlainTextResponse:
    raise OperationalError("SELECT 1", {}, Exception("Can't connect to MySQL server"))


@pytest.fixture
def tiny() -> Any:
    # Placed as in create_app(): app.add_middleware(RequestMiddleware).
    app = Starlette(routes=[Route("/boom", _boom), Route("/db", _db_gone)],
                    middleware=[Middleware(RequestMiddleware)])
    return TestClient(app, raise_server_exceptions=False)


def test_unexpected_error_is_a_chinese_page_with_the_request_id(tiny: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = tiny.get("/boom")
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert "系统出错了" in r.text and rid in r.text
    assert "hunter2" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    errors = [rec for rec in caplog.records if rec.name == "crm_admin.error"]
    assert errors and rid in errors[0].getMessage()
    assert errors[0].exc_info is not None  # the stack trace goes to the log, for the administrator
    assert [m["status"] for m in _access_lines(caplog)] == ["500"]

    r = tiny.get("/boom", headers={"accept": "application/json"})
    assert r.status_code == 500 and r.json()["request_id"] == r.headers["x-request-id"]


def test_database_error_is_503_and_logged_with_the_request_id(tiny: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = tiny.get("/db")
    assert r.status_code == 503 and "系统暂时不可用" in r.text
    rid = r.headers["x-request-id"]
    assert rid in r.text
    assert any(rec.name == "crm_admin.error" and rid in rec.getMessage() for rec in caplog.records)


def test_request_ids_differ(client: Any) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_error_pages_follow_the_chosen_language(tiny: Any) -> None:
    from crm_admin.core import i18n

    i18n.install()
    tiny.cookies.set("crm_lang", "en")
    r = tiny.get("/db")
    assert r.status_code == 503 and "System temporarily unavailable" in r.text
    assert '<html lang="en">' in r.text and r.headers["x-request-id"] in r.text
    r = tiny.get("/boom")
    assert r.status_code == 500 and "Something went wrong" in r.text
    tiny.cookies.set("crm_lang", "zh")
    assert "系统出错了" in tiny.get("/boom").text


def test_a_refused_form_save_is_one_info_line_not_a_traceback(admin_client: Any, caplog: Any) -> None:
    import logging

    from tests.conftest import csrf_token

    with caplog.at_level(logging.INFO, logger="sqladmin.application"):
        response = admin_client.post("/admin/customer/create", data={
            "csrf_token": csrf_token(admin_client), "name": "日志测试有限公司", "status": "potential",
            "credit_code": "1234"}, follow_redirects=False)
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == "sqladmin.application"]
    assert records and all(r.levelno == logging.INFO and not r.exc_info for r in records)
    assert "input refused" in records[0].getMessage()
