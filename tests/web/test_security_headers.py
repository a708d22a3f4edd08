"""Security headers on every kind of response, HSTS only under HTTPS, and a strict CSP.

Every response the app sends (pages, the login page, static files, 404s, 403s, the CSRF refusal,
redirects, the friendly 500/503 pages, JSON) carries the same headers; customer data is never
left in a cache, static assets may be. What the policy allows is checked here; that no page
breaks it is checked in the browser (tests/browser/test_csp.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from crm_admin.settings import Settings

PACKAGE = Path(__file__).resolve().parents[2] / "crm_admin"

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"directive given twice: {name}"
        parsed[name] = sources
    return parsed


def assert_protected(response: Any) -> None:
    headers = response.headers
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, (name, response.request.url)
    csp = directives(headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    policy = headers["permissions-policy"]
    for feature in ("camera", "microphone", "geolocation"):
        assert f"{feature}=()" in policy
    assert "strict-transport-security" not in headers  # plain HTTP in these tests
    # one of each, never repeated by a response that set its own
    for name in (*EXPECTED, "content-security-policy", "cache-control"):
        assert len(headers.get_list(name)) <= 1, name


@pytest.fixture
def manager_client(make_user: Any, login_as: Callable[..., Any]) -> Any:
    make_user("hdr_manager")
    return login_as("hdr_manager")


def test_html_pages_for_signed_in_users_are_protected_and_never_cached(admin_client: Any) -> None:
    for url in ("/admin/", "/admin/customer/list", "/admin/care/workbench", "/admin/churn/analysis"):
        r = admin_client.get(url)
        assert r.status_code == 200, url
        assert_protected(r)
        assert r.headers["cache-control"] == "no-store", url


def test_login_page(client: Any) -> None:
    r = client.get("/admin/login")
    assert r.status_code == 200
    assert_protected(r)
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("url", ["/static/css/crm.css", "/static/js/crm-pages.js", "/admin/statics/js/jquery.min.js"])
def test_static_files_are_protected_and_may_be_cached(client: Any, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200
    assert_protected(r)
    assert "cache-control" not in r.headers  # the same bytes for everyone
    assert r.headers["content-type"].startswith(("text/css", "text/javascript", "application/javascript"))


def test_not_found(client: Any, admin_client: Any) -> None:
    for c, url in ((client, "/no-such-page"), (admin_client, "/admin/customer/details/99999999"),
                   (client, "/static/no-such-file.js")):
        r = c.get(url)
        assert r.status_code == 404, url
        assert_protected(r)


def test_refused_page(manager_client: Any) -> None:
    r = manager_client.get("/admin/sys-user/list")
    assert r.status_code == 403
    assert_protected(r)
    assert r.headers["cache-control"] == "no-store"


def test_csrf_refusal(admin_client: Any) -> None:
    r = admin_client.post("/admin/sys-dept/create", data={"name": "外部部门", "save": "保存"})
    assert r.status_code == 403 and "请求已被拒绝" in r.text
    assert_protected(r)


def test_redirects(client: Any) -> None:
    for url in ("/", "/admin/customer/list"):
        r = client.get(url, follow_redirects=False)
        assert r.status_code in (302, 303, 307), url
        assert_protected(r)
        assert r.headers["cache-control"] == "no-store"


def test_json(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert_protected(r)


def _fail_dashboard(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    from crm_admin.dashboard import admin as dashboard_admin

    def fail(*args: Any) -> Any:
        raise exc

    monkeypatch.setattr(dashboard_admin, "_data", fail)


@pytest.mark.parametrize("exc, status", [
    (RuntimeError("boom"), 500),
    (OperationalError("SELECT 1", {}, Exception("server has gone away")), 503),
])
def test_friendly_error_pages(admin_client: Any, monkeypatch: pytest.MonkeyPatch, exc: Exception,
                              status: int) -> None:
    _fail_dashboard(monkeypatch, exc)
    r = admin_client.get("/admin/")
    assert r.status_code == status
    assert_protected(r)
    assert_inline_style_allowed(r)


@pytest.fixture
def crashing_route(app: Any) -> Iterator[str]:
    """A route outside /admin that crashes: its page is written by the outermost request middleware."""
    def crash(request: Any) -> PlainTextResponse:
        raise RuntimeError("boom")

    app.add_route("/test-crash", crash)
    try:
        yield "/test-crash"
    finally:
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", "") != "/test-crash"]


def test_crash_outside_the_admin_site(app: Any, crashing_route: str) -> None:
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get(crashing_route)
    assert r.status_code == 500 and "系统出错了" in r.text
    assert_protected(r)
    assert_inline_style_allowed(r)


def assert_inline_style_allowed(response: Any) -> None:
    """The plain pages' one inline style is the one the policy allows by its hash."""
    styles = re.findall(r"<style>(.*?)</style>", response.text, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode("utf-8")).digest()).decode("ascii")
    assert f"'sha256-{digest}'" in directives(response.headers["content-security-policy"])["style-src"]


def test_csrf_refusal_style_is_allowed(admin_client: Any) -> None:
    r = admin_client.post("/admin/sys-dept/create", data={"name": "外部部门"})
    assert_inline_style_allowed(r)


# ----- HTTPS ---------------------------------------------------------------------------------


@pytest.fixture
def https_app_client() -> Iterator[Callable[..., Any]]:
    from crm_admin.web.app import create_app

    made: list[TestClient] = []

    def factory(**settings: Any) -> TestClient:
        c = TestClient(create_app(Settings(**settings)), base_url="https://testserver")
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def test_hsts_only_when_the_site_is_served_over_https(https_app_client: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    for settings in ({"https": True}, {"tls_certfile": cert, "tls_keyfile": key}):
        c = https_app_client(**settings)
        for url in ("/admin/login", "/static/css/crm.css", "/no-such-page"):
            r = c.get(url)
            assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains", url
    plain = https_app_client(https=False)
    assert "strict-transport-security" not in plain.get("/admin/login").headers


# ----- the policy itself -----------------------------------------------------------------------


def test_policy_allows_only_this_site(client: Any) -> None:
    csp = directives(client.get("/admin/login").headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no other origin
    assert csp["style-src"][0] == "'self'" and all(s.startswith("'sha256-") for s in csp["style-src"][1:])
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    for name, sources in csp.items():
        for source in sources:
            assert source in ("'self'", "'none'", "data:") or source.startswith("'sha256-"), (name, source)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


def test_templates_hold_no_inline_script_handler_or_style_attribute() -> None:
    """What the policy refuses, found before a browser is started (data blocks are allowed)."""
    found = []
    for template in sorted(PACKAGE.rglob("templates/**/*.html")):
        text = template.read_text(encoding="utf-8")
        for pattern in (INLINE_SCRIPT, HANDLER, STYLE_ATTRIBUTE, re.compile("javascript:", re.I)):
            found += [f"{template.relative_to(PACKAGE)}: {m.group(0)[:80]}" for m in pattern.finditer(text)]
    assert found == []
