"""Database plumbing shared by every module: the declarative base, column types, engine and sessions.

Timeouts: PyMySQL waits forever by default, so a frozen (not dead) server would hang every request.
Each connection gets connect/read/write timeouts (``CRM_DB_*_TIMEOUT``). Web requests use the short
ones: every page's statements take well under a second (README, 性能) and an export streams its rows
(each read is short), so 30 s cuts nothing legitimate, and a frozen database becomes the friendly
503 page — after at most twice the read timeout plus the connect timeout (the pool's liveness check
of a kept connection, then one fresh connection); a request finding every pooled connection stuck
waits ``CRM_DB_POOL_TIMEOUT`` for one, then answers 503 as well. Long statements are legitimate in scheduled jobs
and command-line tasks (migrations building indexes over a million rows, data generation, the
benchmark, the nightly churn evaluation over every customer): those run with ``CRM_DB_JOB_TIMEOUT``
(``transaction(long_running=True)``; the command line configures its whole process that way), still
bounded, so that a frozen database fails a nightly job instead of hanging it. ``/readyz`` probes
through a pool-less engine of its own (1 s timeouts, 1.5 s deadline): it answers within 2 s and
never waits for, or holds, a connection of the pool that serves pages.

Behind a load balancer (a Galera cluster behind HAProxy): every pooled connection is checked before
use (``pool_pre_ping``; a failed check also retires every connection older than it, so a dead node's
connections go at once) and replaced after ``CRM_DB_POOL_RECYCLE`` seconds (600): well below the
balancer's idle cut-off, and a connection opened on a fail-over node moves back to the primary
within that time. Work that meets a passing error (a deadlock, a node leaving) is run again:
``run_in_transaction`` here, ``crm_admin/retry.py`` for what counts as passing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    DateTime,
    Engine,
    MetaData,
    Numeric,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from crm_admin import retry
from crm_admin.settings import get_settings

# Short, predictable constraint names: MySQL limits identifiers to 64 characters.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

# A value must fit its column before it is written (core/limits.py reads the limits from the columns);
# a bound the business needs is declared on the column: ``mapped_column(..., info={"min": 0})``.
MONEY = Numeric(14, 2, asdecimal=True)
ZERO = Decimal("0.00")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC (portable across SQLite and MySQL DATETIME); returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), Decimal: MONEY}

    # Resource name used by permissions and audit (defaults to the table name).
    __resource__: str = ""
    # How rows of this model are scoped: "owner" (manager_id), "customer" (customer_id), or "" (global).
    __scope__: str = ""


class Timestamped:
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


@dataclass(frozen=True)
class Timeouts:
    """Seconds a connection waits: to connect, for an answer, to send; and for a free pooled connection."""

    connect: float
    read: float
    write: float
    pool: float

    @classmethod
    def for_requests(cls) -> Timeouts:
        s = get_settings()
        return cls(s.db_connect_timeout, s.db_read_timeout, s.db_write_timeout, s.db_pool_timeout)

    @classmethod
    def for_jobs(cls) -> Timeouts:
        s = get_settings()
        return cls(s.db_connect_timeout, s.db_job_timeout, s.db_job_timeout, s.db_pool_timeout)


# /readyz must answer within 2 s even when the database is frozen
PROBE_TIMEOUTS = Timeouts(connect=1.0, read=1.0, write=1.0, pool=1.0)
PROBE_DEADLINE = 1.5


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def make_engine(url: str, *, pool_size: int = 10, timeouts: Timeouts | None = None) -> Engine:
    timeouts = timeouts or Timeouts.for_requests()
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2,
                      pool_recycle=get_settings().db_pool_recycle, pool_timeout=timeouts.pool)
        if is_mysql(url):
            kwargs["connect_args"] = {
                "charset": "utf8mb4", "connect_timeout": timeouts.connect,
                "read_timeout": timeouts.read, "write_timeout": timeouts.write,
            }
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _sqlite_pragmas(engine)
    return engine


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


# ----- time spent in the database by one request (``Server-Timing``) -------------------------------
# A request that starts the clock gets [seconds, statements] added to by every statement it runs, in
# its own task and in the worker threads it hands work to (they run in a copy of its context, which
# holds the same list).

_sql_clock: ContextVar[list[float] | None] = ContextVar("crm_sql_clock", default=None)
_clock_installed = False


def install_sql_clock() -> None:
    """Time the statements of the requests that start the clock (once per process)."""
    global _clock_installed
    if _clock_installed:
        return
    _clock_installed = True

    @event.listens_for(Engine, "before_cursor_execute")
    def _started(conn: Any, *_args: Any) -> None:
        if _sql_clock.get() is not None:
            conn.info["crm_sql_started"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def _finished(conn: Any, *_args: Any) -> None:
        clock = _sql_clock.get()
        started = conn.info.pop("crm_sql_started", None)
        if clock is not None and started is not None:
            clock[0] += time.perf_counter() - started  # the statement and reading its rows (the driver)
            clock[1] += 1


def start_sql_clock() -> list[float]:
    """From now on, this request's statements add their time and number to the returned list."""
    clock = [0.0, 0.0]
    _sql_clock.set(clock)
    return clock


_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
_job_session_factory: sessionmaker[Session] | None = None
_probe_engine: Engine | None = None
_long_running_process = False


def configure(url: str | None = None, *, pool_size: int | None = None, long_running: bool = False) -> Engine:
    """(Re)bind the process-wide engine and session factory.

    ``long_running``: the process does long work only (the command line): every connection gets the
    job timeouts.
    """
    global _engine, _session_factory, _job_session_factory, _probe_engine, _long_running_process

    settings = get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for old in (_engine, _job_session_factory.kw.get("bind") if _job_session_factory else None, _probe_engine):
        if old is not None:
            old.dispose()
    _long_running_process = long_running
    timeouts = Timeouts.for_jobs() if long_running else Timeouts.for_requests()
    _engine = make_engine(url, pool_size=pool_size or settings.db_pool_size, timeouts=timeouts)
    _session_factory = sessionmaker(bind=_engine, autoflush=False, expire_on_commit=False)
    _job_session_factory = None
    _probe_engine = None
    return _engine


def get_engine() -> Engine:
    if _engine is None:
        configure()
    assert _engine is not None
    return _engine


def session_factory() -> sessionmaker[Session]:
    if _session_factory is None:
        configure()
    assert _session_factory is not None
    return _session_factory


def job_session_factory() -> sessionmaker[Session]:
    """Sessions for long work inside a serving process (scheduled jobs): the job timeouts.

    A small pool of its own, created on first use; the command line's process-wide engine already
    has these timeouts, and an in-memory SQLite database cannot be opened twice, so both use the
    main one."""
    global _job_session_factory
    main = session_factory()
    if _long_running_process or ":memory:" in str(get_engine().url):
        return main
    if _job_session_factory is None:
        engine = make_engine(get_engine().url.render_as_string(hide_password=False), pool_size=2,
                             timeouts=Timeouts.for_jobs())
        _job_session_factory = sessionmaker(bind=engine, autoflush=False, expire_on_commit=False)
    return _job_session_factory


def probe_engine() -> Engine:
    """The engine /readyz asks (``make_probe_engine`` of the configured database), made on first use."""
    global _probe_engine
    if _probe_engine is None:
        _probe_engine = make_probe_engine(get_engine().url)
    return _probe_engine


def make_probe_engine(url: URL) -> Engine:
    """No pool (each probe connects afresh and holds nothing) and ``PROBE_TIMEOUTS``.

    SQLite is opened read-write without creating the file: a missing database file is "down", not a
    new empty database; a locked one is "down" after the probe's busy timeout."""
    backend = url.get_backend_name()
    t = PROBE_TIMEOUTS
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            return get_engine()
        path = quote(Path(url.database).resolve().as_posix(), safe="/")
        return create_engine(f"sqlite:///file:{path}?mode=rw&uri=true", poolclass=NullPool,
                             connect_args={"timeout": t.read})
    connect_args = ({"connect_timeout": t.connect, "read_timeout": t.read, "write_timeout": t.write}
                    if backend in ("mysql", "mariadb") else {})
    return create_engine(url.render_as_string(hide_password=False), poolclass=NullPool,
                         connect_args=connect_args)


def check_ready() -> None:
    """Raises unless the database answers a query (within ``PROBE_TIMEOUTS``)."""
    engine = probe_engine()
    query = "SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite" else "SELECT 1"
    with engine.connect() as conn:
        conn.execute(text(query)).scalar()


@contextmanager
def transaction(*, long_running: bool = False) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error.

    ``long_running``: work whose single statements may legitimately take minutes (scheduled jobs)."""
    session = (job_session_factory() if long_running else session_factory())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def run_in_transaction[T](fn: Callable[[Session], T], *, where: str, long_running: bool = False,
                          idempotent: bool = False) -> T:
    """``fn(session)`` as one unit of work (``transaction()``), run again on a fresh session while it
    fails with a passing database error that left nothing written (``crm_admin/retry.py``).

    ``fn`` must do all of its work through the session it is given (its audit rows included) and
    have no other effect that a second run would repeat. ``idempotent``: a second run does no harm
    even if the first one's commit took effect (unique keys, conditional updates), so it is run again
    also when the connection was lost during the COMMIT. ``where`` names the work in logs and counters.
    Blocks between attempts: call it from a worker thread or a job, never on the event loop.
    """

    def unit() -> T:
        with transaction(long_running=long_running) as session:
            return fn(session)

    return retry.call(unit, where=where, idempotent=idempotent)
