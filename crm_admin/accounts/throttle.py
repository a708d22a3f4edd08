"""Per-address throttling of sign-in attempts, counted for the whole cluster.

Lock-out protects one account; this protects all of them from one address trying many names. The
limit is ``CRM_LOGIN_IP_MAX_PER_MINUTE`` attempts in any sliding minute, whichever process or node
receives them: the count lives in Redis when ``CRM_REDIS_URL`` is set, otherwise in the database
(``login_throttle``). The window is estimated from two one-minute buckets: the attempts of the
current minute plus those of the previous one weighted by how much of it is still inside the last
sixty seconds (the usual sliding-window counter; it never admits more than the limit in a minute of
steady traffic and forgets a burst gradually). Minutes are wall-clock minutes (``time.time()``):
the nodes' clocks must be synchronised (NTP), as for every time the product stores.

Database: one row per (address, minute). A refused attempt only reads (a guessing run writes at most
``limit`` times per minute into its own row, then stops writing); an admitted one updates its row by
primary key, or inserts it on its first attempt of the minute, in a short transaction of its own.
Two nodes incrementing the same row at once conflict at commit on a Galera cluster (a deadlock
error) or on the primary key elsewhere: the attempt is counted again, at most ``_TRIES`` times.
Whoever inserts a new row also removes up to ``SWEEP_BATCH`` rows that are no longer read (older than
the previous minute), in a transaction of its own whose failure changes nothing: the table holds
about two minutes of addresses whatever happens.

Redis: ``INCR`` and ``EXPIRE`` of the minute's key and ``GET`` of the previous minute's, in one
pipeline. Every attempt is counted there, refused ones too (an address that keeps hammering stays
refused until it pauses). If Redis does not answer, the attempt is counted in the database, a
warning is logged, and Redis is not asked again for ``REDIS_RETRY_SECONDS``: an outage neither
locks everybody out nor turns throttling off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from crm_admin import retry
from crm_admin.accounts.models import LoginThrottle
from crm_admin.db import transaction
from crm_admin.settings import get_settings

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SWEEP_BATCH = 200  # rows removed at most by one sweep: a bounded cost for the attempt that sweeps
REDIS_RETRY_SECONDS = 30.0  # after a failure, Redis is asked again only this much later
REDIS_TIMEOUT_SECONDS = 0.5
_KEY_TTL_SECONDS = 2 * WINDOW_SECONDS + 10  # a minute's key is read during the next minute
_TRIES = 3  # conflicting writes of one row (two nodes, same address, same moment) are retried
# MySQL/MariaDB errors that mean "do the transaction again": deadlock (how Galera reports a commit
# that lost certification) and lock wait timeout
_RETRY_CODES = {1213, 1205}


@dataclass(frozen=True)
class Window:
    """The minute an attempt falls in, and the share of the previous minute still inside the window."""

    minute: int
    previous_weight: float

    @classmethod
    def at(cls, now: float) -> Window:
        minute = int(now // WINDOW_SECONDS)
        return cls(minute, 1.0 - (now - minute * WINDOW_SECONDS) / WINDOW_SECONDS)

    def admitted_this_minute(self, previous: int, limit: int) -> int:
        """How many attempts the current minute may hold, given the previous minute's count."""
        return max(0, math.ceil(limit - previous * self.previous_weight))


def allow(ip: str, *, now: float | None = None, limit: int | None = None) -> bool:
    """Count one sign-in attempt from ``ip``; False when it exceeds the per-minute limit.

    Blocking (database or network): call it from a worker thread in async code."""
    now = time.time() if now is None else now
    limit = limit if limit is not None else get_settings().login_ip_max_per_minute
    key = (ip or "-")[:64]
    window = Window.at(now)
    client = _redis.client()
    if client is not None:
        try:
            return _allow_in_redis(client, key, window, limit)
        except Exception as exc:  # any failure of Redis: count in the database instead
            _redis.failed(exc)
    return _allow_in_database(key, window, limit)


def reset() -> None:
    """Forget every count (tests, or an administrator after a false alarm), in Redis and the database."""
    client = _redis.client()
    if client is not None:
        try:
            prefix = _key_prefix()
            keys = list(client.scan_iter(match=f"{_escape_glob(prefix)}*", count=500))
            if keys:
                client.delete(*keys)
        except Exception as exc:
            _redis.failed(exc)
    with transaction() as session:
        session.execute(delete(LoginThrottle))
    _redis.forget()


# --- the database -------------------------------------------------------------------------------


def _allow_in_database(ip: str, window: Window, limit: int) -> bool:
    for attempt in range(1, _TRIES + 1):
        try:
            # a count repeated when the request is run again costs one attempt of the limit, nothing
            # more: it does not keep the request from being run again (crm_admin/retry.py)
            with retry.uncounted(), transaction() as session:
                outcome = count_attempt(session, ip, window, limit)
        except IntegrityError:  # the same address's first attempt of the minute, at once elsewhere
            continue
        except DBAPIError as exc:
            if _error_code(exc) not in _RETRY_CODES:
                raise
            if attempt == _TRIES:
                # only this address's row is contended: refusing it locks nobody else out
                log.warning("login throttle: the count of %s conflicted %d times in a row; attempt refused",
                            ip, _TRIES)
                return False
            continue
        if outcome == "inserted":
            _sweep_quietly(window.minute)
        return outcome != "refused"
    log.warning("login throttle: the row of %s could not be written after %d tries; refused", ip, _TRIES)
    return False


def count_attempt(session: Session, ip: str, window: Window, limit: int) -> str:
    """Count one attempt in the database: "counted", "inserted" (the address's first this minute) or
    "refused" (over the limit: nothing written). The caller commits."""
    t = LoginThrottle.__table__.c
    counts = dict(session.execute(
        select(t.minute, t.attempts).where(t.ip == ip, t.minute.in_((window.minute - 1, window.minute)))
    ).tuples().all())
    allowed = window.admitted_this_minute(int(counts.get(window.minute - 1, 0)), limit)
    current = counts.get(window.minute)
    if current is not None and int(current) >= allowed:
        return "refused"
    if current is not None:
        # the condition makes concurrent attempts on one node admit no more than the limit
        done = session.execute(
            update(LoginThrottle).where(t.ip == ip, t.minute == window.minute, t.attempts < allowed)
            .values(attempts=t.attempts + 1)
        )
        return "counted" if getattr(done, "rowcount", 0) == 1 else "refused"
    if allowed < 1:
        return "refused"
    session.add(LoginThrottle(ip=ip, minute=window.minute, attempts=1))
    session.flush()  # a row inserted meanwhile by another request fails here (IntegrityError)
    return "inserted"


def sweep(session: Session, minute: int, *, batch: int = SWEEP_BATCH) -> int:
    """Remove up to ``batch`` rows older than the previous minute; returns how many. The caller commits."""
    t = LoginThrottle.__table__.c
    stale = session.execute(
        select(t.ip, t.minute).where(t.minute < minute - 1).order_by(t.minute).limit(batch)
    ).tuples().all()
    if not stale:
        return 0
    session.execute(delete(LoginThrottle).where(tuple_(t.ip, t.minute).in_(stale)))
    return len(stale)


def _sweep_quietly(minute: int) -> None:
    try:
        with retry.uncounted(), transaction() as session:
            sweep(session, minute)
    except DBAPIError as exc:  # another node swept the same rows at once: the next sweep does it
        log.debug("login throttle: sweep skipped (%s)", exc.__class__.__name__)


def _error_code(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


# --- Redis -------------------------------------------------------------------------------------


def _key_prefix() -> str:
    return f"{get_settings().redis_key_prefix}login:"


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _allow_in_redis(client: Any, ip: str, window: Window, limit: int) -> bool:
    prefix = _key_prefix()
    current_key = f"{prefix}{ip}:{window.minute}"
    pipe = client.pipeline(transaction=True)
    pipe.incr(current_key)
    pipe.expire(current_key, _KEY_TTL_SECONDS)
    pipe.get(f"{prefix}{ip}:{window.minute - 1}")
    current, _expiry, previous = pipe.execute()
    _redis.succeeded()
    # this attempt is the ``current``-th of the minute: admitted while the ones before it fit
    return int(current) - 1 < window.admitted_this_minute(int(previous or 0), limit)


class _RedisLink:
    """The process's Redis client (thread-safe, pooled), and whether Redis is usable at the moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._url: str | None = None
        self._client: Any = None
        self._down_until = 0.0
        self._down = False

    def client(self) -> Any:
        url = get_settings().redis_url
        if not url:
            return None
        with self._lock:
            if self._down_until and time.monotonic() < self._down_until:
                return None
            if self._client is None or url != self._url:
                self._client = _connect(url)
                self._url = url
            return self._client

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            self._down = True
        log.warning("login throttle: Redis (%s) does not answer (%s: %s); attempts are counted in the "
                    "database, Redis is tried again in %.0f s", _shown(self._url or ""),
                    exc.__class__.__name__, exc, REDIS_RETRY_SECONDS)

    def succeeded(self) -> None:
        if self._down:
            with self._lock:
                self._down, self._down_until = False, 0.0
            log.warning("login throttle: Redis (%s) answers again; attempts are counted there",
                        _shown(self._url or ""))

    def forget(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client, self._url, self._down_until, self._down = None, None, 0.0, False


def _connect(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # one quick reconnect (a pooled connection dropped by a Redis restart), no long retry loop: a
    # sign-in waits at most about a second for a Redis that does not answer, then the database counts
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                socket_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 1))


def _shown(url: str) -> str:
    """The URL without its password, for the log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


_redis = _RedisLink()
