"""Who is calling: the bearer token, its user's principal, and the per-token rate limit.

Only ``Authorization: Bearer crm_…`` opens the API. A browser's signed-in session (its cookie) is never
read here, so a page's session cannot call the API (and no CSRF token is needed: a token is not sent by
the browser on its own). The principal is the one the pages use (``core.principal``), so a token has
exactly its user's permissions and data scope.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_admin.api import ratelimit, tokens
from crm_admin.api.problems import Problem
from crm_admin.core import audit
from crm_admin.core.context import Actor, set_actor, set_principal
from crm_admin.core.permissions import ACTIONS
from crm_admin.core.principal import Principal
from crm_admin.db import transaction
from crm_admin.settings import get_settings

bearer = HTTPBearer(auto_error=False, description="个人 API 令牌(在“我的 API 令牌”页面创建),例如 crm_…")

NO_TOKEN = "缺少或无效的访问令牌:请在 Authorization 头中提供 Bearer 令牌。"
BAD_TOKEN = "令牌无效、已过期或已撤销,或其用户已停用或须先修改密码。"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crm-admin"'}


def _authenticate(secret: str) -> tokens.Caller | None:
    with transaction() as session:
        return tokens.authenticate(session, secret)


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> tokens.Caller:
    """The authenticated caller of this request (401 otherwise; 429 over the token's rate)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, NO_TOKEN, headers=CHALLENGE)
    found = await anyio.to_thread.run_sync(_authenticate, credentials.credentials.strip())
    if found is None:
        raise Problem(401, BAD_TOKEN, headers=CHALLENGE)
    limit = get_settings().api_rate_per_minute
    # the sign-in throttle's sliding-minute counter (database or Redis), keyed by the token
    allowed = await anyio.to_thread.run_sync(lambda: ratelimit.allow(found.token_id, limit=limit))
    if not allowed:
        raise Problem(429, "请求过于频繁,请稍后再试。", headers={"Retry-After": str(ratelimit.retry_after())})
    user = found.user
    request.state.user = user
    request.state.principal = found.principal
    request.state.api_token_id = found.token_id
    # set in the request's own context: the handlers (run in worker threads) inherit it
    set_actor(Actor(user_id=user.id, username=user.username,
                    ip=request.client.host if request.client else "",
                    user_agent=request.headers.get("user-agent", "")[:255],
                    request_id=str(getattr(request.state, "request_id", "")), channel="api"))
    set_principal(found.principal)
    return found


Caller = Annotated[tokens.Caller, Depends(caller)]


def requires(resource: str, action: str) -> Any:
    """A dependency: the caller holds (resource, action), otherwise 403."""

    async def check(request: Request, who: Caller) -> Principal:
        if not who.principal.can(resource, action):
            # audited as the pages audit a refusal (the actor marked as API by its channel)
            detail = f"{ACTIONS.source.get(action, action)}: {request.method} {request.url.path}"[:1000]
            await anyio.to_thread.run_sync(lambda: audit.record_now(
                "permission_denied", resource=resource, detail=detail, success=False))
            raise Problem(403, "您没有执行此操作的权限。")
        return who.principal

    return Depends(check)
