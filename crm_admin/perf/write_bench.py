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
            "writers": self.writers, "seconds": round(self.seconds, 2), "saves": self.saves,
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
            .group_by(Customer.manager_id).order_by(func.count().desc()).limit(count)
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


def run_write_bench(
    *,
    writers: int = 32,
    seconds: float = 20.0,
    seal_every: float | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 7,
) -> WriteBenchResult:
    """Save follow-ups from ``writers`` threads for ``seconds``; the configured database (``db``)."""
    from crm_admin.core.context import Actor, acting_as
    from crm_admin.core.principal import load_principal
    from crm_admin.dictionary.service import entries
    from crm_admin.followups.service import log_follow_up

    say = progress or (lambda _msg: None)
    people = _writers(writers)
    methods = [e.value for e in entries("follow_up_method")]
    with db.session_factory()() as session:
        principals = [load_principal(session.connection(), user) for user, _ in people]
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = defaultdict(int)
    start_gate = threading.Barrier(writers + 1)
    stop = threading.Event()

    def writer(index: int) -> None:
        user, customers = people[index]
        principal = principals[index]
        rng = random.Random(seed * 1000 + index)
        actor = Actor(user_id=user.id, username=user.username, ip=f"10.1.0.{index + 1}", user_agent="write-bench")
        mine: list[float] = []
        failed: dict[str, int] = defaultdict(int)
        start_gate.wait()
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
            mine.append((time.perf_counter() - began) * 1000)
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

    threads = [threading.Thread(target=writer, args=(i,), name=f"bench-writer-{i}") for i in range(writers)]
    if seal_every:
        threads.append(threading.Thread(target=sealer, name="bench-sealer"))
    for t in threads:
        t.start()
    say(f"{writers} 个写入者,测量 {seconds:g} 秒……")
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return WriteBenchResult(writers=writers, seconds=elapsed, saves=len(latencies), errors=sum(errors.values()),
                            latencies_ms=latencies, error_kinds=dict(errors), seal_passes=seal_passes)
