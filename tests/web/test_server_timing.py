"""The ``Server-Timing`` header (``CRM_SERVER_TIMING``): each answer's time in the database and its
statements, which the benchmark reads to report every page's SQL share."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from crm_admin.web.middleware import RequestMiddleware
from tests.conftest import ADMIN_PASSWORD, login, statements_sent

TIMING = re.compile(r'^db;dur=([\d.]+);desc="SQL (\d+)", app;dur=([\d.]+)$')


def _timed(app: Any, path: str) -> tuple[Any, list[str], Any]:
    """``path`` opened by the administrator through the app with timing on (as the setting turns it
    on, around the whole app): the answer, the statements sent meanwhile, the client."""
    c = TestClient(RequestMiddleware(app, timing=True), base_url="http://testserver")
    assert login(c, "admin", ADMIN_PASSWORD).status_code == 302
    c.get(path)  # warm
    with statements_sent(any_engine=True) as sent:
        page = c.get(path)
    assert page.status_code == 200
    return page, sent, c


def test_each_answer_reports_its_database_time_and_statements(app: Any) -> None:
    page, sent, c = _timed(app, "/admin/customer/list")
    found = TIMING.match(page.headers["server-timing"])
    assert found, page.headers["server-timing"]
    sql_ms, statements, whole_ms = float(found.group(1)), int(found.group(2)), float(found.group(3))
    # every statement the page sent (in the worker threads too), and no one else's
    assert statements == len(sent) > 0
    assert 0 < sql_ms <= whole_ms
    # a request that sends nothing reports nothing
    found = TIMING.match(c.get("/healthz").headers.get("server-timing", ""))
    assert found and int(found.group(2)) == 0 and float(found.group(1)) == 0


def test_statements_in_the_dashboards_own_threads_are_counted(app: Any) -> None:
    """The dashboard counts its parts in threads of its own: their statements are the request's too."""
    page, sent, _c = _timed(app, "/admin/")
    found = TIMING.match(page.headers["server-timing"])
    assert found and int(found.group(2)) == len(sent) > 2


def test_off_unless_asked_for(admin_client: Any) -> None:
    """Timings tell a client something about the server: none by default."""
    assert "server-timing" not in admin_client.get("/admin/customer/list").headers
