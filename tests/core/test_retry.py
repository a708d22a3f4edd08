"""Passing database errors (a deadlock, a cluster node leaving) are run again as a whole unit of
work, a bounded number of times; a commit whose outcome is unknown is not repeated."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from crm_admin import db, retry
from crm_admin.audit.models import AuditLog
from crm_admin.core import audit
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.errors import BUSY_MESSAGE, OUTCOME_UNKNOWN_MESSAGE, friendly_db_error
from crm_admin.dictionary.models import DictType
from tests.conftest import IS_MYSQL
from tests.core.faults import FAST, failing, fast_retries  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_retries")  # every test here retries without waiting


def _add_type(session: Session, code: str = "retry_t") -> int:
    obj = DictType(code=code, name="重试测试")
    session.add(obj)
    session.flush()
    audit.record(session, "create", resource="dict_type", resource_id=obj.id)
    return obj.id


def _counts(code: str = "retry_t") -> tuple[int, int]:
    with db.session_factory()() as s:
        rows = s.execute(select(func.count()).select_from(DictType).where(DictType.code == code)).scalar_one()
        audits = s.execute(select(func.count()).select_from(AuditLog)
                           .where(AuditLog.resource == "dict_type", AuditLog.action == "create")).scalar_one()
    return rows, audits


def _operational(code: int | None, text: str = "x") -> OperationalError:
    orig = Exception(code, text) if code is not None else Exception(text)
    return OperationalError("COMMIT", {}, orig)


@pytest.mark.parametrize(("code", "kind"), [
    (1213, "rolled_back"), (1205, "rolled_back"), (1047, "rolled_back"),
    (2006, "connection"), (2013, "connection"), (2003, "connection"),
    (1062, None), (1406, None), (1054, None),
])
def test_mysql_errors_are_classified_by_code(code: int, kind: str | None) -> None:
    assert retry.classify(_operational(code)) == kind


def test_sqlite_busy_is_passing_and_other_errors_are_not() -> None:
    assert retry.classify(_operational(None, "database is locked")) == "rolled_back"
    assert retry.classify(_operational(None, "no such table: customer")) is None
    assert retry.classify(IntegrityError("INSERT", {}, Exception(1062, "Duplicate entry"))) is None
    assert retry.classify(ValueError("not a database error")) is None


def test_deadlock_at_commit_is_run_again_and_applied_once(monkeypatch: pytest.MonkeyPatch, engine: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def work(session: Session) -> int:
        nonlocal calls
        calls += 1
        return _add_type(session)

    with acting_as(SYSTEM), failing(monkeypatch, commits=1, code=1213) as faults:
        new_id = db.run_in_transaction(work, where="test")
    assert faults.raised == 1 and calls == 2 and new_id
    assert _counts() == (1, 1)  # one row, one audit row: the first attempt left nothing
    assert retry.counters()["retried"] == 1 and retry.counters()["retried:1213"] == 1
    assert retry.counters()["retried@test"] == 1
    assert "database error 1213 on attempt 1 of 3: running it again" in caplog.text


def test_connection_lost_before_commit_is_run_again(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    with acting_as(SYSTEM), failing(monkeypatch, statements=1, code=2013):
        db.run_in_transaction(_add_type, where="test")
    assert _counts() == (1, 1)


def test_attempts_are_bounded_and_nothing_is_written(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    with acting_as(SYSTEM), failing(monkeypatch, commits=10, code=1213) as faults, \
            pytest.raises(OperationalError) as caught:
        db.run_in_transaction(_add_type, where="test")
    assert faults.raised == FAST.attempts
    assert retry.mark_of(caught.value) == retry.EXHAUSTED
    assert friendly_db_error(caught.value) == BUSY_MESSAGE
    assert _counts() == (0, 0)
    assert retry.counters()["retried"] == FAST.attempts - 1 and retry.counters()["exhausted"] == 1


def test_connection_lost_during_commit_is_not_run_again(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    """The COMMIT was sent and the answer lost: the change may have been applied; running it again
    could apply it twice, so it is not (unless the work says it is idempotent)."""
    calls = 0

    def work(session: Session) -> int:
        nonlocal calls
        calls += 1
        return _add_type(session)

    with acting_as(SYSTEM), failing(monkeypatch, commits=1, code=2013), \
            pytest.raises(OperationalError) as caught:
        db.run_in_transaction(work, where="test")
    assert calls == 1 and retry.outcome_unknown(caught.value)
    assert friendly_db_error(caught.value) == OUTCOME_UNKNOWN_MESSAGE
    assert retry.counters()["outcome_unknown"] == 1

    with acting_as(SYSTEM), failing(monkeypatch, commits=1, code=2013):
        db.run_in_transaction(lambda s: _add_type(s, "retry_i"), where="test", idempotent=True)
    assert _counts("retry_i")[0] == 1


def test_refusals_are_not_run_again(engine: Any) -> None:
    calls = 0

    def work(session: Session) -> None:
        nonlocal calls
        calls += 1
        _add_type(session, "dup")
        _add_type(session, "dup")

    with acting_as(SYSTEM), pytest.raises(IntegrityError):
        db.run_in_transaction(work, where="test")
    assert calls == 1 and retry.counters() == {}


def test_an_outer_layer_does_not_run_again_what_an_inner_one_gave_up(monkeypatch: pytest.MonkeyPatch,
                                                                      engine: Any) -> None:
    inner = 0

    def outer() -> None:
        nonlocal inner
        inner += 1
        db.run_in_transaction(_add_type, where="inner")

    with acting_as(SYSTEM), failing(monkeypatch, commits=10), pytest.raises(OperationalError):
        retry.call(outer, where="outer")
    assert inner == 1  # 3 attempts inside, not 3 × 3


def test_pauses_grow_and_stay_bounded() -> None:
    pol = retry.Policy(attempts=5, first_pause=0.05, max_pause=1.0)
    for number, (low, high) in enumerate([(0.025, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.4)], start=1):
        for _ in range(20):
            assert low <= pol.pause(number) <= high
    assert pol.pause(10) <= 1.0


# ----- a real deadlock on MariaDB/MySQL: the driver's own exception is what the runner expects --------

def _deadlock_pair(engine: Any) -> None:
    from sqlalchemy import insert

    from crm_admin.core.models import SysMeta

    with engine.begin() as conn:
        conn.execute(insert(SysMeta), [{"key": "dl_a", "value": 0}, {"key": "dl_b", "value": 0}])


@pytest.mark.skipif(not IS_MYSQL, reason="MariaDB/MySQL only (set CRM_TEST_DATABASE_URL)")
def test_a_real_deadlock_is_classified_and_run_again(engine: Any) -> None:
    import threading

    from sqlalchemy import update

    from crm_admin.core.models import SysMeta

    _deadlock_pair(engine)
    both_locked = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []
    attempts = {"a": 0, "b": 0}

    def work(name: str, first: str, second: str) -> None:
        def unit(session: Session) -> None:
            attempts[name] += 1
            session.execute(update(SysMeta).where(SysMeta.key == first).values(value=SysMeta.value + 1))
            if attempts[name] == 1:
                both_locked.wait()  # each holds its first row: the second UPDATEs cross
            session.execute(update(SysMeta).where(SysMeta.key == second).values(value=SysMeta.value + 1))

        try:
            db.run_in_transaction(unit, where="deadlock")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=("a", "dl_a", "dl_b")),
               threading.Thread(target=work, args=("b", "dl_b", "dl_a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert retry.counters().get("retried:1213", 0) == 1  # InnoDB chose one victim; it ran again
    assert sorted(attempts.values()) == [1, 2]
    with db.session_factory()() as s:
        values = dict(s.execute(select(SysMeta.key, SysMeta.value).where(SysMeta.key.in_(["dl_a", "dl_b"]))).all())
    assert values == {"dl_a": 2, "dl_b": 2}  # both units applied, each once


@pytest.mark.skipif(not IS_MYSQL, reason="MariaDB/MySQL only (set CRM_TEST_DATABASE_URL)")
def test_the_driver_reports_a_deadlock_as_1213(engine: Any) -> None:
    import threading

    import pymysql
    from sqlalchemy import text

    _deadlock_pair(engine)
    both_locked = threading.Barrier(2, timeout=10)
    caught: list[BaseException] = []

    def cross(first: str, second: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE sys_meta SET value = value + 1 WHERE `key` = :k"), {"k": first})
                both_locked.wait()
                conn.execute(text("UPDATE sys_meta SET value = value + 1 WHERE `key` = :k"), {"k": second})
        except OperationalError as exc:
            caught.append(exc)

    threads = [threading.Thread(target=cross, args=("dl_a", "dl_b")),
               threading.Thread(target=cross, args=("dl_b", "dl_a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(caught) == 1
    exc = caught[0]
    assert isinstance(exc.orig, pymysql.err.OperationalError) and exc.orig.args[0] == 1213
    assert retry.classify(exc) == "rolled_back"


@pytest.mark.skipif(not IS_MYSQL, reason="MariaDB/MySQL only (set CRM_TEST_DATABASE_URL)")
def test_a_connection_killed_before_commit_is_run_again_on_a_fresh_one(engine: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """What a client of a node being shut down sees: its connection gone in the middle of a
    transaction (the server rolled it back), the next attempt on a new connection."""
    from sqlalchemy import text, update

    from crm_admin.core.models import SysMeta

    _deadlock_pair(engine)
    attempts = 0

    def unit(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.execute(update(SysMeta).where(SysMeta.key == "dl_a").values(value=SysMeta.value + 1))
        if attempts == 1:
            mine = int(session.execute(text("SELECT CONNECTION_ID()")).scalar_one())
            with engine.connect() as other:
                other.execute(text(f"KILL {mine}"))
        session.execute(update(SysMeta).where(SysMeta.key == "dl_b").values(value=SysMeta.value + 1))

    db.run_in_transaction(unit, where="killed")
    assert attempts == 2
    codes = {k.split(":", 1)[1] for k in retry.counters() if k.startswith("retried:")}
    assert codes and codes <= {"1927", "2006", "2013"}, retry.counters()
    with db.session_factory()() as s:
        values = dict(s.execute(select(SysMeta.key, SysMeta.value).where(SysMeta.key.in_(["dl_a", "dl_b"]))).all())
    assert values == {"dl_a": 1, "dl_b": 1}  # the killed attempt left nothing


def test_a_node_that_is_not_ready_is_left_for_a_new_connection(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    """1047 (WSREP not ready) keeps the connection's node answering 1047: the connection is dropped, so
    the next attempt connects afresh (through the load balancer, to a node that is ready)."""
    seen: list[OperationalError] = []

    def work(session: Session) -> int:
        try:
            return _add_type(session)
        except OperationalError as exc:
            seen.append(exc)
            raise

    with acting_as(SYSTEM), failing(monkeypatch, statements=1, code=1047):
        db.run_in_transaction(work, where="test")
    assert len(seen) == 1 and seen[0].connection_invalidated
    assert _counts() == (1, 1)


def test_a_server_that_does_not_answer_is_not_waited_for_again() -> None:
    """PyMySQL's read timeout is a 2013 too; another attempt would double the wait of a request to a
    frozen server, so the friendly 503 comes after one wait (tests/web/test_frozen_database.py)."""
    assert retry.classify(_operational(2013, "Lost connection to MySQL server during query (timed out)")) is None
    assert retry.classify(_operational(2003, "Can't connect to MySQL server on 'db' (timed out)")) is None
    assert retry.classify(_operational(2013, "Lost connection to MySQL server during query")) == "connection"


def test_bookkeeping_commits_do_not_count_as_changes(engine: Any) -> None:
    with retry.attempt() as current:
        with retry.uncounted(), acting_as(SYSTEM), db.transaction() as session:
            _add_type(session, "uncounted")
        assert not current.changed_something
        with acting_as(SYSTEM), db.transaction() as session:
            _add_type(session, "counted")
        assert current.changed_something
