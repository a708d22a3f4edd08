"""Migrations: one head, `upgrade head` from an empty database, and a schema identical to the models.

This guards every module: a model change without its migration (or the reverse) fails here, with the
difference printed, on SQLite and on MariaDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

import crm_admin.models  # noqa: F401  (every table registered)
from crm_admin.db import Base, make_engine
from crm_admin.migrate import alembic_config, is_empty, upgrade
from tests.conftest import IS_MYSQL, TEST_DB_URL


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(TEST_DB_URL))


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return list(compare_metadata(ctx, Base.metadata))


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    if not IS_MYSQL:
        eng = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        yield eng
        eng.dispose()
        return
    url = make_url(TEST_DB_URL)
    name = f"{url.database}_mig"
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    server = create_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    eng = make_engine(url.set(database=name).render_as_string(hide_password=False))
    yield eng
    eng.dispose()
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


def test_exactly_one_head() -> None:
    heads = _script().get_heads()
    assert len(heads) == 1, f"多个迁移 head:{heads}(每人只填自己的修订文件,不要新建修订)"


def test_revisions_form_one_line() -> None:
    revisions = list(_script().walk_revisions())
    assert [r for r in revisions if r.down_revision is None] == [revisions[-1]]
    assert all(not r.is_merge_point for r in revisions)


def test_upgrade_head_from_empty(empty_engine: Engine) -> None:
    assert is_empty(empty_engine)
    upgrade(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with empty_engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == _script().get_current_head()
    assert schema_diff(empty_engine) == []
    upgrade(empty_engine)  # a second run is a no-op


def test_migrated_test_database_matches_models(engine: Engine) -> None:
    diff = schema_diff(engine)
    assert diff == [], "模型与迁移不一致:\n" + "\n".join(map(str, diff))


@pytest.mark.skipif(not IS_MYSQL, reason="MariaDB only")
def test_mariadb_charset_and_casbin_collation(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )).all()
        collations = dict(rows)
        assert all(c.startswith("utf8mb4") for c in collations.values()), collations
        assert collations["casbin_rule"] == "utf8mb4_bin"
        uniques = inspect(conn).get_unique_constraints("casbin_rule") + [
            i for i in inspect(conn).get_indexes("casbin_rule") if i.get("unique")
        ]
        assert uniques, "casbin_rule 需要唯一索引"
        longest = conn.execute(text(
            "SELECT MAX(LENGTH(INDEX_NAME)) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
        )).scalar()
        assert longest <= 64


def test_0016_an_existing_chain_verifies_after_the_upgrade(empty_engine: Engine) -> None:
    """Rows chained by the old writer (in id order, under a lock) keep their hashes and take their
    seal numbers in that order; the chain verifies, and new rows are sealed after it."""
    import datetime as dt

    from crm_admin.core import audit

    upgrade(empty_engine, "0014")
    table = Base.metadata.tables["audit_log"]
    meta = Base.metadata.tables["sys_meta"]
    prev = ""
    with empty_engine.begin() as conn:
        for i in range(5):
            row = {"occurred_at": dt.datetime(2026, 1, 1, 8, i, tzinfo=dt.UTC), "user_id": None,
                   "username": "old", "ip": "", "user_agent": "", "action": "export", "resource": "customer",
                   "resource_id": str(i), "changes": {"n": i} if i % 2 else None, "detail": f"旧记录 {i}",
                   "success": True}
            digest = audit._row_hash(prev, row)
            conn.execute(table.insert().values(**row, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(meta.insert().values(key="audit_chain", value=5))
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        report = audit.verify_chain(conn)
        assert report.intact and report.checked == 5 and report.head_seq == 5 and report.unsealed == 0
        keys = set(conn.execute(select(meta.c.key)).scalars())
        assert "audit_chain" not in keys and "audit_seal" in keys
    with empty_engine.begin() as conn:
        audit.write_entries(conn, [audit.Entry("export", "customer", detail="升级后")])
    with empty_engine.connect() as conn:
        assert audit.seal_pending(conn).head_seq == 6
        assert audit.verify_chain(conn).checked == 6
    # down and up again with a row not sealed yet: it stays unsealed, and is sealed after the others
    with empty_engine.begin() as conn:
        audit.write_entries(conn, [audit.Entry("export", "customer", detail="降级前未封存")])
    with empty_engine.begin() as conn:
        cfg = alembic_config(empty_engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        report = audit.verify_chain(conn)
        assert report.intact and report.checked == 6 and report.unsealed == 1
        assert audit.seal_pending(conn).head_seq == 7 and audit.verify_chain(conn).intact
