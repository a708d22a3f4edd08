"""Sign-in for the admin site: SQLAdmin's authentication and authorization backends."""

from __future__ import annotations

import html
import logging
import secrets
import time
from dataclasses import replace
from typing import Any

import anyio
from sqladmin.authentication import AuthenticationBackend
from sqladmin.authorization import AuthorizationBackend
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Message, Receive, Scope, Send

from crm_admin.accounts import second_factor, throttle
from crm_admin.accounts.models import SysSession, SysUser
from crm_admin.accounts.service import (
    LoginResult,
    check_login,
    complete_login,
    end_session,
    session_token_hash,
    start_session,
)
from crm_admin.core import audit, notify
from crm_admin.core.asgi import HttpMiddleware
from crm_admin.core.context import Actor, set_actor, set_principal
from crm_admin.core.errors import plain_page
from crm_admin.core.formatting import format_datetime
from crm_admin.core.permissions import ACTIONS, gate
from crm_admin.core.principal import Principal, load_principal
from crm_admin.core.views import VIEW_RESOURCES, permission_action
from crm_admin.db import run_in_transaction, session_factory, utcnow
from crm_admin.settings import Settings

SESSION_COOKIE = "crm_session"
PASSWORD_PAGE = "/admin/account/password"
# Paths a user who must change their password may still open.
_PASSWORD_EXEMPT = (PASSWORD_PAGE, "/admin/logout", "/admin/statics", "/admin/crm-static")
# the own-account page where a second factor is set up (accounts/admin.py TwoFactorView)
ENROL_ROUTE = "admin:view-account-two-factor"
PENDING_EXPIRED_MESSAGE = "验证已超时或已失效,请重新输入用户名和密码。"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def request_actor(request: Request, user: SysUser | None = None) -> Actor:
    return Actor(
        user_id=user.id if user else None,
        username=user.username if user else "",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", "")[:255],
        request_id=getattr(request.state, "request_id", ""),
    )


class CrmAuthentication(AuthenticationBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            secret_key=settings.resolved_secret_key(),
            session_cookie=SESSION_COOKIE,
            max_age=settings.session_max_hours * 3600,
            same_site="lax",
            https_only=settings.serves_https,
        )
        self.settings = settings
        self.middlewares.append(Middleware(DeniedAuditMiddleware))

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        step = str(form.get("step", ""))
        if step == "cancel":  # "sign in as someone else" on the code page
            request.session.pop(second_factor.PENDING_KEY, None)
            return RedirectResponse(request.url_for("admin:login"), status_code=302)
        if step == "code":
            return await self._second_step(request, str(form.get("code", ""))[:64])
        username = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))[:256]
        actor = request_actor(request)
        refused = await self._throttled(request, actor, username)
        if refused is not None:
            return refused
        outcome = await anyio.to_thread.run_sync(_check_login_sync, username, password, actor)
        if isinstance(outcome, LoginResult):
            request.state.login_error = outcome.message
            if outcome.locked_until is not None:
                request.state.login_error_args = {"until": format_datetime(outcome.locked_until)}
            return False
        if isinstance(outcome, dict):
            # the password was right and the user has a second factor: no session yet, only the signed,
            # short-lived pending state; the login page now asks for the code
            request.session.clear()
            request.session.update({second_factor.PENDING_KEY: outcome, "csrf": secrets.token_urlsafe(32)})
            return RedirectResponse(request.url_for("admin:login"), status_code=302)
        self._start(request, *outcome)
        return True

    async def _second_step(self, request: Request, code: str) -> Response | bool:
        pending = second_factor.read_pending(request.session.get(second_factor.PENDING_KEY))
        if pending is None:
            request.session.pop(second_factor.PENDING_KEY, None)
            request.state.login_error = PENDING_EXPIRED_MESSAGE
            return False
        request.state.second_factor = True
        actor = request_actor(request)
        refused = await self._throttled(request, actor, f"#{pending[0]}")
        if refused is not None:
            return refused
        outcome = await anyio.to_thread.run_sync(_check_code_sync, *pending, code, actor)
        if outcome is None:  # signed out everywhere, password changed, reset, locked or disabled meanwhile
            request.session.pop(second_factor.PENDING_KEY, None)
            request.state.second_factor = False
            request.state.login_error = PENDING_EXPIRED_MESSAGE
            return False
        if isinstance(outcome, second_factor.CodeCheck):
            request.state.login_error = outcome.message
            if outcome.locked_until is not None:
                request.session.pop(second_factor.PENDING_KEY, None)
                request.state.second_factor = False
                request.state.login_error_args = {"until": format_datetime(outcome.locked_until)}
            return False
        self._start(request, *outcome)
        return True

    @staticmethod
    def _start(request: Request, user_id: int, epoch: int, token: str) -> None:
        request.session.clear()
        now = int(time.time())
        request.session.update({"uid": user_id, "epoch": epoch, "sid": token, "iat": now, "seen": now,
                                "csrf": secrets.token_urlsafe(32)})

    async def _throttled(self, request: Request, actor: Actor, username: str) -> Response | None:
        """The 429 page when the address has tried too often in the last minute (passwords and codes
        alike); None while it may go on."""
        limit = self.settings.login_ip_max_per_minute
        # counted in the database or Redis, shared by every node: blocking, so in a worker thread
        if await anyio.to_thread.run_sync(lambda: throttle.allow(actor.ip, limit=limit)):
            return None
        await anyio.to_thread.run_sync(
            lambda: audit.record_now("login_failed", resource="user", detail=f"该 IP 登录尝试过于频繁(用户名:{username})",
                                     success=False, actor=replace(actor, username=username.strip()[:64]))
        )
        page = plain_page(429, "登录尝试过于频繁", "来自您所在网络的登录尝试过于频繁,请一分钟后再试。",
                             f'<a href="{html.escape(str(request.url_for("admin:login")))}">返回登录页</a>')
        page.headers["Retry-After"] = "60"
        return page

    async def logout(self, request: Request) -> Response | bool:
        uid = request.session.get("uid")
        token = request.session.get("sid")
        if uid:
            user = await anyio.to_thread.run_sync(_load_user_sync, int(uid))
            actor = request_actor(request, user)
            await anyio.to_thread.run_sync(_end_session_sync, str(token or ""), int(uid), actor)
        request.session.clear()
        return False

    async def authenticate(self, request: Request) -> Response | bool:
        if getattr(request.state, "principal", None) is not None:
            return True
        uid = request.session.get("uid")
        if not uid:
            return False
        now = int(time.time())
        idle = self.settings.session_idle_minutes * 60
        lifetime = self.settings.session_max_hours * 3600
        if now - int(request.session.get("seen", 0)) > idle or now - int(request.session.get("iat", 0)) > lifetime:
            request.session.clear()
            return False
        token = request.session.get("sid")
        if not isinstance(token, str) or not token:
            request.session.clear()  # a cookie from before server-side sessions: sign in again
            return False
        loaded = await anyio.to_thread.run_sync(_load_user_and_principal_sync, int(uid), token)
        if loaded is None:
            request.session.clear()
            return False
        user, principal, unread = loaded
        if unread is not None:
            notify.remember_unread(request, unread)
        if not user.is_active or user.session_epoch != request.session.get("epoch"):
            request.session.clear()
            return False
        if now - int(request.session.get("seen", 0)) > 30:
            request.session["seen"] = now
        request.state.user = user
        request.state.principal = principal
        set_actor(request_actor(request, user))
        set_principal(principal)
        if user.must_change_password and not request.url.path.startswith(_PASSWORD_EXEMPT):
            return RedirectResponse(PASSWORD_PAGE, status_code=302)
        if principal.second_factor_required and user.totp_enabled_at is None:
            # a role of the user requires a second factor: nothing but enrolling until there is one
            enrol = request.url_for(ENROL_ROUTE).path
            if not request.url.path.startswith((enrol, *_PASSWORD_EXEMPT[1:])):
                return RedirectResponse(enrol, status_code=302)
        return True


def mark_pending_sign_in(request: Request) -> bool:
    """On the login page: True (and ``request.state.second_factor`` set) when the browser is half-way
    through signing in, so the page asks for the code; an expired pending state is dropped."""
    value = request.session.get(second_factor.PENDING_KEY)
    if value is None:
        return False
    if second_factor.read_pending(value) is None:
        request.session.pop(second_factor.PENDING_KEY, None)
        request.state.login_error = PENDING_EXPIRED_MESSAGE
        return False
    request.state.second_factor = True
    return True


class CrmAuthorization(AuthorizationBackend):
    """Answers SQLAdmin's menu, button and route checks from the principal's permission set."""

    def has_permission(self, request: Request, identity: str, action: str, obj: Any | None = None) -> bool:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            return False
        view = getattr(request.state, "_crm_views", {}).get(identity)
        resource = getattr(view, "resource", identity)
        return principal.can(resource, permission_action(action))


class DeniedAuditMiddleware(HttpMiddleware):
    """Writes a ``permission_denied`` audit row for every 403 answered to a signed-in user.

    Sits inside SQLAdmin's app (after the session middleware), so every refusal — a route of a
    view the user may not use, a button's URL typed by hand, a custom page — is recorded once.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 403:
                await _audit_denied(scope)
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _audit_denied(scope: Scope) -> None:
    state = scope.get("state") or {}
    user = state.get("user")
    if user is None:
        return
    request = Request(scope)
    path = request.url.path
    base = scope.get("root_path", "")
    parts = [p for p in path.removeprefix(base).split("/") if p]
    identity = parts[0] if parts else ""
    action = parts[1] if len(parts) > 1 else ""
    if action == "action" and len(parts) > 2:
        action = parts[2]
    resource = VIEW_RESOURCES.get(identity, identity)
    actor = request_actor(request, user)
    detail = f"{request.method} {path}" + (f"?{request.url.query}" if request.url.query else "")
    try:
        await anyio.to_thread.run_sync(
            lambda: audit.record_now("permission_denied", resource=resource[:64],
                                     detail=f"{_attempted(action)}: {detail}"[:1000],
                                     success=False, actor=actor)
        )
    except Exception:  # the refusal stands even if the audit write fails; it is logged

        logging.getLogger(__name__).exception("could not audit a permission denial")


def _attempted(action: str) -> str:
    """What the refused request tried, in words (the log is read by people): 查看, 编辑 … or 打开."""
    code = permission_action(action)
    return ACTIONS.source.get(code, code) if code else "打开"


def _check_login_sync(username: str, password: str,
                      actor: Actor) -> tuple[int, int, str] | dict[str, int | str] | LoginResult:
    """The sign-in check, its audit row and the new session in one transaction, run again on a passing
    database error (crm_admin/retry.py) without counting the attempt against the address again.
    A user with a second factor gets no session yet: the pending state to sign (a dict) instead."""

    def sign_in(session: Session) -> tuple[int, int, str] | dict[str, int | str] | LoginResult:
        result = check_login(session, username, password, actor)
        if result.user is None:
            return result
        if result.second_factor:
            return second_factor.pending_state(result.user)
        token = start_session(session, result.user, actor)
        return result.user.id, result.user.session_epoch, token

    return run_in_transaction(sign_in, where="login")


def _check_code_sync(user_id: int, epoch: int, code: str,
                     actor: Actor) -> tuple[int, int, str] | second_factor.CodeCheck | None:
    """The second step: the code checked on the locked user row (so a code passes once), the
    ``login`` audit row and the new session in one transaction. None when the pending sign-in no
    longer holds (the user's session version moved, the account was disabled or the factor removed)."""

    def verify(session: Session) -> tuple[int, int, str] | second_factor.CodeCheck | None:
        user = session.get(SysUser, user_id, with_for_update=True)
        if (user is None or not user.is_active or (user.session_epoch or 0) != epoch
                or not second_factor.is_enabled(user)):
            return None
        checked = second_factor.check_sign_in_code(session, user, code, actor)
        if not checked.ok:
            return checked
        how = "动态验证码" if checked.method == "totp" else (
            f"恢复码,剩余 {second_factor.remaining_recovery_codes(session, user.id)} 个")
        complete_login(session, user, actor, detail=f"两步验证通过({how})")
        token = start_session(session, user, actor)
        return user.id, user.session_epoch, token

    return run_in_transaction(verify, where="login")


def _end_session_sync(token: str, user_id: int, actor: Actor) -> None:
    def sign_out(session: Session) -> None:
        if token:
            end_session(session, token)
        audit.record(session, "logout", resource="user", resource_id=user_id, actor=actor)

    run_in_transaction(sign_out, where="logout")


def _load_user_sync(user_id: int) -> SysUser | None:
    with session_factory()() as session:
        return session.get(SysUser, user_id)


def _load_user_and_principal_sync(user_id: int, token: str) -> tuple[SysUser, Principal, int | None] | None:
    """The user of a live session (not signed out, not expired), with their principal and their unread
    notifications (the bell; None without a counter); None otherwise."""
    with session_factory()() as session:
        # the policy version and the bell's count in the same statement: two round trips fewer on
        # every page
        unread = notify.unread_column(user_id)
        columns: list[Any] = [SysUser, gate.version_query().scalar_subquery()]
        if unread is not None:
            columns.append(unread)
        found = session.execute(
            select(*columns)
            .join(SysSession, SysSession.user_id == SysUser.id).where(
                SysUser.id == user_id, SysSession.token_hash == session_token_hash(token),
                SysSession.revoked_at.is_(None), SysSession.expires_at > utcnow(),
            )
        ).one_or_none()
        if found is None:
            return None
        user, version = found[0], found[1]
        principal = load_principal(session.connection(), user, policy_version=int(version or 0))
        session.expunge(user)
        return user, principal, (int(found[2] or 0) if unread is not None else None)
