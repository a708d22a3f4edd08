"""Databases beside the test database to restore into, and ways to compare them.

On MariaDB an extra database is named after the test database (``<test db>_<suffix>``), and so are the
staging and side databases a restore creates (``<that>__restore_…``, ``<that>__before_…``): all of
them are dropped before and after. On SQLite they are files in the test's folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, column, create_engine, inspect, select, table, text
from sqlalchemy.engine import make_url

from tests.conftest import IS_MYSQL, TEST_DB_URL


def database_url(suffix: str, folder: Path) -> str:
    """An empty database named after the test database (MariaDB) or a file in ``folder`` (SQLite)."""
    if not IS_MYSQL:
        return f"sqlite:///{folder / (suffix + '.sqlite3')}"
    url = make_url(TEST_DB_URL)
    name = f"{url.database}_{suffix}"
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    drop_database_family(name)
    return url.set(database=name).render_as_string(hide_password=False)


def _server() -> Engine:
    return create_engine(make_url(TEST_DB_URL).set(database=""), isolation_level="AUTOCOMMIT")


def drop_database_family(name: str) -> None:
    """The database and every helper database a restore into it may have left."""
    server = _server()
    try:
        with server.connect() as conn:
            for schema in [name, *helper_databases(conn, name)]:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{schema}`"))
    finally:
        server.dispose()


def helper_databases(conn: Any, name: str) -> list[str]:
    pattern = name.replace("_", "\\_") + "\\_\\_%"
    return list(conn.execute(text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"),
                             {"p": pattern}).scalars())


def leftovers(url: str) -> list[str]:
    """Staging or side copies a restore into ``url`` left behind (there should be none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = Path(str(parsed.database))
        return sorted(p.name for p in target.parent.glob(f".{target.name}.restore-*"))
    server = _server()
    try:
        with server.connect() as conn:
            return helper_databases(conn, str(parsed.database))
    finally:
        server.dispose()


@pytest.fixture
def make_database(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def factory(suffix: str) -> str:
        made.append(suffix)
        return database_url(suffix, tmp_path)

    yield factory
    if IS_MYSQL:
        base = make_url(TEST_DB_URL).database
        for suffix in made:
            drop_database_family(f"{base}_{suffix}")


def snapshot(url_or_engine: str | Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        insp = inspect(engine)
        result: dict[str, list[tuple[Any, ...]]] = {}
        with engine.connect() as conn:
            for name in sorted(insp.get_table_names()):
                pk = insp.get_pk_constraint(name)["constrained_columns"]
                cols = [c["name"] for c in insp.get_columns(name)]
                rows = conn.execute(select(table(name, *[column(c) for c in cols]))
                                    .order_by(*[column(c) for c in (pk or cols)])).all()
                result[name] = [tuple(r) for r in rows]
        return result
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def checksums(url: str) -> dict[str, tuple[int, str]]:
    """Per table: (row count, SHA-256 of its rows in primary-key order)."""
    return {name: (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
            for name, rows in snapshot(url).items()}
