"""The toolkit of custom pages (dashboard, care workbench, transfers, churn handling, imports…).

A custom page is a route declared with ``core.routes.route`` (its permission and row scope are checked
before the handler runs; the CSRF middleware has already checked every POST). Its handler stays thin:
it reads its values with the bounded parsers of ``core.params``, runs its database work off the event
loop with ``run_sync`` (sessions are synchronous), shows a refusal (``UserError``) as a message on the
page, and formats what it shows with ``core.formatting``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
from starlette.requests import Request


async def run_sync[T](fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread: database work never blocks the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


def base_context(request: Request, title: str, **extra: Any) -> dict[str, Any]:
    """The context every custom page's template starts from."""
    return {"title": title, **extra}
