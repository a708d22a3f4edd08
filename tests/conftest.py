"""Test fixtures shared by every module's tests.

The schema is built with the real migrations, on SQLite by default or on the MariaDB/MySQL database
named by ``CRM_TEST_DATABASE_URL`` (dropped and recreated at the start of the run). Every test starts
from the seeded state: rows written by a test are removed after it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.engine import make_url

_TMP = Path(tempfile.mkdtemp(prefix="crm-test-"))
TEST_DB_URL = os.environ.get("CRM_TEST_DATABASE_URL") or f"sqlite:///{_TMP / 'test.sqlite3'}"
if os.environ.get("PYTEST_XDIST_WORKER") and TEST_DB_URL.startswith("mysql"):
    # tests run in parallel workers: each has a database of its own (``crm_test`` → ``crm_test_gw0``…)
    _url = make_url(TEST_DB_URL)
    TEST_DB_URL = _url.set(database=f"{_url.database}_{os.environ['PYTEST_XDIST_WORKER']}").render_as_string(
        hide_password=False)
os.environ["CRM_DATABASE_URL"] = TEST_DB_URL
os.environ["CRM_DATA_DIR"] = str(_TMP)
os.environ.setdefault("CRM_SECRET_KEY", "test-secret-key-" + "x" * 32)
os.environ["CRM_SCHEDULER_ENABLED"] = "false"
os.environ["CRM_LOGIN_IP_MAX_PER_MINUTE"] = "10000"
# a token password-hashing cost: the suite signs in and creates users thousands of times
os.environ.setdefault("CRM_PASSWORD_HASH_MEMORY_KIB", "64")
os.environ.setdefault("CRM_PASSWORD_HASH_PASSES", "1")
os.environ.pop("CRM_ENV", None)

from crm_admin import db  # noqa: E402
from crm_admin.settings import get_settings  # noqa: E402

IS_MYSQL = TEST_DB_URL.startswith("mysql")
# Shared fixtures of every module's tests: ``world`` (two teams, their managers, a lead, a read-only
# user) and the demo company (``demo_data``).
pytest_plugins = ("tests.company", "tests.demo_data")
ADMIN_PASSWORD = "Admin12345"
PASSWORD = "Passw0rd!x"


def _recreate_mysql_database(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    assert name and re.fullmatch(r"[A-Za-z0-9_]+", name), "test database name must be a plain word"
    server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    server.dispose()


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.migrate import upgrade
    from crm_admin.seeding import seed

    get_settings.cache_clear()
    if IS_MYSQL:
        _recreate_mysql_database(TEST_DB_URL)
    eng = db.configure(TEST_DB_URL)
    upgrade(eng)
    with acting_as(SYSTEM), db.transaction() as session:
        seed(session, admin_password=ADMIN_PASSWORD)
        _unforce_admin(session)
    _SEEDED.clear()
    _SEEDED.extend(_rows_of_every_table(eng))
    yield eng
    eng.dispose()


# Every table's rows right after the seed (the state each test starts from), read once per worker.
_SEEDED: list[tuple[Any, list[dict[str, Any]]]] = []
_RESETS = itertools.count(1)


def _rows_of_every_table(engine: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    import crm_admin.models  # noqa: F401
    from crm_admin.db import Base

    with engine.connect() as conn:
        return [(table, [dict(row) for row in conn.execute(select(table)).mappings()])
                for table in Base.metadata.sorted_tables]


def _unforce_admin(session: Any) -> None:
    from crm_admin.accounts.models import SysUser

    session.execute(
        SysUser.__table__.update().where(SysUser.username == "admin").values(must_change_password=False)
    )


@pytest.fixture(autouse=True)
def clean_db(engine: Any) -> Iterator[None]:
    yield
    _reset(engine)


def _reset(engine: Any) -> None:
    """Back to the seeded state: every table emptied and refilled with the rows it had right after
    the seed (copying them back is twenty times faster than seeding again, audit chain included)."""
    from crm_admin.core.permissions import POLICY_VERSION_KEY, gate
    from crm_admin.db import Base

    with engine.begin() as conn:
        if IS_MYSQL:
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        # users and departments point at each other: unlink them before either is emptied
        conn.execute(Base.metadata.tables["sys_user"].update().values(dept_id=None))
        conn.execute(Base.metadata.tables["sys_dept"].update().values(parent_id=None, leader_id=None))
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        for table, rows in _SEEDED:
            if rows:
                conn.execute(insert(table), rows)
        # a policy version never seen before: every process that cached the policy reads it again
        meta = Base.metadata.tables["sys_meta"]
        conn.execute(update(meta).where(meta.c.key == POLICY_VERSION_KEY)
                     .values(value=meta.c.value + next(_RESETS)))
        if IS_MYSQL:
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    gate.forget()
    _reset_login_throttle()


def _reset_login_throttle() -> None:
    try:
        from crm_admin.accounts import throttle  # type: ignore[attr-defined]
    except ImportError:
        return
    reset = getattr(throttle, "reset", None)
    if reset:
        reset()


@pytest.fixture(scope="session")
def app(engine: Any) -> Any:
    from crm_admin.web.app import create_app

    get_settings.cache_clear()
    return create_app()


@pytest.fixture(scope="session")
def live_server(app: Any) -> Iterator[str]:
    """The app served by uvicorn on a free local port, for clients in other processes (a browser, a script)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("测试服务器未能启动")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def make_client(app: Any) -> Iterator[Callable[[], Any]]:
    from starlette.testclient import TestClient

    made: list[Any] = []

    def factory() -> Any:
        c = TestClient(app, base_url="http://testserver")
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


_TOKENS = re.compile(r'(name="csrf_token" value|name="csrf-token" content)="[^"]*"')


def without_tokens(html: str) -> str:
    """The page without its random CSRF tokens (which may spell "SQL" by chance), for leak checks."""
    return _TOKENS.sub("", html)


def csrf_token(client: Any) -> str:
    """The CSRF token of the client's session, read from a page that carries it."""
    html = client.get("/admin/account/password").text
    match = re.search(r'name="csrf_token" value="([^"]*)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]*)"', html
    )
    return match.group(1) if match else ""


def login(client: Any, username: str, password: str) -> Any:
    page = client.get("/admin/login")
    token = ""
    match = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    if match:
        token = match.group(1)
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


@pytest.fixture
def make_user(engine: Any) -> Callable[..., Any]:
    from crm_admin.accounts.service import create_user
    from crm_admin.core.context import SYSTEM, acting_as

    def factory(username: str, roles: tuple[str, ...] | list[str] = ("manager",), *,
                dept_id: int | None = None, real_name: str = "", password: str = PASSWORD) -> Any:
        with acting_as(SYSTEM), db.transaction() as session:
            return create_user(session, username=username, password=password, roles=list(roles),
                               dept_id=dept_id, real_name=real_name or username,
                               must_change_password=False)

    return factory


@pytest.fixture
def admin_client(make_client: Callable[[], Any]) -> Any:
    c = make_client()
    r = login(c, "admin", ADMIN_PASSWORD)
    assert r.status_code == 302, r.text
    return c


@pytest.fixture
def login_as(make_client: Callable[[], Any]) -> Callable[..., Any]:
    def factory(username: str, password: str = PASSWORD) -> Any:
        c = make_client()
        r = login(c, username, password)
        assert r.status_code == 302, r.text
        return c

    return factory


@contextlib.contextmanager
def statements_sent(*, any_engine: bool = False) -> Iterator[list[str]]:
    """The SQL statements the application's engine sends inside the ``with`` block, in order
    (``any_engine``: of every engine of the process — a view keeps the session maker it was built with,
    which after an earlier test replaced the engine is not ``db.get_engine()``'s)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    target: Any = Engine if any_engine else db.get_engine()
    event.listen(target, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", keep)
