"""Custom admin pages' routes, each with its permission declared once, next to the handler.

``@route`` is SQLAdmin's ``@expose`` plus what the route needs before its handler runs:

- ``permission``: ``(resource, action)``, or one per HTTP method (``{"GET": ..., "POST": ...}``), or a
  tuple of pairs of which any one will do, or ``SIGNED_IN`` (any signed-in user: their own account), or
  a function returning such a tuple, asked at each request (what modules registered by then);
- ``row``: ``(Model, "path_param")`` — the path names a row of ``Model``, which must exist and be within
  the user's data scope, otherwise the answer is 404 as if it did not exist.

The gate runs before the handler, so a handler cannot forget it; the declaration stays on the endpoint
(``declared(endpoint)``) so the tests enumerate every route of the running app and check each one —
anonymous, without the permission, with another manager's row, without a CSRF token — without a
hand-written list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from sqladmin import expose
from starlette.exceptions import HTTPException
from starlette.requests import Request

from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope
from crm_admin.db import session_factory

Pair = tuple[str, str]
SIGNED_IN = "signed-in"
Need = Pair | tuple[Pair, ...] | str | Callable[[], tuple[Pair, ...]]


@dataclass(frozen=True)
class RouteRule:
    path: str
    methods: tuple[str, ...]
    permissions: Mapping[str, Need]  # method → what it needs
    row: tuple[type, str] | None

    def need(self, method: str) -> Need:
        method = method.upper()
        need = self.permissions.get("GET" if method == "HEAD" else method, ())
        return need() if callable(need) else need

    def allows(self, principal: Principal, method: str) -> bool:
        need = self.need(method)
        if need == SIGNED_IN:
            return True
        pairs: tuple[Pair, ...] = (need,) if _is_pair(need) else need  # type: ignore[assignment]
        return any(principal.can(resource, action) for resource, action in pairs)


def _is_pair(need: Any) -> bool:
    return isinstance(need, tuple) and len(need) == 2 and all(isinstance(x, str) for x in need)


def route(path: str, *, permission: Need | Mapping[str, Need], methods: list[str] | None = None,
          identity: str | None = None, row: tuple[type, str] | None = None) -> Callable[..., Any]:
    """``@expose(path, methods=…, identity=…)`` with the route's permission and row scope enforced."""
    methods = methods or ["GET"]
    if isinstance(permission, Mapping):
        per_method: dict[str, Need] = {m.upper(): need for m, need in permission.items()}
        missing = [m for m in methods if m.upper() not in per_method]
        if missing:
            raise ValueError(f"route {path}: no permission declared for {missing}")
    else:
        per_method = {m.upper(): permission for m in methods}
    rule = RouteRule(path=path, methods=tuple(m.upper() for m in methods), permissions=per_method, row=row)

    def wrap(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        async def guarded(view: Any, request: Request, *args: Any, **kwargs: Any) -> Any:
            principal: Principal | None = getattr(request.state, "principal", None)
            if principal is None:
                raise HTTPException(status_code=401)
            if not rule.allows(principal, request.method):
                raise HTTPException(status_code=403, detail="您没有执行此操作的权限。")
            if rule.row is not None:
                # the row must be within the scope of the very permission the request uses
                need = rule.need(request.method)
                pair: Pair | None = need if _is_pair(need) else None  # type: ignore[assignment]
                await _require_row(request, principal, *rule.row, permission=pair)
            return await func(view, request, *args, **kwargs)

        guarded.__crm_route__ = rule  # type: ignore[attr-defined]
        return expose(path, methods=methods, identity=identity, include_in_schema=False)(guarded)

    return wrap


async def _require_row(request: Request, principal: Principal, model: type, param: str, *,
                       permission: Pair | None) -> None:
    pk = parse_id(request.path_params.get(param))
    if pk is None:
        raise HTTPException(status_code=404, detail="记录不存在或您无权访问。")

    def visible() -> bool:
        with session_factory()() as session:
            if permission is None:  # one of several permissions will do: the row must be visible
                return in_scope(session, model, pk, principal)
            resource, action = permission
            return in_scope(session, model, pk, principal, action, resource=resource)

    if not await anyio.to_thread.run_sync(visible):
        raise HTTPException(status_code=404, detail="记录不存在或您无权访问。")


def declared(endpoint: Any) -> RouteRule | None:
    """The rule a route was declared with (None for routes not made with ``@route``)."""
    return getattr(endpoint, "__crm_route__", None)
