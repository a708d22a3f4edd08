"""CSRF protection for the admin site (SQLAdmin has none).

``CsrfMiddleware`` is a pure ASGI middleware placed inside the session middleware (the
authentication backend appends it after SessionMiddleware), so ``scope["session"]`` is there.
Every POST/PUT/PATCH/DELETE under /admin must carry the session's token, either in the
``X-CSRF-Token`` header (our JS adds it to fetch and XMLHttpRequest/jQuery) or in a
``csrf_token`` form field (urlencoded or multipart: the body is buffered, read and replayed to
the application unchanged). A refusal is a 403 page in Chinese, changes nothing, and is audited
as ``permission_denied``.

The token lives in ``session["csrf"]``: created at login (rotated with the session) and, for the
login page itself, on first render (``template_token``). Templates get it as ``csrf_token()``;
the layout also puts it in ``<meta name="csrf-token">``.

For other engineers: state-changing endpoints must be POST (``@expose(path, methods=["POST"])``)
and read nothing but the request: the check happens before your code runs. SQLAdmin's ``@action``
routes are registered GET-only by SQLAdmin; ``harden_admin_routes`` turns them into POST-only
routes (our list/details templates submit them as POST forms with the token).
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
from jinja2 import pass_context
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from crm_admin.core import audit, sqladmin_compat
from crm_admin.core.asgi import read_body, replay_body
from crm_admin.core.context import Actor
from crm_admin.core.errors import plain_page
from crm_admin.core.i18n import locale_from_cookie, translations_for
from crm_admin.core.models import SysUser
from crm_admin.db import session_factory

log = logging.getLogger(__name__)

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# A form without the header is buffered to find its token: bound what we are willing to hold.
MAX_BUFFERED_BODY = 64 * 1024 * 1024
REFUSAL_MESSAGE = "页面已过期或请求来源无效,请刷新页面后重试。"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_token(session: MutableMapping[str, Any]) -> str:
    """The session's token, created if the session has none yet (anonymous login page)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = new_token()
        session[SESSION_KEY] = token
    return token


def token_of(request: Request) -> str:
    if "session" not in request.scope:
        return ""
    return ensure_token(request.session)


@pass_context
def template_token(context: Any) -> str:
    """Template global ``csrf_token()`` (the request is taken from the template context)."""
    request = context.get("request")
    return token_of(request) if isinstance(request, Request) else ""


def tokens_match(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class CsrfMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        session = scope.get("session")
        expected = session.get(SESSION_KEY) if isinstance(session, dict) else None
        headers = Headers(scope=scope)
        header_token = headers.get(HEADER)
        if header_token is not None:
            if tokens_match(header_token, expected):
                await self.app(scope, receive, send)
            else:
                await self.refuse(scope, receive, send, "bad header token" if expected else "no session token")
            return

        content_type = headers.get("content-type", "")
        if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            await self.refuse(scope, receive, send, "no token")
            return
        body, complete = await read_body(receive, MAX_BUFFERED_BODY)
        if not complete:
            await self.refuse(scope, receive, send, "body too large to check")
            return
        form_token = await _form_token(scope, content_type, body)
        if not tokens_match(form_token, expected):
            await self.refuse(scope, receive, send, "bad form token" if form_token else "no token")
            return
        await self.app(scope, replay_body(body, receive), send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        request = Request(scope, receive)
        await anyio.to_thread.run_sync(_audit_refusal, request, reason)
        await refusal_response(request)(scope, receive, send)


def refusal_response(request: Request) -> Response:
    t = translations_for(locale_from_cookie(request.headers.get("cookie", ""))).gettext
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse({"detail": t(REFUSAL_MESSAGE)}, status_code=403)
    return plain_page(
        403, t("请求已被拒绝"), t(REFUSAL_MESSAGE),
        t("为了保护您的数据,系统拒绝了这个没有有效安全令牌的请求,没有任何数据被修改。"),
        lang="en" if t("请求已被拒绝") != "请求已被拒绝" else "zh-CN",
        footer=f'<p><a href="{html.escape(_home(request))}">{t("返回首页")}</a></p>',
    )


def _home(request: Request) -> str:
    try:
        return str(request.url_for("admin:index"))
    except Exception:  # outside the admin app (a bare test app): the admin's usual place
        return "/admin/"


async def _form_token(scope: Scope, content_type: str, body: bytes) -> str | None:
    if content_type.startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if key == FORM_FIELD:
                return value
        return None
    request = Request(scope, replay_body(body))
    try:
        form = await request.form()
    except Exception:  # a malformed multipart body has no token we can trust
        return None
    try:
        field = form.get(FORM_FIELD)
        return field if isinstance(field, str) else None
    finally:
        await form.close()


# Anonymous refusals cost nothing to send: audit at most this many per client IP and minute (the
# rest are only logged), so they cannot flood the audit log.
ANONYMOUS_AUDITS_PER_MINUTE = 20
_anonymous_audits: dict[str, deque[float]] = {}
_anonymous_lock = threading.Lock()


def _anonymous_audit_allowed(ip: str) -> bool:
    now = time.monotonic()
    with _anonymous_lock:
        if len(_anonymous_audits) > 10_000:
            _anonymous_audits.clear()
        recent = _anonymous_audits.setdefault(ip, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= ANONYMOUS_AUDITS_PER_MINUTE:
            return False
        recent.append(now)
        return True


def _audit_refusal(request: Request, reason: str) -> None:
    session = request.scope.get("session") or {}
    uid = session.get("uid") if isinstance(session, dict) else None
    ip = request.client.host if request.client else ""
    log.info("CSRF refusal: %s %s (%s) uid=%s ip=%s", request.method, request.url.path, reason, uid, ip)
    if uid or _anonymous_audit_allowed(ip):
        _write_refusal_audit(request, reason)


def _write_refusal_audit(request: Request, reason: str) -> None:
    session = request.scope.get("session") or {}
    uid = session.get("uid") if isinstance(session, dict) else None
    try:
        username = ""
        if uid:
            with session_factory()() as db:
                user = db.get(SysUser, int(uid))
                username = user.username if user else ""
        actor = Actor(
            user_id=int(uid) if uid else None,
            username=username,
            ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:255],
            request_id=str((request.scope.get("state") or {}).get("request_id", "")),
        )
        audit.record_now(
            "permission_denied", resource="csrf", resource_id="",
            detail=f"CSRF 校验失败:{request.method} {request.url.path}({reason})",
            success=False, actor=actor,
        )
    except Exception:  # the refusal stands even if the audit database is unreachable
        log.warning("could not audit a CSRF refusal", exc_info=True)


# ----- admin routes: logout and @action become POST-only -----------------------------------


def harden_admin_routes(admin: Any) -> None:
    """Call once all views are added: logout answers POST only (GET shows a confirmation page)
    and SQLAdmin's GET ``@action`` routes are made POST-only."""
    routes = sqladmin_compat.admin_routes(admin)
    for index, route in enumerate(routes):
        if not isinstance(route, Route):
            continue
        if route.name == "logout":
            routes[index] = Route(
                "/logout", endpoint=_logout_endpoint(admin), methods=["GET", "POST"], name="logout"
            )
        elif sqladmin_compat.is_action_route(route):
            route.methods = {"POST"}


def _logout_endpoint(admin: Any) -> Any:
    async def logout(request: Request) -> Response:
        if request.method == "POST":
            return await admin.logout(request)
        if not request.session.get("uid"):
            return RedirectResponse(request.url_for("admin:login"), status_code=302)
        return await admin.templates.TemplateResponse(
            request, "sqladmin/logout.html", {"title": "退出登录"}
        )

    return logout
