"""The shape every middleware of ours shares: HTTP requests are handled, anything else (lifespan,
websockets) passes straight through."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, and whether it is all of it (False: more than ``limit`` bytes, or the client
    left; what was read is returned either way)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def replay_body(body: bytes, receive: Receive | None = None, *, more: bool = False) -> Receive:
    """A ``receive`` that gives ``body`` first, then passes on to the server's ``receive`` (the rest of
    the body when ``more``, else its disconnect); with no ``receive``, waits after the body."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        if receive is not None:
            return await receive()
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}  # pragma: no cover

    return replay
