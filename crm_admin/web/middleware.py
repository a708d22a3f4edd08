"""Request id, one log line per request, friendly pages when something goes wrong, and requests run
again when they met a passing database error."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_admin import db, retry
from crm_admin.core.asgi import HttpMiddleware, read_body, replay_body
from crm_admin.core.errors import plain_page
from crm_admin.core.i18n import locale_from_cookie, translations_for

access_log = logging.getLogger("crm_admin.access")
error_log = logging.getLogger("crm_admin.error")
admission_log = logging.getLogger("crm_admin.admission")

def _translator(scope: Scope) -> tuple[Callable[[str], str], str]:
    """gettext for the language chosen in the ``crm_lang`` cookie (these pages render outside
    SQLAdmin's locale middleware), and the page's ``lang`` attribute. Chinese is the source text."""
    try:
        headers = dict(scope.get("headers") or [])
        locale = locale_from_cookie(headers.get(b"cookie", b"").decode("latin-1"))
        if locale != "zh":
            return translations_for(locale).gettext, locale
    except Exception:  # an error page must render even if the catalogs cannot be loaded
        pass
    return (lambda text: text), "zh-CN"


# MySQL/MariaDB errors that mean "the server cannot be reached or is not answering" (a read timeout on
# a frozen server is 2013); other OperationalErrors (a value MySQL cannot compare…) are plain errors.
UNREACHABLE_CODES = frozenset({1040, 1053, 1205, 1927, 2002, 2003, 2005, 2006, 2013, 2026, 2055})


def is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeoutError):  # every pooled connection is stuck on the database
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        args = getattr(exc.orig, "args", ())
        code = args[0] if args else None
        # SQLite's (and an unknown driver's) operational errors have no code: the file is missing or locked
        return code in UNREACHABLE_CODES if isinstance(code, int) else True
    return False


def _wants_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept", b"").decode("latin-1")
    return "application/json" in accept and "text/html" not in accept


class RequestMiddleware(HttpMiddleware):
    """Outermost: assigns the request id, logs the request, turns crashes into clear pages; with
    ``timing``, says in a ``Server-Timing`` header how long the request spent in the database."""

    def __init__(self, app: ASGIApp, *, timing: bool = False) -> None:
        super().__init__(app)
        self.timing = timing
        if timing:
            db.install_sql_clock()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        clock = db.start_sql_clock() if self.timing else None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                if clock is not None:
                    # until the answer starts: a page's template has run, a streamed export has begun
                    whole = (time.perf_counter() - started) * 1000
                    headers.append((b"server-timing", (f'db;dur={clock[0] * 1000:.2f};desc="SQL {int(clock[1])}", '
                                                       f"app;dur={whole:.2f}").encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # the last line of defence: never show a stack trace
            if response_started:
                error_log.exception("request %s failed after the response started", request_id)
                raise
            response = error_response(exc, request_id, scope)
            status = response.status_code
            # Through the wrapper, so the error page carries X-Request-ID like every other response.
            await response(scope, receive, send_wrapper)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            state: dict[str, Any] = scope.get("state") or {}
            user = state.get("user")
            access_log.info(
                "%s %s %s %s %d %.1fms",
                request_id,
                getattr(user, "username", "-"),
                scope.get("method", "-"),
                scope.get("path", "-"),
                status,
                elapsed,
            )


class AdmissionMiddleware(HttpMiddleware):
    """At most ``limit`` requests of this process at work at once; the others wait here, in arrival
    order, before any work is done for them. A Python process runs one thread at a time: with
    hundreds of requests at work together each one costs about twice the CPU (measured: 19.7 ms a
    request with 200 users, 44.6 ms with 500, the same pages), so past a few at once letting more in
    only slows every one of them. A slot is given back when the answer starts: a page is complete by
    then, a streamed export goes on without holding one. The request's body (up to 1 MB: forms) is
    received before a slot is taken, so a client that sends slowly keeps nobody else waiting. Health
    checks and static files never wait. ``limit`` 0: no limit."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        super().__init__(app)
        self.limit = limit
        # one set of slots per event loop (a server has one; the test client starts several)
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self.limit <= 0 or path.startswith(_NEVER_WAIT):
            await self.app(scope, receive, send)
            return
        try:
            body, complete = await read_body(receive, MAX_REPLAYED_BODY)
        except Exception:  # a body that cannot be read at all: the app answers it as it would have
            admission_log.info("request body unreadable before admission", exc_info=True)
        else:
            receive = replay_body(body, receive, more=not complete)
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        await slots.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            give_back()


_NEVER_WAIT = ("/static/", "/healthz", "/readyz")


def _answer(scope: Scope, lang: str, request_id: str, status: int, *, detail: str, title: str, message: str,
            hint: str, retry_after: str | None = None) -> Response:
    """The error as JSON (an API-style client) or as a page, with the request id and ``Retry-After``."""
    headers = {"Retry-After": retry_after} if retry_after else None
    if _wants_json(scope):
        return JSONResponse({"detail": detail, "request_id": request_id}, status_code=status, headers=headers)
    response = plain_page(status, title, message, hint, lang=lang)
    if retry_after:
        response.headers["Retry-After"] = retry_after
    return response


def error_response(exc: BaseException, request_id: str, scope: Scope) -> Response:
    gettext, lang = _translator(scope)
    _ = gettext  # the catalogue extractor looks for _("…")
    ask_admin = _("如问题持续,请将编号 {request_id} 告知系统管理员。").format(request_id=request_id)
    if retry.outcome_unknown(exc):
        error_log.warning("request %s: connection lost while committing: %s", request_id, exc)
        return _answer(
            scope, lang, request_id, 503,
            detail=_("保存时与数据库的连接中断,无法确定操作是否已完成,请刷新后确认。"),
            title=_("无法确定操作是否完成"),
            message=_("保存时与数据库的连接中断,无法确定您的操作是否已经完成。请刷新页面查看最新内容,确认没有保存后再重试。"),
            hint=ask_admin,
        )
    if retry.is_transient(exc) and not is_database_down(exc):
        error_log.warning("request %s: database busy after every attempt: %s", request_id, exc)
        return _answer(
            scope, lang, request_id, 503,
            detail=_("系统繁忙,请稍后重试。"),
            title=_("系统繁忙"),
            message=_("系统繁忙,您的操作没有完成,数据没有被修改。请稍后重试。"),
            hint=ask_admin, retry_after="5",
        )
    if is_database_down(exc):
        error_log.warning("request %s: database unavailable: %s", request_id, exc)
        return _answer(
            scope, lang, request_id, 503,
            detail=_("数据库暂时不可用,请稍后重试。"),
            title=_("系统暂时不可用"),
            message=_("数据库暂时无法连接,系统会在数据库恢复后自动恢复服务,请稍后刷新页面。"),
            hint=ask_admin, retry_after="10",
        )
    error_log.exception("request %s failed", request_id)
    return _answer(
        scope, lang, request_id, 500,
        detail=_("系统内部错误"),
        title=_("系统出错了"),
        message=_("处理您的请求时发生了意外错误,您的数据没有被修改。请稍后重试。"),
        hint=_("如问题持续,请将错误编号 {request_id} 告知系统管理员。").format(request_id=request_id),
    )


class CatchErrorsMiddleware(HttpMiddleware):
    """Inside SQLAdmin's app (before its own 500 handler): the same friendly pages."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if started:
                raise
            request_id = (scope.get("state") or {}).get("request_id", "")
            await error_response(exc, request_id, scope)(scope, receive, send)


# A request body up to this size is kept so that the request can be run again (forms are a few KB;
# an uploaded import file larger than this is not run again: its upload page says what happened).
MAX_REPLAYED_BODY = 1024 * 1024


class ReplayMiddleware(HttpMiddleware):
    """Runs a request again when it failed with a passing database error (a deadlock, a cluster node
    leaving: ``crm_admin/retry.py``) before anything of its response was sent and before any of its
    transactions committed — so that nothing it did is applied twice: a transaction that failed was
    rolled back whole, audit rows included. Each run gets the same body, and the session (CSRF
    token, messages shown once) and request state as they were when the request arrived.

    Sits inside SQLAdmin's app, after the session and CSRF middlewares (the token is checked once)
    and inside ``CatchErrorsMiddleware``, which shows the last attempt's error as a friendly page.
    Work that retries itself (a form save) reaches here only after giving up, marked: not run again.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, complete = await read_body(receive, MAX_REPLAYED_BODY)
        if not complete:  # too large to keep: run once, the part read first and then the rest
            await self.app(scope, replay_body(body, receive, more=True), send)
            return
        session = scope.get("session")
        session_before = copy.deepcopy(dict(session)) if isinstance(session, dict) else None
        state_before = dict(scope.get("state") or {})
        pol = retry.policy()
        for number in range(1, pol.attempts + 1):
            started = False

            async def send_wrapper(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            with retry.attempt() as current:
                try:
                    await self.app(scope, replay_body(body, receive), send_wrapper)
                    return
                except Exception as exc:
                    if started or not retry.should_retry(exc, current, where="web", number=number, pol=pol):
                        if started and retry.is_transient(exc):
                            error_log.warning("request %s: database error after the response started: "
                                              "not run again", state_before.get("request_id", ""))
                        raise
            if isinstance(session, dict) and session_before is not None:
                session.clear()
                session.update(copy.deepcopy(session_before))
            state = scope.get("state")
            if isinstance(state, dict):
                state.clear()
                state.update(state_before)
            await anyio.sleep(pol.pause(number))


