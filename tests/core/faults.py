"""Database errors on demand, raised by the driver layer exactly where the real ones arise (the
COMMIT, a statement), so that SQLAlchemy wraps them as it wraps the server's own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from crm_admin import db, retry

DEADLOCK_TEXT = "Deadlock found when trying to get lock; try restarting transaction"
MESSAGES = {1213: DEADLOCK_TEXT, 1047: "WSREP has not yet prepared node for application use",
            2013: "Lost connection to MySQL server during query", 1205: "Lock wait timeout exceeded"}

# Retries without waiting; a test module imports ``fast_retries`` (autouse) to run under it.
FAST = retry.Policy(attempts=3, first_pause=0.001, max_pause=0.002)


@pytest.fixture
def fast_retries() -> Any:
    retry.set_policy(FAST)
    retry.reset_counters()
    yield
    retry.set_policy(None)


@dataclass
class Faults:
    """How many of the next commits (statements) fail, with which server error code."""

    commits: int = 0
    statements: int = 0
    code: int = 1213
    raised: int = 0
    committed: int = 0

    def error(self) -> Exception:
        dbapi: Any = db.get_engine().dialect.loaded_dbapi
        self.raised += 1
        return dbapi.OperationalError(self.code, MESSAGES.get(self.code, "error"))


@contextlib.contextmanager
def failing(monkeypatch: pytest.MonkeyPatch, *, commits: int = 0, statements: int = 0,
            code: int = 1213) -> Iterator[Faults]:
    """The next ``commits`` COMMITs (and ``statements`` statements) of every engine fail with ``code``;
    a failed COMMIT does not reach the database (the transaction is then rolled back)."""
    faults = Faults(commits=commits, statements=statements, code=code)
    dialect_class = type(db.get_engine().dialect)
    real_commit = dialect_class.do_commit
    real_execute = dialect_class.do_execute

    def do_commit(self: Any, dbapi_connection: Any) -> None:
        if faults.commits > 0:
            faults.commits -= 1
            raise faults.error()
        real_commit(self, dbapi_connection)
        faults.committed += 1

    def do_execute(self: Any, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if faults.statements > 0:
            faults.statements -= 1
            raise faults.error()
        real_execute(self, cursor, statement, parameters, context)

    with monkeypatch.context() as m:
        m.setattr(dialect_class, "do_commit", do_commit)
        m.setattr(dialect_class, "do_execute", do_execute)
        yield faults
