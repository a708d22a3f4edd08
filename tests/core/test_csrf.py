"""CSRF: every state-changing request under /admin carries the session's token, or changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from crm_admin import db
from crm_admin.core.csrf import REFUSAL_MESSAGE, CsrfMiddleware, ensure_token
from tests.conftest import ADMIN_PASSWORD, csrf_token


def dept_count() -> int:
    from crm_admin.accounts.models import SysDept

    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(SysDept)).scalar_one())


def denied_rows() -> list[Any]:
    from crm_admin.audit.models import AuditLog

    with db.session_factory()() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == "permission_denied")).scalars())


def make_dept(name: str) -> int:
    from crm_admin.accounts.models import SysDept
    from crm_admin.core.context import SYSTEM, acting_as

    with acting_as(SYSTEM), db.transaction() as s:
        dept = SysDept(name=name, sort=1)
        s.add(dept)
        s.flush()
        return int(dept.id)


# ----- the admin site ------------------------------------------------------------------------


def test_cross_site_form_post_without_token_is_refused(admin_client: Any) -> None:
    before = dept_count()
    denied_before = len(denied_rows())
    r = admin_client.post("/admin/sys-dept/create", data={"name": "外部部门", "sort": "1", "save": "保存"})
    assert r.status_code == 403
    assert REFUSAL_MESSAGE in r.text
    assert '<html lang="zh-CN">' in r.text
    assert dept_count() == before
    rows = denied_rows()
    assert len(rows) == denied_before + 1  # audited once (not again by the 403 auditor)
    assert rows[-1].username == "admin" and rows[-1].success is False
    assert rows[-1].resource == "csrf"
    assert "/admin/sys-dept/create" in (rows[-1].detail or "")


def test_forged_token_is_refused(admin_client: Any) -> None:
    before = dept_count()
    real = csrf_token(admin_client)
    altered = real[:-1] + ("A" if real[-1] != "A" else "B")  # one character off (never the real token)
    for forged in ("x" * 43, "", altered):
        r = admin_client.post(
            "/admin/sys-dept/create",
            data={"name": "伪造部门", "sort": "1", "save": "保存", "csrf_token": forged},
        )
        assert r.status_code == 403, forged
        r = admin_client.post(
            "/admin/sys-dept/create", data={"name": "伪造部门", "sort": "1", "save": "保存"},
            headers={"X-CSRF-Token": forged},
        )
        assert r.status_code == 403, forged
    assert dept_count() == before


def test_token_of_another_session_is_refused(admin_client: Any, make_client: Any) -> None:
    other = make_client()
    other.get("/admin/login")
    their_token = csrf_token(other) or re.search(
        r'name="csrf_token" value="([^"]*)"', other.get("/admin/login").text).group(1)  # type: ignore[union-attr]
    r = admin_client.post(
        "/admin/sys-dept/create",
        data={"name": "别人的令牌", "sort": "1", "save": "保存", "csrf_token": their_token},
    )
    assert r.status_code == 403


def test_valid_form_token_is_accepted(admin_client: Any) -> None:
    before = dept_count()
    r = admin_client.post(
        "/admin/sys-dept/create",
        data={"name": "销售一部", "sort": "1", "save": "保存", "csrf_token": csrf_token(admin_client)},
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    assert dept_count() == before + 1


def test_valid_header_token_is_accepted_for_ajax_delete(admin_client: Any) -> None:
    pk = make_dept("待删除部门")
    before = dept_count()
    r = admin_client.delete(f"/admin/sys-dept/delete?pks={pk}")
    assert r.status_code == 403
    assert dept_count() == before
    r = admin_client.delete(f"/admin/sys-dept/delete?pks={pk}", headers={"X-CSRF-Token": csrf_token(admin_client)})
    assert r.status_code == 200, r.text
    assert dept_count() == before - 1


def test_multipart_form_with_token_works(admin_client: Any) -> None:
    """SQLAdmin's create/edit forms are multipart: the token is read from the buffered body."""
    token = csrf_token(admin_client)
    files = {"attachment": ("客户.csv", "名称,电话\n甲公司,010-1\n".encode() * 2000, "text/csv")}
    r = admin_client.post(
        "/admin/sys-dept/create",
        data={"name": "多部件部门", "sort": "2", "save": "保存", "csrf_token": token},
        files=files, follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    r = admin_client.post(
        "/admin/sys-dept/create", data={"name": "无令牌多部件", "sort": "2", "save": "保存"},
        files=files,
    )
    assert r.status_code == 403


def test_json_body_needs_the_header(admin_client: Any) -> None:
    r = admin_client.post("/admin/sys-dept/create", json={"name": "x", "csrf_token": csrf_token(admin_client)},
                          headers={"Accept": "application/json"})
    assert r.status_code == 403
    assert r.json()["detail"] == REFUSAL_MESSAGE


def test_login_without_token_is_refused(client: Any) -> None:
    client.get("/admin/login")
    denied_before = len(denied_rows())
    r = client.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    assert len(denied_rows()) == denied_before + 1
    assert client.get("/admin/sys-dept/list", follow_redirects=False).status_code == 302  # not signed in


def test_login_form_carries_a_token_and_login_rotates_it(client: Any) -> None:
    page = client.get("/admin/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert f'<meta name="csrf-token" content="{token}">' in page
    r = client.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 302
    new = csrf_token(client)
    assert new and new != token  # a fresh token for the signed-in session


def test_logout_get_does_not_log_out(admin_client: Any) -> None:
    r = admin_client.get("/admin/logout", follow_redirects=False)
    assert r.status_code == 200
    assert "确定要退出登录吗?" in r.text
    assert 'method="POST"' in r.text
    assert admin_client.get("/admin/sys-dept/list", follow_redirects=False).status_code == 200


def test_logout_post_needs_token(admin_client: Any) -> None:
    r = admin_client.post("/admin/logout", follow_redirects=False)
    assert r.status_code == 403
    assert admin_client.get("/admin/sys-dept/list", follow_redirects=False).status_code == 200
    r = admin_client.post("/admin/logout", data={"csrf_token": csrf_token(admin_client)}, follow_redirects=False)
    assert r.status_code == 302
    assert admin_client.get("/admin/sys-dept/list", follow_redirects=False).status_code == 302


def test_layout_has_meta_token_js_and_post_logout(admin_client: Any) -> None:
    html = admin_client.get("/admin/sys-dept/list").text
    token = csrf_token(admin_client)
    assert f'<meta name="csrf-token" content="{token}">' in html
    assert "/static/js/crm.js" in html
    assert re.search(r'<form method="post" action="[^"]*/admin/logout"', html)
    html = admin_client.get("/admin/sys-dept/create").text
    assert f'name="csrf_token" value="{token}"' in html


def test_static_js_is_served(client: Any) -> None:
    r = client.get("/static/js/crm.js")
    assert r.status_code == 200
    assert "X-CSRF-Token" in r.text
    assert client.get("/static/js/sqladmin-main.js").status_code == 200
    assert client.get("/static/img/favicon.svg").status_code == 200


def test_action_routes_are_post_only(app: Any) -> None:
    from starlette.routing import Route as StarletteRoute

    routes = [r for r in app.state.admin.admin.router.routes if isinstance(r, StarletteRoute)]
    logout = next(r for r in routes if r.name == "logout")
    assert logout.methods == {"GET", "HEAD", "POST"}
    for route in routes:
        if route.name and route.name.startswith("action-"):
            assert route.methods == {"POST"}, route.name


def test_builtin_get_action_route_refuses(app: Any, admin_client: Any) -> None:
    """A GET action (as SQLAdmin registers them) answers 405 once the routes are hardened."""
    from crm_admin.core.csrf import harden_admin_routes

    admin = app.state.admin
    called: list[str] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        called.append(request.method)
        return PlainTextResponse("done")

    route = StarletteRouteFactory.make("/sys-dept/action/test-probe", endpoint, "action-sys-dept-test-probe")
    admin.admin.router.routes.append(route)
    try:
        harden_admin_routes(admin)
        assert admin_client.get("/admin/sys-dept/action/test-probe?pks=1").status_code == 405
        r = admin_client.post("/admin/sys-dept/action/test-probe?pks=1")
        assert r.status_code == 403  # no token
        r = admin_client.post("/admin/sys-dept/action/test-probe?pks=1", data={"csrf_token": csrf_token(admin_client)})
        assert r.status_code == 200
        assert called == ["POST"]
    finally:
        admin.admin.router.routes.remove(route)


class StarletteRouteFactory:
    @staticmethod
    def make(path: str, endpoint: Any, name: str) -> Any:
        return Route(path, endpoint=endpoint, methods=["GET"], name=name)


# ----- the middleware on its own ---------------------------------------------------------


def _probe_app() -> Starlette:
    async def token(request: Request) -> PlainTextResponse:
        return PlainTextResponse(ensure_token(request.session))

    async def echo(request: Request) -> JSONResponse:
        form = await request.form()
        upload = form.get("file")
        size = len(await upload.read()) if upload is not None and not isinstance(upload, str) else 0
        return JSONResponse({"name": form.get("name"), "size": size})

    return Starlette(
        routes=[Route("/token", token), Route("/echo", echo, methods=["POST", "PUT", "PATCH", "DELETE"])],
        middleware=[Middleware(SessionMiddleware, secret_key="k" * 32), Middleware(CsrfMiddleware)],
    )


@pytest.fixture
def probe() -> Any:
    with TestClient(_probe_app()) as c:
        yield c


def test_middleware_replays_a_large_multipart_body_unchanged(probe: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("crm_admin.core.csrf._audit_refusal", lambda request, reason: None)
    token = probe.get("/token").text
    payload = b"0123456789" * 300_000  # 3 MB, several ASGI messages
    r = probe.post("/echo", data={"csrf_token": token, "name": "甲"}, files={"file": ("a.xlsx", payload)})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "甲"
    assert r.json()["size"] == len(payload)
    r = probe.post("/echo", data={"csrf_token": "nope", "name": "甲"}, files={"file": ("a.xlsx", payload)})
    assert r.status_code == 403


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_middleware_checks_every_unsafe_method(probe: Any, method: str, monkeypatch: Any) -> None:
    monkeypatch.setattr("crm_admin.core.csrf._audit_refusal", lambda request, reason: None)
    token = probe.get("/token").text
    assert probe.request(method, "/echo", content=b"name=x", headers={
        "content-type": "application/x-www-form-urlencoded"}).status_code == 403
    r = probe.request(method, "/echo", content=f"name=x&csrf_token={token}".encode(), headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert probe.request(method, "/echo", headers={"X-CSRF-Token": token}).status_code == 200


def test_anonymous_refusals_are_audited_at_a_bounded_rate(probe: Any, monkeypatch: Any) -> None:
    from crm_admin.core import csrf

    audited: list[str] = []
    monkeypatch.setattr(csrf, "_write_refusal_audit", lambda request, reason: audited.append(reason))
    csrf._anonymous_audits.clear()
    for _ in range(csrf.ANONYMOUS_AUDITS_PER_MINUTE + 15):
        assert probe.post("/echo", data={"name": "x"}).status_code == 403
    assert len(audited) == csrf.ANONYMOUS_AUDITS_PER_MINUTE


def test_no_session_token_means_refusal(probe: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("crm_admin.core.csrf._audit_refusal", lambda request, reason: None)
    r = probe.post("/echo", data={"csrf_token": ""}, headers={"X-CSRF-Token": ""})
    assert r.status_code == 403


def test_multipart_import_upload_with_token(admin_client: Any) -> None:
    """The customers' import page: a multipart upload carrying the token is accepted, one without is not."""
    import time

    csv = "客户名称*,联系电话\n甲乙丙科技有限公司,010-88886666\n".encode("utf-8-sig")
    files = {"file": ("客户.csv", csv, "text/csv")}
    r = admin_client.post("/admin/import/customer", files=files, follow_redirects=False)
    assert r.status_code == 403
    r = admin_client.post("/admin/import/customer", data={"csrf_token": csrf_token(admin_client)}, files=files,
                          follow_redirects=False)
    assert r.status_code == 303, r.text[-2000:]
    job_url = r.headers["location"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # let the background validation finish before the clean-up
        if not admin_client.get(job_url + "/status").json()["running"]:
            break
        time.sleep(0.1)


def test_refusal_page_follows_the_language_cookie(admin_client: Any) -> None:
    admin_client.get("/admin/sys-dept/list?lang=en")
    r = admin_client.post("/admin/sys-dept/create", data={"name": "x", "sort": "1"})
    assert r.status_code == 403
    assert "The page has expired" in r.text
    assert '<html lang="en">' in r.text
