"""The churn analysis counts a team's alerts by the manager each alert carries: the same numbers as
counting the alerts of the customer scope one by one, for a sales lead, a manager and an administrator,
after a transfer too."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.formatting import local_today, to_local

TODAY = local_today()
LEVELS = ("high", "medium", "low")
REASONS = (None, "price", "competitor")


def _alerts(world: Any) -> None:
    from crm_admin.churn.models import ChurnAlert, ChurnRule
    from crm_admin.customers.models import Customer

    rng = random.Random(5)
    now = dt.datetime.now(dt.UTC)
    with acting_as(SYSTEM), db.transaction() as session:
        rule_id = session.execute(select(ChurnRule.id)).scalars().first()
        owners = [world.users["mgr_a"], world.users["mgr_b"], world.users["mgr_c"], None]
        for i in range(40):
            customer = Customer(code=f"CA-{i}", name=f"流失分析{i}有限公司", manager_id=owners[i % 4],
                                industry="it", level="A")
            session.add(customer)
            session.flush()
            for _ in range(3):
                status = rng.choice(("open", "following", "lost", "retained", "dismissed"))
                closed = status in ("lost", "retained", "dismissed")
                session.add(ChurnAlert(
                    customer_id=customer.id, rule_id=rule_id, risk_level=rng.choice(LEVELS), status=status,
                    open_key=None if closed else 1, detected_at=now - dt.timedelta(days=400),
                    reason=rng.choice(REASONS) if status == "lost" else None,
                    handled_at=now - dt.timedelta(days=rng.randrange(420), hours=rng.randrange(24))
                    if closed else None))
                if not closed:
                    break


def _recount(principal: Any) -> dict[str, Any]:
    """Every alert of the customer scope, loaded and counted here."""
    from crm_admin.accounts.models import SysUser
    from crm_admin.churn.models import ChurnAlert
    from crm_admin.core.scope import scoped
    from crm_admin.customers.models import Customer

    with db.session_factory()() as session:
        rows = session.execute(
            scoped(select(ChurnAlert.status, ChurnAlert.risk_level, ChurnAlert.reason, ChurnAlert.handled_at,
                          Customer.manager_id).join(Customer, Customer.id == ChurnAlert.customer_id),
                   ChurnAlert, principal, "list", resource="churn_analysis")).all()
        names = {u.id: u.real_name or u.username for u in session.execute(select(SysUser)).scalars()}
    first = (TODAY.replace(day=1) - dt.timedelta(days=31 * 11)).replace(day=1)
    by_level: dict[str, Counter[str]] = {}
    months: Counter[tuple[str, str]] = Counter()
    for status, level, _reason, handled_at, _manager in rows:
        by_level.setdefault(level, Counter())[status] += 1
        if status in ("lost", "retained") and handled_at and to_local(handled_at).date() >= first:
            months[(to_local(handled_at).strftime("%Y-%m"), status)] += 1
    return {
        "by_status": dict(Counter(r[0] for r in rows)),
        "by_level": {k: dict(v) for k, v in by_level.items()},
        "managers": dict(Counter(names.get(r[4], "未分配") if r[4] else "未分配" for r in rows if r[0] == "lost")),
        "reasons": dict(Counter(r[2] for r in rows if r[0] == "lost")),
        "months": {k: v for k, v in months.items()},
    }


def _shown(principal: Any) -> dict[str, Any]:
    from crm_admin.churn import service

    with db.session_factory()() as session:
        a = service.analysis(session, principal)
    months = {}
    for month, lost, retained in a.by_month:
        if lost:
            months[(month, "lost")] = lost
        if retained:
            months[(month, "retained")] = retained
    return {"by_status": a.by_status, "by_level": a.by_level, "managers": dict(a.lost_by_manager),
            "reasons": sorted(n for _, n in a.lost_by_reason), "months": months}


@pytest.mark.parametrize("who", ["lead", "mgr_a", "admin"])
def test_analysis_equals_a_recount_over_the_customer_scope(world: Any, who: str) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    _alerts(world)
    with db.session_factory()() as session:
        user = session.execute(select(SysUser).where(SysUser.username == who)).scalar_one()
        principal = load_principal(session.connection(), user)
    _compare(principal)
    # mgr_c's customers go to mgr_b (into the lead's team): the carried managers follow
    from crm_admin.customers.models import Customer

    with acting_as(SYSTEM), db.transaction() as session:
        for customer in session.execute(select(Customer).where(
                Customer.manager_id == world.users["mgr_c"], Customer.code.like("CA-%"))).scalars():
            customer.manager_id = world.users["mgr_b"]
    _compare(principal)


def _compare(principal: Any) -> None:
    shown, recount = _shown(principal), _recount(principal)
    assert shown["by_status"] == recount["by_status"]
    assert shown["by_level"] == recount["by_level"]
    assert shown["managers"] == recount["managers"]
    assert shown["reasons"] == sorted(recount["reasons"].values())
    assert shown["months"] == recount["months"]
    assert sum(recount["by_status"].values()) > 0
