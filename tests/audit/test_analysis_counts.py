"""The audit analysis page counts sealed rows from the daily totals the sealer keeps, and the
unsealed tail from the log itself: its numbers equal a direct recount over ``audit_log`` for every
period and filter, before and after sealing, and after further writes."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.db import utcnow

USERS = [(11, "alice"), (12, "bob"), (13, "carol"), (None, "")]
ACTIONS = ["login", "login_failed", "update", "create", "permission_denied", "export"]
RESOURCES = ["", "customer", "user", "follow_up"]


def _write(n: int, seed: int) -> None:
    """``n`` unsealed rows spread over the last 40 days, some right around the company's midnight."""
    from crm_admin.audit.models import AuditLog

    rng = random.Random(seed)
    now = utcnow()
    rows = []
    for _ in range(n):
        if rng.random() < 0.3:  # 16:00 UTC is midnight in Shanghai
            at = (now - dt.timedelta(days=rng.randrange(40))).replace(hour=16, minute=0, second=0) \
                - dt.timedelta(seconds=rng.choice([1, 0, -1]) * rng.random())
        else:
            at = now - dt.timedelta(seconds=rng.randrange(40 * 86400))
        uid, name = rng.choice(USERS)
        rows.append({"occurred_at": min(at, now), "user_id": uid, "username": name, "ip": "10.0.0.1",
                     "user_agent": "", "action": rng.choice(ACTIONS), "resource": rng.choice(RESOURCES),
                     "resource_id": str(rng.randrange(5)), "success": rng.random() < 0.8,
                     "created_at": now, "updated_at": now})
    with db.get_engine().begin() as conn:
        conn.execute(AuditLog.__table__.insert(), rows)


def _seal(limit: int | None = None) -> None:
    from crm_admin.core import audit

    with db.get_engine().connect() as conn:
        audit.seal_pending(conn, batch=37, limit=limit)


def _periods() -> list[dict[str, str]]:
    from crm_admin.core.formatting import local_today

    today = local_today()
    day = dt.timedelta(days=1)
    return [
        {}, {"from": (today - 29 * day).isoformat()}, {"from": (today - 10 * day).isoformat(),
                                                       "to": (today - 3 * day).isoformat()},
        {"to": (today - 20 * day).isoformat()}, {"from": today.isoformat(), "to": today.isoformat()},
        {"user": "alice"}, {"user": "12"}, {"user": "carol", "action": "update"},
        {"action": "login_failed", "success": "0"}, {"resource": "customer", "success": "1"},
        {"from": (today - 15 * day).isoformat(), "user": "bob", "resource": "user"},
        {"user": "nobody"}, {"record": "3"}, {"record": "2", "user": "alice"},
    ]


def _shown_and_recounted(params: dict[str, str]) -> tuple[Any, Any]:
    from crm_admin.audit.admin import _analysis, _direct_counts, apply_filters

    shown = _analysis(dict(params))
    with db.session_factory()() as session:
        def rows(stmt: Any) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in session.execute(apply_filters(stmt, params)).all()]
        per_day, per_user, per_action, top_resources = _direct_counts(rows)
    recount = {"per_day": dict(per_day), "per_user": dict(per_user), "per_action": dict(per_action),
               "top_resources": dict(top_resources)}
    got = {key: {(dt.date.fromisoformat(k) if isinstance(k, str) and key == "per_day" else k): v
                 for k, v in shown[key]} for key in recount}
    recount["per_day"] = {(dt.date.fromisoformat(k) if isinstance(k, str) else k): v
                          for k, v in recount["per_day"].items()}
    return got, recount


def _check_every_period() -> None:
    for params in _periods():
        got, recount = _shown_and_recounted(params)
        assert got == recount, params


def test_counts_equal_a_recount_before_and_after_sealing_and_after_writes() -> None:
    _write(300, seed=1)
    _check_every_period()  # nothing sealed: all from the tail
    _seal(limit=150)
    _check_every_period()  # half sealed
    _seal()
    _check_every_period()  # all sealed
    _write(120, seed=2)
    _check_every_period()  # sealed plus a new tail
    _seal()
    _check_every_period()


def test_daily_totals_count_exactly_the_sealed_rows() -> None:
    from crm_admin.audit.models import AuditDaily, AuditDailyUser, AuditDailyUserTotal, AuditLog

    _write(200, seed=3)
    _seal(limit=111)
    with db.get_engine().connect() as conn:
        sealed = conn.execute(select(func.count()).where(AuditLog.seal_seq.is_not(None))).scalar()
        assert sealed == 111
        assert conn.execute(select(func.sum(AuditDaily.n))).scalar() == 111
        assert conn.execute(select(func.sum(AuditDailyUser.n))).scalar() == 111
        assert conn.execute(select(func.sum(AuditDailyUserTotal.n))).scalar() == 111


@pytest.mark.parametrize("user", ["alice", "11"])
def test_page_shows_the_counts(admin_client: Any, user: str) -> None:
    _write(50, seed=4)
    _seal(limit=20)
    page = admin_client.get("/admin/audit/analysis", params={"user": user})
    assert page.status_code == 200
    from crm_admin.core.formatting import local_today

    # the page opens on the last 30 days
    got, recount = _shown_and_recounted({"user": user, "from": (local_today() - dt.timedelta(days=29)).isoformat()})
    assert got == recount
    assert sum(recount["per_action"].values()) > 0


def test_a_moment_before_midnight_counts_on_its_own_day_in_the_database_as_in_python() -> None:
    """SQLite rounds times to the millisecond: 23:59:59.9997 in Shanghai must still be that day, as the
    sealed daily totals (computed in Python) count it."""
    from sqlalchemy import DateTime, literal

    from crm_admin.core.audit import daily_key
    from crm_admin.core.formatting import local_date_sql

    at = dt.datetime(2026, 11, 12, 15, 59, 59, 999700)  # 23:59:59.9997 in Shanghai
    with db.get_engine().connect() as conn:
        day = conn.execute(select(local_date_sql(literal(at, DateTime())))).scalar()
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    row = {"occurred_at": at, "username": "", "user_id": 0, "action": "login", "resource": "", "success": True}
    assert day == daily_key(row)[0] == dt.date(2026, 11, 12)
