"""Which database errors are passing, and how work that met one is run again.

On a MariaDB Galera cluster a write transaction can fail through no fault of its own: a conflicting
commit on another node makes ours fail certification, reported at commit as a deadlock (1213); a node
leaving or rejoining the cluster answers 1047 until it is ready; a node being killed cuts its
connections (2006, 2013). A single server has the same errors more rarely (an InnoDB deadlock, a lock
wait timeout), and SQLite reports a writer busy past its timeout as "database is locked". Each of
these means that the transaction did not commit, so the whole unit of work can be run again on a
fresh connection — with one exception: a connection cut *while the COMMIT was on its way* leaves the
outcome unknown (the server may have committed before the connection died).

How that case is told apart: every commit of the process passes through the listeners below, which
count, for each attempt under way (``Attempt``), the commits that started and did not fail with an
error that proves a rollback. An attempt that met a passing error and has no such commit changed
nothing, and is run again; one that has is not, unless its work is idempotent by construction
(a scheduled job whose rows carry unique keys, a lease taken by a conditional UPDATE): running it
again could apply it twice, so the error goes up, marked ``OUTCOME_UNKNOWN``, and the person sees
"check whether it was saved" instead of "it was not saved". The same count keeps a request from
being replayed after one of its transactions committed (``crm_admin/web/middleware.py``).

The policy: ``CRM_DB_RETRY_ATTEMPTS`` attempts in all (4 by default), between them a pause that
doubles from 50 ms with jitter (50–100, 100–200, 200–400 ms): a certification conflict clears in
milliseconds, a node restart is covered by the load balancer sending the next connection elsewhere.
Each retry is logged (``crm_admin.retry``, WARNING, with the error code and where) and counted;
``counters()`` is what ``/readyz`` reports, so a cluster drill can tell what was retried.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

from crm_admin.settings import get_settings

log = logging.getLogger("crm_admin.retry")

# MySQL / MariaDB error codes
DEADLOCK = 1213  # ER_LOCK_DEADLOCK: an InnoDB deadlock, or a Galera certification failure at commit
LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT
WSREP_NOT_READY = 1047  # ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for application use"
SERVER_GONE = 2006  # CR_SERVER_GONE_ERROR
LOST_CONNECTION = 2013  # CR_SERVER_LOST: "Lost connection to MySQL server during query"

# The server says the transaction was rolled back (or never started): running it again is safe
# even when the error came from the COMMIT itself.
ROLLED_BACK_CODES = frozenset({DEADLOCK, LOCK_WAIT_TIMEOUT, WSREP_NOT_READY})
# The connection is gone or could not be made (server shutting down 1053, connection killed 1927,
# cannot connect 2002/2003, gone 2006, lost 2013/2055): whatever the transaction had done is rolled
# back by the server — unless the COMMIT was already sent. (MySQL's 4031, an idle client cut off, is a
# trigger error on MariaDB: left out; the pool's liveness check replaces idle connections anyway.)
CONNECTION_CODES = frozenset({1053, 1927, 2002, 2003, SERVER_GONE, LOST_CONNECTION, 2055})

Kind = Literal["rolled_back", "connection"]

# marks on an exception that leaves a retrying layer, so that an outer layer does not retry it again
EXHAUSTED = "exhausted"  # every attempt met a passing error: nothing was written
OUTCOME_UNKNOWN = "outcome_unknown"  # a commit may have happened: not run again
_MARK = "crm_retry"


def error_code(exc: BaseException) -> int | None:
    """The server's error number of a DBAPI error (PyMySQL's ``args[0]``), if any."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    code = args[0] if args else None
    return code if isinstance(code, int) else None


def classify(exc: BaseException) -> Kind | None:
    """What kind of passing error ``exc`` is, or None when it is not one (a refused value, a bug)."""
    if not isinstance(exc, DBAPIError):
        return None
    code = error_code(exc)
    if code in ROLLED_BACK_CODES:
        return "rolled_back"
    if code in CONNECTION_CODES or exc.connection_invalidated:
        # A server that does not answer within the read (or connect) timeout is frozen rather than
        # gone: another attempt would wait as long again, so the error page comes at once instead
        # (crm_admin/db.py bounds that wait). A connection cut by a node going down is retried.
        if "timed out" in str(getattr(exc, "orig", exc)).lower():
            return None
        return "connection"
    if isinstance(exc, OperationalError) and code is None:
        text = str(getattr(exc, "orig", exc)).lower()
        # SQLite: another writer held the database past the busy timeout; the statement or the
        # COMMIT did not happen and the transaction is rolled back by ``transaction()``
        if "database is locked" in text or "database table is locked" in text:
            return "rolled_back"
    return None


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is not None


def mark_of(exc: BaseException) -> str | None:
    """``EXHAUSTED`` / ``OUTCOME_UNKNOWN`` when a retrying layer has already given up on ``exc``."""
    value = getattr(exc, _MARK, None)
    return value if isinstance(value, str) else None


def outcome_unknown(exc: BaseException) -> bool:
    return mark_of(exc) == OUTCOME_UNKNOWN


def _mark(exc: BaseException, value: str) -> None:
    with contextlib.suppress(AttributeError):  # every DBAPIError takes attributes
        setattr(exc, _MARK, value)


# ----- the policy and the counters --------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    attempts: int = 4
    first_pause: float = 0.05
    max_pause: float = 1.0

    def pause(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1, 2, …): doubling, with half of it random."""
        base = min(self.max_pause, self.first_pause * (2 ** (retry - 1)))
        return base / 2 + _random.uniform(0, base / 2)


_random = secrets.SystemRandom()
_policy: Policy | None = None


def policy() -> Policy:
    global _policy
    if _policy is None:
        _policy = Policy(attempts=get_settings().db_retry_attempts)
    return _policy


def set_policy(value: Policy | None) -> None:
    """Replace the policy (tests; ``None``: read the settings again)."""
    global _policy
    _policy = value


_counts: Counter[str] = Counter()
_counts_lock = threading.Lock()


def count(event_name: str, where: str, exc: BaseException) -> None:
    code = error_code(exc)
    with _counts_lock:
        _counts[event_name] += 1
        _counts[f"{event_name}:{code if code is not None else type(exc).__name__}"] += 1
        _counts[f"{event_name}@{where}"] += 1


def counters() -> dict[str, int]:
    """Since the process started: ``retried`` (attempts run again), ``exhausted`` (gave up after the
    last attempt), ``outcome_unknown`` (not run again: a commit may have happened), each also per
    error code (``retried:1213``) and per place (``retried@web``, ``retried@job:care_birthday``)."""
    with _counts_lock:
        return dict(sorted(_counts.items()))


def reset_counters() -> None:
    with _counts_lock:
        _counts.clear()


# ----- what an attempt committed ------------------------------------------------------------------

@dataclass(eq=False)
class Attempt:
    """The commits started during one attempt that may have taken effect."""

    commits: int = 0
    _committing: set[int] = field(default_factory=set)

    @property
    def changed_something(self) -> bool:
        return self.commits > 0


_attempts: contextvars.ContextVar[tuple[Attempt, ...]] = contextvars.ContextVar("crm_retry_attempts",
                                                                               default=())


class attempt:
    """Track the commits of the code run inside (worker threads started from it included: they run
    in a copy of this context and share the ``Attempt`` object)."""

    def __enter__(self) -> Attempt:
        self._attempt = Attempt()
        self._token = _attempts.set((*_attempts.get(), self._attempt))
        return self._attempt

    def __exit__(self, *_exc: object) -> None:
        _attempts.reset(self._token)


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Commits made inside do not count as changes of the enclosing attempts: for bookkeeping that
    is harmless to repeat (a sign-in attempt counted for the per-address limit), so that it does not
    keep the request it belongs to from being run again."""
    token = _attempts.set(())
    try:
        yield
    finally:
        _attempts.reset(token)


@event.listens_for(Engine, "begin")
def _on_begin(conn: Connection) -> None:
    for a in _attempts.get():
        a._committing.discard(id(conn))


@event.listens_for(Engine, "commit")
def _on_commit(conn: Connection) -> None:
    # fires just before the COMMIT is sent: from here on it may take effect
    for a in _attempts.get():
        a.commits += 1
        a._committing.add(id(conn))


# Errors after which the connection's server is not one to keep talking to: a node not ready (it
# left the cluster, or is rejoining), a server shutting down, a connection killed. Treated like a lost
# connection: it is dropped, with every pooled connection older than it, and the next attempt opens
# a new one — through the load balancer, to a node that is ready.
DROP_CONNECTION_CODES = frozenset({WSREP_NOT_READY, 1053, 1927})


@event.listens_for(Engine, "handle_error")
def _on_error(ctx: ExceptionContext) -> None:
    args = getattr(ctx.original_exception, "args", ())
    if args and args[0] in DROP_CONNECTION_CODES and not ctx.is_disconnect:
        ctx.is_disconnect = True
    conn = ctx.connection
    if conn is None or ctx.statement is not None:
        return
    for a in _attempts.get():
        if id(conn) in a._committing:
            a._committing.discard(id(conn))
            if classify(ctx.sqlalchemy_exception or ctx.original_exception) == "rolled_back":
                a.commits -= 1  # the server refused the COMMIT: it did not take effect


# ----- running again ------------------------------------------------------------------------------

def call[T](fn: Callable[[], T], *, where: str, idempotent: bool = False, pol: Policy | None = None) -> T:
    """``fn()``, run again while it fails with a passing error and changed nothing.

    ``fn`` is one whole unit of work (it opens its session and commits). ``idempotent``: running it
    twice does no harm (unique keys, conditional updates), so it is run again even when a commit may
    have taken effect. Blocks between attempts: call it in a worker thread, never on the event loop.
    """
    pol = pol or policy()
    for number in range(1, pol.attempts + 1):
        with attempt() as current:
            try:
                return fn()
            except Exception as exc:
                if not should_retry(exc, current, where=where, number=number, pol=pol, idempotent=idempotent):
                    raise
        time.sleep(pol.pause(number))
    raise AssertionError("unreachable")  # pragma: no cover


def should_retry(exc: BaseException, current: Attempt, *, where: str, number: int, pol: Policy,
                 idempotent: bool = False) -> bool:
    """Whether the attempt ``number`` that raised ``exc`` may be run again; marks and counts ``exc``
    when it may not (the caller re-raises it)."""
    kind = classify(exc)
    if kind is None or mark_of(exc) is not None:
        return False
    code = error_code(exc)
    if current.changed_something and not idempotent:
        _mark(exc, OUTCOME_UNKNOWN)
        count(OUTCOME_UNKNOWN, where, exc)
        log.warning("%s: database error %s after a commit was sent: not run again (it may have taken "
                    "effect)", where, code or type(exc).__name__)
        return False
    if number >= pol.attempts:
        _mark(exc, EXHAUSTED)
        count(EXHAUSTED, where, exc)
        log.warning("%s: database error %s on attempt %d of %d: giving up", where,
                    code or type(exc).__name__, number, pol.attempts)
        return False
    count("retried", where, exc)
    log.warning("%s: database error %s on attempt %d of %d: running it again", where,
                code or type(exc).__name__, number, pol.attempts)
    return True


def retrying[**P, T](where: str, *, idempotent: bool = False) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of ``call`` for a function that is one unit of work."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            return call(lambda: fn(*args, **kwargs), where=where, idempotent=idempotent)

        return run

    return wrap

