"""Scheduled jobs on a cluster: a job whose commit fails certification (a deadlock error) is run
again and creates its rows once; the lease is decided by the database (a conditional UPDATE), so two
app nodes — two engines with pools of their own on one database — never both hold it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from crm_admin import db, retry
from crm_admin.care.models import CustomerCare
from crm_admin.scheduler import service
from crm_admin.scheduler.models import JobLease
from tests.conftest import TEST_DB_URL
from tests.core.faults import FAST, failing, fast_retries  # noqa: F401
from tests.scheduler.test_scheduler import DAY, NOON, birthdays  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_retries")  # every test here retries without waiting


def _cares() -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(CustomerCare)).scalar_one())


def test_job_whose_commit_deadlocks_is_run_again_once(monkeypatch: pytest.MonkeyPatch, birthdays: int) -> None:  # noqa: F811
    spec = service.jobs()["birthday_scan"]
    with failing(monkeypatch) as faults:
        def body(session: Any, ctx: Any) -> Any:
            faults.commits = 1 if faults.raised == 0 else 0  # the job's own commit fails the first time
            return spec.fn(session, ctx)

        monkeypatch.setitem(service._JOBS, "birthday_scan", dataclasses.replace(spec, fn=body))
        result = service.run_job("birthday_scan", today=DAY, now=NOON)
    assert faults.raised == 1
    assert (result.status, result.created) == ("success", birthdays)
    assert _cares() == birthdays
    assert retry.counters()["retried@job:birthday_scan"] == 1


def test_lease_commit_that_deadlocks_is_taken_again(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    with failing(monkeypatch, commits=1):
        assert service.acquire_lease("birthday_scan", "node-a", NOON)
    with db.session_factory()() as s:
        assert s.get(JobLease, "birthday_scan").holder == "node-a"  # type: ignore[union-attr]


@pytest.fixture
def two_nodes(engine: Any) -> Any:
    """A second app node: an engine and sessions of its own on the same database."""
    other = db.make_engine(TEST_DB_URL, pool_size=2)
    yield sessionmaker(bind=other, autoflush=False, expire_on_commit=False)
    other.dispose()


def _take_on(factory: Any, holder: str, now: dt.datetime) -> bool:
    with factory() as session, session.begin():
        return service._take_lease(session, job="care_plans", holder=holder, now=now, ttl=service.LEASE_TTL)


def test_two_nodes_never_hold_the_lease_together(two_nodes: Any) -> None:
    here = db.session_factory()
    assert _take_on(here, "node-a", NOON)
    assert not _take_on(two_nodes, "node-b", NOON)  # the UPDATE's WHERE saw node-a's lease
    assert _take_on(here, "node-a", NOON)  # renewing one's own lease
    # expired: the other node takes it over, and the first one no longer has it
    later = NOON + service.LEASE_TTL + dt.timedelta(seconds=1)
    assert _take_on(two_nodes, "node-b", later)
    assert not _take_on(here, "node-a", later)


def test_nodes_racing_for_a_free_lease_give_it_to_exactly_one(two_nodes: Any) -> None:
    factories = [db.session_factory(), two_nodes] * 3
    start = threading.Barrier(len(factories))
    won: list[str] = []

    def race(index: int) -> None:
        start.wait()
        holder = f"node-{index % 2}-{index}"
        if retry.call(lambda: _take_on(factories[index], holder, NOON), where="test", idempotent=True):
            won.append(holder)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(factories))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1, won
    with db.session_factory()() as s:
        assert s.get(JobLease, "care_plans").holder == won[0]  # type: ignore[union-attr]
