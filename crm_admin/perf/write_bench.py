"""Concurrent write throughput: follow-ups saved per second by many managers at once.

Each writer is one thread with its own manager, its own database session per save and that manager
as the acting user, saving follow-ups of its own customers through ``log_follow_up`` (the service the
customer page's "log a follow-up" form calls: scope check, validation, the customer's last contact
moved forward, the audit rows in the same transaction). Every save is one transaction, timed from
opening the session to the commit. A save refused by the database (a deadlock, a lock wait timeout)
is counted as an error, not retried.

With ``seal_every`` the audit log's sealing pass also runs in a thread of its own, as the scheduler
runs it in production, so the measurement includes its cost.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from crm_admin import db

WRITE_BENCH_SCALE = 0.02  # 36 managers, 4,000 customers: enough for 32 writers with customers of their own


@dataclass
class WriteBenchResult:
    writers: int
    seconds: float
    saves: int
    errors: int
    latencies_ms: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    seal_passes: int = 0
    processes: int = 1

    @property
    def saves_per_second(self) -> float:
        return self.saves / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "writers": self.writers, "processes": self.processes, "seconds": round(self.seconds, 2), "saves": self.saves,
            "errors": self.errors, "error_kinds": dict(self.error_kinds),
            "saves_per_second": round(self.saves_per_second, 1),
            "p50_ms": round(self.percentile(50), 1), "p95_ms": round(self.percentile(95), 1),
            "max_ms": round(max(self.latencies_ms, default=0.0), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else 0.0,
            "seal_passes": self.seal_passes,
        }


def _writers(count: int) -> list[tuple[Any, list[int]]]:
    """The ``count`` managers with the most customers, each with their customers' ids."""
    import crm_admin.models  # noqa: F401
    from crm_admin.accounts.models import SysUser
    from crm_admin.customers.models import Customer

    with db.session_factory()() as session:
        top: list[int] = [int(m) for m in session.execute(
            select(Customer.manager_id).where(Customer.manager_id.is_not(None))
            .group_by(Customer.manager_id).order_by(func.count().desc(), Customer.manager_id).limit(count)
        ).scalars() if m is not None]
        if len(top) < count:
            raise RuntimeError(f"only {len(top)} managers own customers; {count} writers need as many")
        owned: dict[int, list[int]] = defaultdict(list)
        for cid, mid in session.execute(select(Customer.id, Customer.manager_id)
                                        .where(Customer.manager_id.in_(top))):
            owned[int(mid or 0)].append(cid)
        users = {u.id: u for u in session.execute(select(SysUser).where(SysUser.id.in_(top))).scalars()}
        session.expunge_all()
    return [(users[mid], owned[mid]) for mid in top]


@dataclass
class _Part:
    latencies_ms: list[float]
    errors: dict[str, int]
    seal_passes: int


def _run_writers(indexes: list[int], total: int, *, seconds: float, start_at: float, seal_every: float | None,
                 seed: int) -> _Part:
    """The writers ``indexes`` (of the ``total`` busiest managers) as threads of this process, saving
    from the wall-clock moment ``start_at`` for ``seconds``; saves finished after that do not count."""
    from crm_admin.core.context import Actor, acting_as
    from crm_admin.core.principal import load_principal
    from crm_admin.dictionary.service import entries
    from crm_admin.followups.service import log_follow_up

    people = _writers(total)
    methods = [e.value for e in entries("follow_up_method")]
    with db.session_factory()() as session:
        principals = {i: load_principal(session.connection(), people[i][0]) for i in indexes}
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = defaultdict(int)
    stop = threading.Event()
    begin = time.perf_counter() + max(0.0, start_at - time.time())
    deadline = begin + seconds

    def writer(index: int) -> None:
        user, customers = people[index]
        principal = principals[index]
        rng = random.Random(seed * 1000 + index)
        actor = Actor(user_id=user.id, username=user.username, ip=f"10.1.0.{index + 1}", user_agent="write-bench")
        mine: list[float] = []
        failed: dict[str, int] = defaultdict(int)
        time.sleep(max(0.0, begin - time.perf_counter()))
        while not stop.is_set():
            began = time.perf_counter()
            try:
                with acting_as(actor), db.transaction() as session:
                    log_follow_up(session, principal, customer_id=rng.choice(customers),
                                  method=rng.choice(methods), content=f"压测跟进 {index}-{len(mine)}",
                                  contacted_at=db.utcnow() - dt.timedelta(seconds=rng.randrange(60)))
            except Exception as exc:  # counted, the writer goes on
                code = getattr(getattr(exc, "orig", None), "args", [None])[:1]
                failed[f"{type(exc).__name__}:{code[0] if code else ''}"] += 1
                continue
            finished = time.perf_counter()
            if finished <= deadline:
                mine.append((finished - began) * 1000)
        with lock:
            latencies.extend(mine)
            for key, n in failed.items():
                errors[key] += n

    seal_passes = 0

    def sealer() -> None:
        nonlocal seal_passes
        from crm_admin.core import audit

        seal = getattr(audit, "seal_pending", None)
        if seal is None:  # a version whose audit rows are chained as they are written
            return
        while not stop.wait(seal_every or 1.0):
            with db.get_engine().connect() as conn:
                seal(conn)
            seal_passes += 1

    threads = [threading.Thread(target=writer, args=(i,), name=f"bench-writer-{i}") for i in indexes]
    if seal_every:
        threads.append(threading.Thread(target=sealer, name="bench-sealer"))
    for t in threads:
        t.start()
    time.sleep(max(0.0, deadline - time.perf_counter()))
    stop.set()
    for t in threads:
        t.join()
    return _Part(latencies, dict(errors), seal_passes)


def _child(url: str, indexes: list[int], total: int, seconds: float, start_at: float, seal_every: float | None,
           seed: int) -> _Part:
    """One process of a multi-process run (spawned: an engine of its own)."""
    import crm_admin.models  # noqa: F401

    db.configure(url, pool_size=len(indexes) + 2)
    return _run_writers(indexes, total, seconds=seconds, start_at=start_at, seal_every=seal_every, seed=seed)


def run_write_bench(
    *,
    writers: int = 32,
    seconds: float = 20.0,
    processes: int = 1,
    seal_every: float | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 7,
) -> WriteBenchResult:
    """Save follow-ups from ``writers`` threads for ``seconds`` on the configured database (``db``).

    ``processes`` > 1 spreads the writers over that many processes, so that the client's own Python
    (one interpreter lock per process) does not cap what the database could take."""
    say = progress or (lambda _msg: None)
    _writers(writers)  # enough managers, before anything starts
    processes = max(1, min(processes, writers))
    say(f"{writers} 个写入者({processes} 个进程),测量 {seconds:g} 秒……")
    if processes == 1:
        parts = [_run_writers(list(range(writers)), writers, seconds=seconds, start_at=time.time() + 1,
                              seal_every=seal_every, seed=seed)]
    else:
        import multiprocessing

        url = db.get_engine().url.render_as_string(hide_password=False)
        start_at = time.time() + 5 + processes  # every process connected and ready by then
        jobs = [(url, list(range(i, writers, processes)), writers, seconds, start_at,
                 seal_every if i == 0 else None, seed) for i in range(processes)]
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.starmap(_child, jobs)
    errors: dict[str, int] = defaultdict(int)
    for part in parts:
        for key, n in part.errors.items():
            errors[key] += n
    latencies = [ms for part in parts for ms in part.latencies_ms]
    return WriteBenchResult(writers=writers, seconds=seconds, saves=len(latencies), errors=sum(errors.values()),
                            latencies_ms=latencies, error_kinds=dict(errors),
                            seal_passes=sum(p.seal_passes for p in parts), processes=processes)
