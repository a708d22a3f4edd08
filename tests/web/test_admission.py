"""A server process works on at most ``CRM_MAX_CONCURRENT_REQUESTS`` requests at once; the others
wait their turn, none is refused, health checks never wait and a started answer gives its slot back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from crm_admin.settings import Settings
from crm_admin.web.middleware import AdmissionMiddleware


def _app(limit: int) -> tuple[Any, dict[str, int], asyncio.Event]:
    seen = {"now": 0, "most": 0}
    release = asyncio.Event()

    async def work(_request: Request) -> Response:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        await release.wait()
        seen["now"] -= 1
        return PlainTextResponse("done")

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def stream(_request: Request) -> Response:
        async def chunks() -> Any:
            yield b"first"
            await release.wait()
            yield b"last"
        return StreamingResponse(chunks())

    inner = Starlette(routes=[Route("/work", work, methods=["GET", "POST"]), Route("/healthz", health), Route("/export", stream)])
    return AdmissionMiddleware(inner, limit=limit), seen, release


async def _get(app: Any, path: str, started: asyncio.Event | None = None, *, method: str = "GET",
               body_sent: asyncio.Event | None = None) -> list[dict[str, Any]]:
    """One request through the ASGI app; ``started`` is set when its first answer bytes are sent; with
    ``body_sent``, the request's body arrives in two parts, the second once that event is set."""
    messages: list[dict[str, Any]] = []
    parts = [b"a=1&", b"b=2"] if body_sent is not None else [b""]

    async def receive() -> dict[str, Any]:
        if not parts:  # the client stays until the answer is complete
            await asyncio.Event().wait()
        part = parts.pop(0)
        if parts == [] and body_sent is not None and part == b"b=2":
            await body_sent.wait()
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if started is not None and message["type"] == "http.response.body" and message.get("body"):
            started.set()

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [], "scheme": "http", "http_version": "1.1",
             "server": ("testserver", 80), "client": ("127.0.0.1", 1)}
    await app(scope, receive, send)
    return messages


def _text(messages: list[dict[str, Any]]) -> str:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body").decode()


@pytest.mark.anyio
async def test_at_most_the_limit_at_work_the_rest_wait_and_all_are_answered() -> None:
    app, seen, release = _app(limit=2)
    calls = [asyncio.create_task(_get(app, "/work")) for _ in range(6)]
    await asyncio.sleep(0.2)
    assert seen["now"] == 2  # two at work, four waiting
    assert _text(await asyncio.wait_for(_get(app, "/healthz"), 2)) == "ok"  # never waits
    release.set()
    answers = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert [_text(a) for a in answers] == ["done"] * 6
    assert seen["most"] == 2


@pytest.mark.anyio
async def test_a_started_answer_gives_its_slot_back() -> None:
    """A streamed export holds no slot once its first bytes are on their way."""
    app, seen, release = _app(limit=1)
    first_bytes = asyncio.Event()
    export = asyncio.create_task(_get(app, "/export", first_bytes))
    await asyncio.wait_for(first_bytes.wait(), 2)
    work = asyncio.create_task(_get(app, "/work"))
    await asyncio.sleep(0.2)
    assert seen["now"] == 1  # admitted while the export still streams
    release.set()
    assert _text(await asyncio.wait_for(work, 5)) == "done"
    assert _text(await asyncio.wait_for(export, 5)) == "firstlast"


@pytest.mark.anyio
async def test_a_slow_sender_waits_outside_and_keeps_nobody_waiting() -> None:
    """A body still arriving holds no slot: with one slot, another request is served meanwhile."""
    app, seen, release = _app(limit=1)
    rest_of_body = asyncio.Event()
    slow = asyncio.create_task(_get(app, "/work", method="POST", body_sent=rest_of_body))
    await asyncio.sleep(0.1)
    assert seen["now"] == 0  # not admitted while its body arrives
    other = asyncio.create_task(_get(app, "/work"))
    await asyncio.sleep(0.1)
    assert seen["now"] == 1  # the other one is at work
    release.set()
    assert _text(await asyncio.wait_for(other, 5)) == "done"
    rest_of_body.set()
    assert _text(await asyncio.wait_for(slow, 5)) == "done"


def test_the_default_is_a_few_and_zero_means_no_limit() -> None:
    assert 1 <= Settings(secret_key="k" * 40).max_concurrent_requests <= 32
    app, _seen, _release = _app(limit=0)
    assert app.limit == 0
