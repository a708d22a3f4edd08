"""Notifications raised where things happen: a tiny emitter below the business modules.

A module that changes state (a care job creating today's tasks, a transfer, a churn alert) calls
``notify(session, kind, recipients, …)`` inside its own transaction; the rows it leads to (one in-app
notification per recipient, one outbox row per delivery channel) are written on the same connection,
so a rolled-back change notifies nobody and a committed one always does. Core does not know how they
are stored: the notifications module registers the writer (``register_writer``) when its
``notifying.py`` is imported, which ``notify`` asks for on first use (``core.discovery``). With no
writer (the module removed), ``notify`` does nothing.

Links name a route and its path parameters (``Link("admin:view-care", {})``), never a hand-written
path: the page showing a notification looks the route up; a message sent outside (e-mail, a chat
robot) is given an absolute address only when ``CRM_PUBLIC_URL`` is set and the web app has registered
its route look-up (``set_link_resolver``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crm_admin.core import discovery

log = logging.getLogger(__name__)

ADMINS = "admins"  # a recipient standing for every active administrator


@dataclass(frozen=True)
class Link:
    route: str  # a route name: "admin:view-care-workbench"
    params: dict[str, Any] = field(default_factory=dict)  # its path parameters
    query: str = ""

    def encode(self) -> str:
        return json.dumps({"r": self.route, "p": self.params, "q": self.query}, ensure_ascii=False,
                          separators=(",", ":"))

    @staticmethod
    def decode(text: str | None) -> Link | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return Link(str(data["r"]), dict(data.get("p") or {}), str(data.get("q") or ""))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Event:
    kind: str  # care_due, care_overdue, churn_alert, transferred, reclaim_warning, import_done, job_failed
    recipients: tuple[int | str, ...]  # user ids, or ADMINS
    subject: str
    body: str
    link: Link | None
    dedupe_key: str  # the event: the same key is notified once per user and delivered once per channel


Writer = Callable[[Session, Event], int]
_writer: list[Writer] = []
_load = discovery.once("notifying")


def register_writer(writer: Writer) -> None:
    """The notifications module's writer (one per process; registering again replaces it)."""
    _writer[:] = [writer]


def notify(session: Session, kind: str, recipients: Iterable[int | str | None], subject: str, body: str,
           link: Link | None = None, dedupe_key: str = "") -> int:
    """Notify ``recipients`` of an event in ``session``'s transaction; the number of notifications
    written (a recipient already notified of ``dedupe_key`` is not notified again)."""
    who = tuple(dict.fromkeys(r for r in recipients if r is not None))
    if not who:
        return 0
    _load()
    if not _writer:
        return 0
    event = Event(kind=kind, recipients=who, subject=subject[:200], body=body, link=link,
                  dedupe_key=(dedupe_key or f"{kind}:{subject}")[:160])
    return _writer[0](session, event)


# ----- links outside the app -------------------------------------------------------------------

_resolver: list[Callable[[Link], str]] = []


def set_link_resolver(resolver: Callable[[Link], str]) -> None:
    """The web app's route look-up (the path of a link), for messages sent outside the app."""
    _resolver[:] = [resolver]


def absolute_link(link: Link | None, public_url: str) -> str:
    """``public_url`` + the link's path, or "" when either is unknown."""
    if link is None or not public_url or not _resolver:
        return ""
    try:
        path = _resolver[0](link)
    except Exception:  # a route renamed since the notification was written: no link rather than no message
        log.warning("notification link %s no longer resolves", link.route)
        return ""
    return public_url.rstrip("/") + path + (f"?{link.query}" if link.query else "")


# ----- the bell ------------------------------------------------------------------------------------

_counter: list[Callable[[int], int]] = []
_count_column: list[Callable[[int], Any]] = []


def register_unread_counter(counter: Callable[[int], int], column: Callable[[int], Any] | None = None) -> None:
    """``counter`` counts a user's unread notifications; ``column``, where given, is the same count as
    a scalar subquery, which the statement that loads the signed-in user carries (no statement of its
    own for the bell)."""
    _counter[:] = [counter]
    _count_column[:] = [column] if column is not None else []


def unread_column(user_id: int) -> Any | None:
    """The bell's count as a column for the request's user statement, or None (no counter registered)."""
    _load()
    return _count_column[0](user_id) if _count_column else None


def remember_unread(request: Any, count: int) -> None:
    """The bell's count read with the signed-in user: the page's bell shows it without counting again."""
    request.state.notify_unread = int(count)


def unread_count(request: Any) -> int:
    """The signed-in user's unread notifications, counted once per request (the bell of every page)."""
    state = getattr(request, "state", None)
    user = getattr(state, "user", None) if state is not None else None
    if state is None or user is None:
        return 0
    cached = getattr(state, "notify_unread", None)
    if cached is not None:
        return int(cached)
    _load()
    try:
        count = _counter[0](int(user.id)) if _counter else 0
    except SQLAlchemyError:  # an error page rendered while the database is away still renders
        log.warning("unread notifications not counted: database unavailable")
        return 0
    state.notify_unread = count
    return count
