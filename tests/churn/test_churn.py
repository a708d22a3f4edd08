from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.churn.service import evaluate, quarter_bounds
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.orders.models import CustomerOrder
from tests.care import factories as f
from tests.conftest import csrf_token

TODAY = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)


def _eval(today: dt.date = TODAY, now: dt.datetime = NOW) -> Any:
    with acting_as(SYSTEM), db.transaction() as s:
        return evaluate(s, today, now)


def _alerts(*where: Any) -> list[ChurnAlert]:
    with db.session_factory()() as s:
        return list(s.execute(select(ChurnAlert).where(*where).order_by(ChurnAlert.id)).scalars())


def rule(metric: str, threshold: str, level: str = "medium", name: str | None = None) -> ChurnRule:
    return f.add(ChurnRule(name=name or f"{metric}-{threshold}", metric=metric, threshold=Decimal(threshold),
                           risk_level=level, is_active=True))


def order(customer_id: int, day: dt.date, amount: str, status: str = "confirmed") -> None:
    f.add(CustomerOrder(order_no=f"SO{customer_id}{day:%Y%m%d}{amount}", customer_id=customer_id, order_date=day,
                        amount=Decimal(amount), status=status))


@pytest.fixture
def mgr(make_user: Any) -> Any:
    return make_user("churn_m", real_name="吴经理")


def test_quarters() -> None:
    assert quarter_bounds(dt.date(2026, 11, 20)) == (dt.date(2026, 10, 1), dt.date(2026, 7, 1))
    assert quarter_bounds(dt.date(2026, 2, 3)) == (dt.date(2026, 1, 1), dt.date(2025, 10, 1))


def test_days_since_contact_crossing_threshold_opens_one_alert(mgr: Any) -> None:
    r = rule("days_since_contact", "90", "high")
    old = f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=91))
    fresh = f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=89))
    # contacted recently through a follow-up even though the column lags: no alert
    lagging = f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=200))
    f.add(FollowUp(customer_id=lagging.id, manager_id=mgr.id, method="phone", content="回访",
                   contacted_at=NOW - dt.timedelta(days=3)))
    res = _eval()
    assert res.opened == 1 and res.at_risk == 1
    alerts = _alerts()
    assert [(a.customer_id, a.rule_id, a.risk_level, a.status) for a in alerts] == [(old.id, r.id, "high", "open")]
    assert f.get(Customer, old.id).status == "at_risk"
    assert f.get(Customer, fresh.id).status == "active"
    # again (and again): no duplicates
    assert _eval().opened == 0
    assert _eval(now=NOW + dt.timedelta(days=1)).opened == 0
    assert len(_alerts()) == 1
    # a day later the fresh one crosses too
    assert _eval(TODAY + dt.timedelta(days=2), NOW + dt.timedelta(days=2)).opened == 1


def test_days_since_order_uses_orders(mgr: Any) -> None:
    rule("days_since_order", "180")
    idle = f.customer(mgr.id, created_at=NOW - dt.timedelta(days=400))
    order(idle.id, TODAY - dt.timedelta(days=200), "500.00")
    busy = f.customer(mgr.id, created_at=NOW - dt.timedelta(days=400))
    order(busy.id, TODAY - dt.timedelta(days=10), "500.00")
    cancelled_only = f.customer(mgr.id, created_at=NOW - dt.timedelta(days=400))
    order(cancelled_only.id, TODAY - dt.timedelta(days=5), "500.00", status="cancelled")
    young = f.customer(mgr.id, created_at=NOW - dt.timedelta(days=30))
    _eval()
    assert {a.customer_id for a in _alerts()} == {idle.id, cancelled_only.id}
    assert f.get(Customer, young.id).status == "active"


def test_order_amount_drop_quarter_over_quarter(mgr: Any) -> None:
    rule("order_amount_drop_pct", "50", "high")
    dropped = f.customer(mgr.id)
    order(dropped.id, dt.date(2026, 8, 10), "10000.00")  # previous quarter (Q3)
    order(dropped.id, dt.date(2026, 10, 5), "4000.00")  # this quarter: -60 %
    steady = f.customer(mgr.id)
    order(steady.id, dt.date(2026, 8, 10), "10000.00")
    order(steady.id, dt.date(2026, 11, 1), "6000.00")  # -40 %
    new = f.customer(mgr.id)
    order(new.id, dt.date(2026, 11, 1), "100.00")  # nothing before: no drop to speak of
    _eval()
    assert [a.customer_id for a in _alerts()] == [dropped.id]


def test_untouched_alert_is_dismissed_when_condition_clears_followed_one_stays(mgr: Any) -> None:
    rule("days_since_contact", "30")
    a = f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=40))
    b = f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=40))
    _eval()
    alert_b = next(x for x in _alerts() if x.customer_id == b.id)
    with acting_as(SYSTEM), db.transaction() as s:
        from crm_admin.accounts.models import SysUser
        from crm_admin.churn.service import follow_alert
        from crm_admin.core.principal import load_principal

        p = load_principal(s.connection(), s.get(SysUser, mgr.id))
        follow_alert(s, p, alert_b.id, measures="安排上门拜访")
        for cid in (a.id, b.id):
            c = s.get(Customer, cid)
            assert c is not None
            c.last_contact_at = NOW
    res = _eval(now=NOW + dt.timedelta(hours=1))
    assert res.dismissed == 1 and res.restored == 1
    by_customer = {x.customer_id: x for x in _alerts()}
    assert by_customer[a.id].status == "dismissed" and by_customer[a.id].open_key is None
    assert by_customer[b.id].status == "following"
    assert f.get(Customer, a.id).status in ("active", "potential")
    assert f.get(Customer, b.id).status == "at_risk"


def test_lost_customers_are_not_evaluated(mgr: Any) -> None:
    rule("days_since_contact", "30")
    f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=99), status="lost")
    assert _eval().opened == 0


# ----- handling pages ----------------------------------------------------------------------------

@pytest.fixture
def open_alert(mgr: Any) -> ChurnAlert:
    rule("days_since_contact", "60", "high")
    f.customer(mgr.id, "流失测试公司", last_contact_at=NOW - dt.timedelta(days=120))
    _eval()
    return _alerts()[0]


def _post(client: Any, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client), **data}, follow_redirects=False)


def test_manager_follows_then_admin_closes_as_lost(open_alert: ChurnAlert, login_as: Any, admin_client: Any) -> None:
    m = login_as("churn_m")
    assert "流失测试公司" in m.get("/admin/churn/alerts").text
    assert m.get(f"/admin/churn/alerts/{open_alert.id}").status_code == 200
    r = _post(m, f"/admin/churn/alerts/{open_alert.id}/follow", {"measures": "总经理亲自拜访,提供季度折扣"})
    assert r.status_code == 303
    a = f.get(ChurnAlert, open_alert.id)
    assert a.status == "following" and a.measures and a.handled_by is not None

    # lost needs a reason from the dictionary and an analysis
    url = f"/admin/churn/alerts/{open_alert.id}/close"
    assert _post(admin_client, url, {"outcome": "lost", "reason": "", "analysis": "价格"}).status_code == 400
    assert _post(admin_client, url, {"outcome": "lost", "reason": "bogus", "analysis": "价格"}).status_code == 400
    assert _post(admin_client, url, {"outcome": "lost", "reason": "price", "analysis": ""}).status_code == 400
    assert f.get(ChurnAlert, open_alert.id).status == "following"
    r = _post(admin_client, url, {"outcome": "lost", "reason": "competitor", "analysis": "竞争对手低价抢单"})
    assert r.status_code == 303
    a = f.get(ChurnAlert, open_alert.id)
    assert (a.status, a.reason, a.open_key) == ("lost", "competitor", None) and a.analysis == "竞争对手低价抢单"
    assert f.get(Customer, a.customer_id).status == "lost"
    page = admin_client.get("/admin/churn/analysis")
    assert page.status_code == 200
    assert "被竞争对手抢走" in page.text and "吴经理" in page.text
    assert "/static/vendor/echarts/echarts.min.js" in page.text
    assert admin_client.get("/static/vendor/echarts/echarts.min.js").status_code == 200
    # closed alerts stay closed
    assert _post(admin_client, url, {"outcome": "retained", "analysis": "再来"}).status_code == 400


def test_retained_restores_the_customer(open_alert: ChurnAlert, admin_client: Any) -> None:
    r = _post(admin_client, f"/admin/churn/alerts/{open_alert.id}/close",
              {"outcome": "retained", "reason": "", "analysis": "客户续签年度合同"})
    assert r.status_code == 303
    assert f.get(ChurnAlert, open_alert.id).status == "retained"
    assert f.get(Customer, open_alert.customer_id).status == "active"


def test_other_manager_gets_404_everywhere(open_alert: ChurnAlert, make_user: Any, login_as: Any) -> None:
    make_user("churn_other")
    o = login_as("churn_other")
    assert "流失测试公司" not in o.get("/admin/churn/alerts").text
    assert o.get(f"/admin/churn/alerts/{open_alert.id}").status_code == 404
    assert _post(o, f"/admin/churn/alerts/{open_alert.id}/follow", {"measures": "越权"}).status_code == 404
    assert _post(o, f"/admin/churn/alerts/{open_alert.id}/close",
                 {"outcome": "lost", "reason": "price", "analysis": "越权"}).status_code == 404
    assert f.get(ChurnAlert, open_alert.id).status == "open"
    # managers have no analysis page by default; a readonly user sees it with all data
    assert o.get("/admin/churn/analysis").status_code == 403


def test_rule_form_validates(admin_client: Any) -> None:
    token = csrf_token(admin_client)
    r = admin_client.post("/admin/churn-rule/create", data={
        "csrf_token": token, "name": "坏规则", "metric": "order_amount_drop_pct", "threshold": "150",
        "risk_level": "high", "is_active": "y"}, follow_redirects=False)
    assert r.status_code == 400
    r = admin_client.post("/admin/churn-rule/create", data={
        "csrf_token": token, "name": "九十天未联系", "metric": "days_since_contact", "threshold": "90",
        "risk_level": "medium", "is_active": "y"}, follow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(ChurnRule)).scalar_one() == 1


def test_many_alerts_at_once_go_through_the_server_side_insert(mgr: Any, monkeypatch: Any) -> None:
    from crm_admin.churn import service

    monkeypatch.setattr(service, "BULK_SERVER_SIDE", 2)
    rule("days_since_contact", "30")
    ids = {f.customer(mgr.id, last_contact_at=NOW - dt.timedelta(days=60)).id for _ in range(5)}
    assert _eval().opened == 5
    assert _eval().opened == 0
    assert {a.customer_id for a in _alerts()} == ids


def test_a_closed_alert_never_counts_as_open_whatever_its_writer_set() -> None:
    """A closed alert written with open_key=None used to take the column's default (1) and count as open."""
    from sqlalchemy import select

    from crm_admin import db
    from crm_admin.churn.models import ChurnAlert, ChurnRule
    from crm_admin.customers.models import Customer

    with db.transaction() as s:
        customer = Customer(code="C-CH-OK", name="已挽回客户")
        rule = ChurnRule(name="测试规则", metric="days_since_order", threshold=90, risk_level="medium")
        s.add_all([customer, rule])
        s.flush()
        for status in ("retained", "lost", "dismissed", "following"):
            s.add(ChurnAlert(customer_id=customer.id, rule_id=rule.id, risk_level="medium", status=status,
                             open_key=None))
            s.flush()
    with db.session_factory()() as s:
        keys = dict(s.execute(select(ChurnAlert.status, ChurnAlert.open_key)).tuples().all())
    assert keys == {"retained": None, "lost": None, "dismissed": None, "following": 1}
