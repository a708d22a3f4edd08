"""What a MariaDB Galera cluster needs of the schema and the code: every table has a primary key (rows
without one cannot be replicated reliably) and is InnoDB, and nothing takes a lock that only one node
knows about (``LOCK TABLES``, ``GET_LOCK``: not replicated; the scheduler's lease is a row instead)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, inspect, text

import crm_admin.models  # noqa: F401  (every table registered)
from crm_admin.db import Base, make_engine
from crm_admin.migrate import upgrade
from tests.conftest import IS_MYSQL

PACKAGE = Path(__file__).resolve().parents[2] / "crm_admin"


def _tables_without_primary_key(engine: Engine) -> list[str]:
    found = inspect(engine)
    return sorted(name for name in found.get_table_names()
                  if not found.get_pk_constraint(name).get("constrained_columns"))


def test_every_model_table_has_a_primary_key() -> None:
    assert Base.metadata.tables, "no tables registered"
    missing = sorted(t.name for t in Base.metadata.tables.values() if not t.primary_key.columns)
    assert missing == [], f"tables without a primary key: {missing}"


def test_every_table_the_migrations_create_has_a_primary_key(tmp_path: Path) -> None:
    """Run every migration into a new SQLite database and look at what is there (alembic_version too)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    try:
        upgrade(engine)
        names = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= names and "alembic_version" in names
        assert _tables_without_primary_key(engine) == []
    finally:
        engine.dispose()


def test_the_test_database_has_a_primary_key_on_every_table(engine: Engine) -> None:
    """The database the suite runs on (SQLite, or MariaDB with ``CRM_TEST_DATABASE_URL``), as the
    migrations built it."""
    assert _tables_without_primary_key(engine) == []
    if IS_MYSQL:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'")).all()
        assert rows and {name: eng for name, eng in rows if eng != "InnoDB"} == {}


# statements whose lock lives on one server only: a Galera cluster does not replicate them
_NODE_LOCAL_LOCKS = re.compile(r"\b(LOCK\s+TABLES?|UNLOCK\s+TABLES|GET_LOCK|RELEASE_LOCK|IS_FREE_LOCK|"
                               r"IS_USED_LOCK|FLUSH\s+TABLES\s+WITH\s+READ\s+LOCK)\b", re.I)


def test_no_node_local_locks_in_the_code() -> None:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _NODE_LOCAL_LOCKS.search(line):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert hits == [], "locks a Galera cluster does not replicate:\n" + "\n".join(hits)
