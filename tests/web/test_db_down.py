"""Database outage: pages answer a clear Chinese 503 (never a stack trace) and the app recovers by itself.

The outage is simulated without touching the shared server: every new connection of the app's engine
is pointed at an address where no database answers (SQLite: an unopenable path; MariaDB: a closed
port), and the connections the pool already holds are killed (MariaDB: ``KILL CONNECTION`` from a
second connection; SQLite: the pool is emptied). Removing the redirection is "the database is back".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from crm_admin import db
from tests.conftest import ADMIN_PASSWORD, IS_MYSQL, TEST_DB_URL, login


def _kill_app_connections() -> int:
    """KILL every other connection to the test database, as a server restart would."""
    from sqlalchemy.engine import make_url

    name = make_url(TEST_DB_URL).database
    killer = create_engine(TEST_DB_URL, isolation_level="AUTOCOMMIT")
    killed = 0
    try:
        with killer.connect() as conn:
            ids = conn.execute(text(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db AND ID <> CONNECTION_ID()"
            ), {"db": name}).scalars().all()
            for pid in ids:
                try:
                    conn.execute(text(f"KILL CONNECTION {int(pid)}"))
                    killed += 1
                except Exception:  # already gone
                    pass
    finally:
        killer.dispose()
    return killed


class Outage:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.active = False

    def _redirect(self, dialect: Any, conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if not self.active:
            return
        if IS_MYSQL:
            cparams["host"], cparams["port"], cparams["connect_timeout"] = "127.0.0.1", 1, 2
        else:
            cargs[:] = ["/nonexistent-crm-dir/down.sqlite3"]

    def start(self) -> None:
        self.active = True
        if IS_MYSQL:
            assert _kill_app_connections() >= 0
        else:
            self.engine.dispose()

    def end(self) -> None:
        self.active = False


@pytest.fixture
def outage(engine: Engine) -> Iterator[Outage]:
    eng = db.get_engine()
    o = Outage(eng)
    engines = {eng, db.probe_engine()}  # the pages' engine and /readyz's own
    for e in engines:
        event.listen(e, "do_connect", o._redirect)
    yield o
    o.end()
    for e in engines:
        event.remove(e, "do_connect", o._redirect)


def _is_friendly_503(response: Any) -> bool:
    body = response.text
    return (
        response.status_code == 503
        and "系统暂时不可用" in body
        and "Traceback" not in body
        and "OperationalError" not in body
        and "sqlalchemy" not in body.lower()
    )


def test_pages_answer_503_while_the_database_is_down_and_recover(
    outage: Outage, admin_client: Any, make_client: Any
) -> None:
    assert admin_client.get("/admin/customer/list").status_code == 200
    anonymous = make_client()
    page = anonymous.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text)

    outage.start()
    r = admin_client.get("/admin/customer/list")
    assert _is_friendly_503(r), (r.status_code, r.text[:500])
    assert r.headers.get("retry-after")
    assert re.search(r"[0-9a-f]{12}", r.text)  # the request id, to quote to the administrator
    r = admin_client.get("/admin/linkman/list")
    assert _is_friendly_503(r)

    # The login page itself may render without the database; signing in needs it: 503, not 500.
    r = anonymous.get("/admin/login")
    assert r.status_code in (200, 503) and "Traceback" not in r.text
    r = anonymous.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                             "csrf_token": token.group(1) if token else ""},
                       follow_redirects=False)
    assert _is_friendly_503(r), (r.status_code, r.text[:500])

    assert admin_client.get("/readyz").status_code == 503
    assert admin_client.get("/healthz").status_code == 200
    r = admin_client.get("/admin/customer/list", headers={"accept": "application/json"})
    assert r.status_code == 503 and "数据库" in r.json()["detail"]

    outage.end()  # the database is back: no restart, the next request works
    assert admin_client.get("/readyz").status_code == 200
    r = admin_client.get("/admin/customer/list")
    assert r.status_code == 200 and "客户" in r.text
    assert login(make_client(), "admin", ADMIN_PASSWORD).status_code == 302


def test_pooled_connections_killed_by_a_restart_are_replaced(engine: Engine, admin_client: Any) -> None:
    """A database restart kills the pool's connections; pre-ping replaces them without a single error."""
    assert admin_client.get("/admin/customer/list").status_code == 200
    if IS_MYSQL:
        assert _kill_app_connections() >= 1
    else:
        db.get_engine().dispose()
    for _ in range(3):
        assert admin_client.get("/admin/customer/list").status_code == 200
