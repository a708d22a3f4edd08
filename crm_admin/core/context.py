"""Who is acting right now (request user, scheduler job, CLI), carried in a context variable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    # how the actor reached the system: "" for the pages, jobs and the command line, "api" for a call to
    # /api/v1 with a personal token (marked in the audit rows it writes: ``core/audit.py``)
    channel: str = ""


SYSTEM = Actor(user_id=None, username="system")
_current: ContextVar[Actor] = ContextVar("crm_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _current.get()


def set_actor(actor: Actor) -> None:
    _current.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


# The signed-in user's principal for the request being served (None for jobs and the CLI): read by the
# shared machinery that SQLAdmin calls without the request (the search of a list page).
_principal: ContextVar[Any] = ContextVar("crm_principal", default=None)


def current_principal() -> Any:
    return _principal.get()


def set_principal(principal: Any) -> None:
    _principal.set(principal)
