"""The toolkit of custom pages (dashboard, care workbench, transfers, churn handling, imports…).

A custom page is a route declared with ``core.routes.route`` (its permission and row scope are checked
before the handler runs; the CSRF middleware has already checked every POST). Its handler stays thin:
it reads its values with the bounded parsers of ``core.params``, runs its database work off the event
loop with ``run_sync`` (sessions are synchronous), links and redirects by route name (``url_path``
here, ``url_for`` in templates) rather than by hand-built ``/admin/…`` strings, shows a refusal (``UserError``) as a message on the
page, and formats what it shows with ``core.formatting``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request


async def run_sync[T](fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread: database work never blocks the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


def base_context(request: Request, title: str, **extra: Any) -> dict[str, Any]:
    """The context every custom page's template starts from."""
    return {"title": title, **extra}


Query = Mapping[str, Any] | Sequence[tuple[str, Any]] | str


def url_path(request: Request, name: str, /, *, query: Query | None = None, fragment: str = "",
             **path_params: Any) -> str:
    """The path of the route ``name`` (``admin:view-customer-customer_360``, ``admin:list``…) with an
    optional query (a mapping, pairs or an encoded string) and fragment: what a redirect points at."""
    path = request.url_for(name, **path_params).path
    encoded = query if isinstance(query, str) else urlencode(query or {})
    if encoded:
        path = f"{path}?{encoded}"
    return f"{path}#{fragment}" if fragment else path
