"""The handling page's open alerts, found level by level (and manager by manager for a team): the same
alerts in the same order as sorting every open alert of the scope; never an alert outside the scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_admin import db
from crm_admin.churn import service
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from tests.company import World
from tests.customers.conftest import principal_for

BASE = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def alerts(world: World) -> World:
    """Three customers per manager, alerts of two rules on each, times repeating, some closed."""
    with acting_as(SYSTEM), db.transaction() as s:
        rules = [ChurnRule(name=f"规则{n}", metric="days_since_contact", threshold=30 + n,
                           risk_level=("high", "medium")[n % 2]) for n in range(2)]
        s.add_all(rules)
        s.flush()
        n = 0
        for owner in ("mgr_a", "mgr_b", "mgr_c", "lead"):
            for c in range(3):
                customer = Customer(code=f"C-AL-{owner}-{c}", name=f"预警客户{owner}{c}公司",
                                    manager_id=world.users[owner])
                s.add(customer)
                s.flush()
                for rule in rules:
                    n += 1
                    s.add(ChurnAlert(customer_id=customer.id, rule_id=rule.id, risk_level=rule.risk_level,
                                     detected_at=BASE + dt.timedelta(hours=n % 5),
                                     status=("open", "following", "open", "lost")[n % 4]))
    return world


def _ids(principal: Any, **kwargs: Any) -> list[int]:
    with db.session_factory()() as s:
        return [row.id for row in service.list_alerts(s, principal, **kwargs)]


@pytest.mark.parametrize("username", ["admin", "lead", "mgr_a", "mgr_c", "ro"])
@pytest.mark.parametrize("kwargs", [{}, {"risk_level": "high"}, {"risk_level": "medium"}, {"limit": 5},
                                    {"status": "lost"}, {"status": ""}])
def test_open_alerts_found_by_index_are_the_sorted_ones(alerts: World, username: str, kwargs: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    principal = principal_for(username)
    got = _ids(principal, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(service, "_first_active_alerts", lambda *a, **k: None)
        assert got == _ids(principal, **kwargs)
    if username != "ro" and not kwargs.get("status"):
        assert got


def test_a_drifted_copy_never_shows_an_alert_outside_the_scope(alerts: World) -> None:
    with db.transaction() as s:
        other = s.execute(select(ChurnAlert.id).join(Customer, Customer.id == ChurnAlert.customer_id)
                          .where(Customer.manager_id == alerts.users["mgr_c"], ChurnAlert.open_key == 1)
                          .limit(1)).scalar_one()
        s.execute(update(ChurnAlert).where(ChurnAlert.id == other).values(customer_manager_id=alerts.users["mgr_a"]))
    for username in ("lead", "mgr_a"):
        assert other not in _ids(principal_for(username))
