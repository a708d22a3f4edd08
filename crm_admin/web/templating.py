"""Page rendering: synchronous where a template allows it, asynchronous where it needs to be.

SQLAdmin renders every page with Jinja's asynchronous mode, because a few of its templates call
coroutines (a list cell's value, a permission check). The price is paid by every page: in that mode each
call, loop and macro goes through an awaitable check, which made template rendering about twice as
costly as the same template rendered synchronously — the larger part of a page's CPU.

Here a page is first rendered by a synchronous twin of the same environment (same loader, globals,
filters and translations). A call in a template that returns an awaitable stops that attempt before
anything is sent (``NeedsAsync``); the page is then rendered as before, asynchronously, and its template
is remembered as one that needs it. The session is put back as it was before the attempt, so that a
message shown once (SQLAdmin's flashed messages) is not lost to the abandoned attempt.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import jinja2
from jinja2.runtime import Context
from sqladmin.templating import Jinja2Templates
from starlette.requests import Request

from crm_admin.core import sqladmin_compat


class NeedsAsync(Exception):
    """A template called something that must be awaited."""


class _GuardedContext(Context):
    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().call(__obj, *args, **kwargs)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never started: closing it only silences "never awaited"
            raise NeedsAsync(getattr(__obj, "__qualname__", repr(__obj)))
        return result


class CrmTemplates(Jinja2Templates):
    """SQLAdmin's templates object, rendering synchronously when the template allows it."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env
        self.sync_env = env.overlay(enable_async=False)
        self.sync_env.context_class = _GuardedContext
        self.needs_async: set[str] = set()
        self._lock = threading.Lock()

    async def TemplateResponse(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status_code: int = 200,
    ) -> Any:  # SQLAdmin's response class, built in sqladmin_compat
        context = context or {}
        context.setdefault("request", request)
        hook = getattr(context.get("model_view"), "page_values", None)
        if hook is not None:  # what the template would await, resolved first (core/views.py)
            context.update(await hook(request, context))
        template = self.env.get_template(name)
        content = self._render_sync(request, name, context) if name not in self.needs_async else None
        if content is None:
            content = await template.render_async(context)
        return sqladmin_compat.template_response(template, content, context, status_code)

    def _render_sync(self, request: Request, name: str, context: dict[str, Any]) -> str | None:
        session = request.scope.get("session")
        before = dict(session) if isinstance(session, dict) else None
        try:
            return self.sync_env.get_template(name).render(context)
        except NeedsAsync:
            with self._lock:
                self.needs_async.add(name)
            if before is not None and isinstance(session, dict):
                session.clear()
                session.update(before)
            return None
