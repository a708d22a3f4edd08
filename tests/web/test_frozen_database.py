"""A frozen database (issue 11, hole 9): /readyz says 503 within 2 s, pages give the friendly 503
after the read timeout, and everything recovers once the database answers again.

A server stopped by SIGSTOP keeps its connections open and accepts new ones, but never answers. The
shared MariaDB server must not be stopped, so the app's connections go through a forwarder started
by the test that can be frozen the same way: it stops passing bytes in either direction without
closing anything.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from crm_admin import db
from crm_admin.web.middleware import is_database_down
from tests.conftest import IS_MYSQL, TEST_DB_URL

# short timeouts for the app's connections during the test (production: 5 / 30 / 30 s)
CONNECT, READ = 1, 2


class FreezableForwarder:
    """TCP forwarder 127.0.0.1:<port> → the database; ``freeze()`` holds every byte, ``thaw()`` lets
    them go on. Connections stay open either way, new ones are accepted, as with a stopped server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._thawed = threading.Event()
        self._thawed.set()
        self._closing = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def close(self) -> None:
        self._closing = True
        self._thawed.set()
        for s in [self.listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closing:
                self._thawed.wait()
                data = src.recv(65536)
                if not data:
                    break
                self._thawed.wait()  # frozen: what was sent stays here, unanswered
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


mariadb_only = pytest.mark.skipif(not IS_MYSQL, reason="MariaDB only (set CRM_TEST_DATABASE_URL)")


@pytest.fixture
def forwarder(engine: Engine) -> Iterator[FreezableForwarder]:
    """The app's pool and /readyz's probe, both connecting through a freezable forwarder."""
    url = make_url(TEST_DB_URL)
    fwd = FreezableForwarder(url.host or "127.0.0.1", url.port or 3306)
    pages, probe = db.get_engine(), db.probe_engine()

    def pages_through(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.update(host="127.0.0.1", port=fwd.port, connect_timeout=CONNECT, read_timeout=READ,
                       write_timeout=READ)

    def probe_through(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.update(host="127.0.0.1", port=fwd.port)  # its own 1.5 s timeouts stay

    event.listen(pages, "do_connect", pages_through)
    event.listen(probe, "do_connect", probe_through)
    pages.dispose()  # pooled connections went straight to the server
    yield fwd
    fwd.thaw()
    event.remove(pages, "do_connect", pages_through)
    event.remove(probe, "do_connect", probe_through)
    pages.dispose()
    fwd.close()


def _timed(client: Any, url: str) -> tuple[Any, float]:
    started = time.monotonic()
    r = client.get(url)
    return r, time.monotonic() - started


def _friendly_503(r: Any) -> bool:
    return (r.status_code == 503 and "系统暂时不可用" in r.text and bool(r.headers.get("retry-after"))
            and not any(w in r.text for w in ("Traceback", "OperationalError", "pymysql", "SQL")))


@mariadb_only
def test_a_frozen_database_is_reported_quickly_and_the_app_recovers(forwarder: FreezableForwarder,
                                                                    admin_client: Any) -> None:
    r = admin_client.get("/admin/customer/list")
    assert r.status_code == 200
    assert admin_client.get("/readyz").status_code == 200
    assert forwarder.accepted >= 2  # pages and probe both went through the forwarder

    forwarder.freeze()
    try:
        r, took = _timed(admin_client, "/readyz")
        assert r.status_code == 503 and r.json()["database"] == "down"
        assert took < 2.0, took

        # the pooled connection's liveness check waits READ, then one fresh connection's greeting READ
        r, took = _timed(admin_client, "/admin/customer/list")
        assert _friendly_503(r), (r.status_code, r.text[:500])
        assert READ <= took < 2 * READ + CONNECT + 2, took

        r, took = _timed(admin_client, "/admin/product/list")
        assert _friendly_503(r) and took < 2 * READ + CONNECT + 2, took

        # probes never pile up behind a frozen database
        for _ in range(3):
            r, took = _timed(admin_client, "/readyz")
            assert r.status_code == 503 and took < 2.0, took
    finally:
        forwarder.thaw()

    deadline = time.monotonic() + 10
    while admin_client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readiness did not come back"
        time.sleep(0.2)
    r = admin_client.get("/admin/customer/list")
    assert r.status_code == 200 and "客户" in r.text
    assert admin_client.get("/admin/product/list").status_code == 200


@mariadb_only
def test_a_read_timeout_counts_as_the_database_being_down() -> None:
    """PyMySQL's read timeout is an OperationalError the error pages treat as "down" (503), and long
    work has room: the job timeouts let the same statement finish."""
    short = db.make_engine(TEST_DB_URL, timeouts=db.Timeouts(connect=1, read=1, write=1, pool=1))
    try:
        with pytest.raises(OperationalError) as timed_out, short.connect() as conn:
            conn.execute(text("SELECT SLEEP(2)"))
        assert is_database_down(timed_out.value)
    finally:
        short.dispose()
    with db.transaction(long_running=True) as session:
        assert session.execute(text("SELECT SLEEP(2)")).scalar() == 0


def test_timeouts_are_set_on_every_connection() -> None:
    """Pages get the short ones, jobs and the command line the long ones, /readyz its own."""
    from crm_admin.settings import get_settings

    settings = get_settings()
    url = "mysql+pymysql://crm@db.example.internal:3306/crm"
    pages = db.make_engine(url)
    jobs = db.make_engine(url, timeouts=db.Timeouts.for_jobs())
    probe = db.make_probe_engine(make_url(url))
    try:
        args = pages.dialect.create_connect_args(pages.url)[1]  # what the URL gives
        assert "read_timeout" not in args
        assert pages.pool.timeout() == settings.db_pool_timeout  # type: ignore[attr-defined]
        for engine, read in ((pages, settings.db_read_timeout), (jobs, settings.db_job_timeout),
                             (probe, db.PROBE_TIMEOUTS.read)):
            seen: dict[str, Any] = {}

            def capture(_d: Any, _r: Any, _c: Any, cparams: dict[str, Any], seen: dict[str, Any] = seen) -> Any:
                seen.update(cparams)
                raise OperationalError("connect", {}, Exception("not really connecting"))

            event.listen(engine, "do_connect", capture)
            with pytest.raises(OperationalError):
                engine.connect()
            assert seen["read_timeout"] == read and seen["write_timeout"] == read, seen
            assert seen["connect_timeout"] == (db.PROBE_TIMEOUTS.connect if engine is probe
                                               else settings.db_connect_timeout)
    finally:
        for engine in (pages, jobs, probe):
            engine.dispose()
    assert settings.db_read_timeout == 30 and settings.db_job_timeout == 600


def test_readiness_of_a_missing_sqlite_file_is_down_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "gone.sqlite3"
    probe = db.make_probe_engine(make_url(f"sqlite:///{missing}"))
    try:
        with pytest.raises(OperationalError), probe.connect() as conn:
            conn.execute(text("SELECT count(*) FROM sqlite_master"))
        assert not missing.exists()
        sqlite3.connect(missing).close()  # an (empty) database file is there: ready
        with probe.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sqlite_master")).scalar() == 0
    finally:
        probe.dispose()


@pytest.mark.skipif(IS_MYSQL, reason="SQLite only")
def test_readiness_of_a_locked_sqlite_file_is_down_within_two_seconds(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # rollback-journal mode: nobody else may even read
    probe = db.make_probe_engine(make_url(f"sqlite:///{path}"))
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), probe.connect() as conn:
            conn.execute(text("SELECT count(*) FROM sqlite_master"))
        assert time.monotonic() - started < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        probe.dispose()


@pytest.mark.parametrize(("error", "down"), [
    (OperationalError("SELECT 1", {}, Exception(2013, "Lost connection to MySQL server during query (timed out)")),
     True),
    (OperationalError("SELECT 1", {}, Exception(2003, "Can't connect to MySQL server")), True),
    (OperationalError("SELECT 1", {}, Exception(1205, "Lock wait timeout exceeded")), True),
    (OperationalError("SELECT 1", {}, Exception("unable to open database file")), True),  # SQLite
    (OperationalError("SELECT 1", {}, Exception(1054, "Unknown column")), False),
    (OperationalError("SELECT 1", {}, Exception(1366, "Incorrect decimal value")), False),
])
def test_only_an_unreachable_database_is_down(error: OperationalError, down: bool) -> None:
    """503 "try again later" only when waiting helps; a statement the server refuses is a plain error."""
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    assert is_database_down(error) is down
    assert is_database_down(PoolTimeoutError("QueuePool limit reached"))
