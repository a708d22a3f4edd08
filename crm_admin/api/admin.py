"""Pages of the API module: a user's own personal tokens (create — shown once —, list, revoke), and the
administrators' page of everyone's tokens."""

from __future__ import annotations

from typing import Any

import anyio
from sqladmin import BaseView
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.api import tokens
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.params import parse_id, parse_int
from crm_admin.core.principal import Principal
from crm_admin.core.routes import SIGNED_IN, route
from crm_admin.core.views import principal_of
from crm_admin.db import run_in_transaction, session_factory

EXPIRY_LABELS = [(str(d), f"{d} 天") for d in tokens.EXPIRY_DAYS] + [("0", "永不过期")]


def _rows(user_id: int | None) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return [{"id": t.id, "name": t.name, "prefix": t.prefix, "username": username, "created_at": t.created_at,
                 "expires_at": t.expires_at, "last_used_at": t.last_used_at, "state": tokens.state_of(t),
                 "active": tokens.state_of(t) == "有效"} for t, username in tokens.tokens_of(session, user_id)]


def _create(principal: Principal, name: str, expires_days: int | None) -> str:
    return run_in_transaction(lambda session: tokens.create_token(
        session, principal, name=name, expires_days=expires_days).secret, where="api:token")


def _revoke(principal: Principal, token_id: int, any_user: bool) -> None:
    run_in_transaction(lambda session: tokens.revoke_token(session, principal, token_id, any_user=any_user),
                       where="api:token")


class ApiTokensView(BaseView):
    """Every signed-in user's own personal API tokens (user menu → 我的 API 令牌)."""

    name = "我的 API 令牌"
    icon = "fa-solid fa-key"
    identity = "account-api-tokens"

    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        return getattr(request.state, "principal", None) is not None

    @route("/account/api-tokens", methods=["GET", "POST"], identity="account-api-tokens", permission=SIGNED_IN)
    async def api_tokens(self, request: Request) -> Response:
        principal = principal_of(request)
        context: dict[str, Any] = {"title": "我的 API 令牌", "expiry_choices": EXPIRY_LABELS,
                                   "default_expiry": str(tokens.DEFAULT_EXPIRY_DAYS),
                                   "sees_all": principal.can("user", "list")}
        status = 200
        if request.method == "POST":
            form = await request.form()
            op = str(form.get("op") or "")[:16]
            try:
                if op == "create":
                    days = parse_int(str(form.get("expires_days") or ""))
                    context["secret"] = await anyio.to_thread.run_sync(
                        _create, principal, str(form.get("name") or "")[:200], days)
                    context["notice"] = "令牌已创建。请立即复制保存:离开本页后将无法再次查看。"
                elif op == "revoke":
                    token_id = parse_id(str(form.get("token_id") or ""))
                    if token_id is None:
                        raise NotFound("令牌不存在或不属于您。")
                    await anyio.to_thread.run_sync(_revoke, principal, token_id, False)
                    context["notice"] = "令牌已撤销,使用它的调用将立即被拒绝。"
                else:
                    raise UserError("无效的操作。")
            except UserError as exc:
                context["error"] = exc.message
                status = exc.status_code
        context["tokens"] = await anyio.to_thread.run_sync(_rows, principal.id)
        return await self.templates.TemplateResponse(request, "api/tokens.html", context, status_code=status)


class ApiTokenAdminView(BaseView):
    """Everyone's personal API tokens, for administrators (who may revoke any of them)."""

    name = "全部 API 令牌"
    icon = "fa-solid fa-key"
    identity = "api-tokens"

    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        principal = getattr(request.state, "principal", None)
        return principal is not None and principal.can("user", "list")

    @route("/api-tokens", identity="api-tokens", permission=("user", "list"))
    async def all_tokens(self, request: Request) -> Response:
        context = {"title": "全部 API 令牌", "tokens": await anyio.to_thread.run_sync(_rows, None),
                   "all_users": True, "notice": request.query_params.get("message", "")[:200],
                   "may_revoke": principal_of(request).can("user", "edit")}
        return await self.templates.TemplateResponse(request, "api/tokens.html", context)

    @route("/api-tokens/{token_id:int}/revoke", methods=["POST"], identity="api-token-revoke",
           permission=("user", "edit"))
    async def revoke_any(self, request: Request) -> Response:
        token_id = int(request.path_params["token_id"])
        try:
            await anyio.to_thread.run_sync(_revoke, principal_of(request), token_id, True)
        except NotFound:
            raise HTTPException(status_code=404, detail="令牌不存在。") from None
        url = request.url_for("admin:view-api-tokens").include_query_params(message="令牌已撤销。")
        return RedirectResponse(str(url.path) + "?" + str(url.query), status_code=303)


VIEWS = [ApiTokensView, ApiTokenAdminView]
