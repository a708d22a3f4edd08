"""The pool services called directly: claim, assign, return, limits (HTTP paths: test_pool_http.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.care.models import CustomerCare
from crm_admin.core.errors import Conflict, NotFound, UserError
from crm_admin.core.principal import load_principal
from crm_admin.customers.models import Customer
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.pools import service
from crm_admin.pools.models import CustomerPoolLog
from crm_admin.transfers.models import CustomerTransfer
from tests.care import factories as f
from tests.core.test_kept_totals import assert_exact
from tests.pools import factories as pf


def _principal(user_id: int) -> Any:
    with db.session_factory()() as s:
        return load_principal(s.connection(), s.get(SysUser, user_id))


def _run(fn: Any, **kw: Any) -> Any:
    with db.transaction() as s:
        return fn(s, **kw)


def _count(model: type, *where: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def test_return_then_claim_moves_customer_and_work(make_user: Any) -> None:
    a = make_user("pa")
    b = make_user("pb")
    pool = pf.pool("华东公海")
    cust = f.customer(a.id, "退回测试公司")
    task = f.care(cust.id, a.id)
    opp = f.opportunity(cust.id, a.id)

    res = _run(service.return_to_pool, principal=_principal(a.id), pool_id=pool.id,
               customer_ids=[cust.id], reason="长期联系不上")
    assert res.customers == [cust.id]
    c = f.get(Customer, cust.id)
    assert c.manager_id is None and c.pool_id == pool.id and c.pool_entered_at is not None
    assert f.get(CustomerCare, task.id).manager_id is None
    assert f.get(SalesOpportunity, opp.id).customer_manager_id is None
    with db.session_factory()() as s:
        t = s.execute(select(CustomerTransfer)).scalar_one()
    assert t.old_manager_id == a.id and t.new_manager_id is None and t.reason == "退回公海:长期联系不上"
    assert_exact()  # the kept totals (by the customer's manager) followed the work to nobody

    res = _run(service.claim_customers, principal=_principal(b.id), pool_id=pool.id, customer_ids=[cust.id])
    c = f.get(Customer, cust.id)
    assert c.manager_id == b.id and c.pool_id is None
    assert_exact()
    assert f.get(SalesOpportunity, opp.id).customer_manager_id == b.id
    assert _count(CustomerPoolLog) == 2
    assert _count(CustomerTransfer, CustomerTransfer.reason == "从公海领取") == 1
    with pytest.raises(NotFound):
        _run(service.claim_customers, principal=_principal(a.id), pool_id=pool.id, customer_ids=[cust.id])


def test_reason_is_required(make_user: Any) -> None:
    a = make_user("pa")
    pool = pf.pool()
    cust = f.customer(a.id)
    for bad in ("", " x ", "长" * 501):
        with pytest.raises(UserError):
            _run(service.return_to_pool, principal=_principal(a.id), pool_id=pool.id,
                 customer_ids=[cust.id], reason=bad)
    assert f.get(Customer, cust.id).manager_id == a.id


def test_limits(make_user: Any) -> None:
    a = make_user("pa")
    pool = pf.pool(hold_limit=10, daily_claim_limit=2)
    custs = [pf.pooled(pool.id) for _ in range(3)]
    with pytest.raises(UserError, match="每日领取上限"):
        _run(service.claim_customers, principal=_principal(a.id), pool_id=pool.id,
             customer_ids=[c.id for c in custs])
    _run(service.claim_customers, principal=_principal(a.id), pool_id=pool.id, customer_ids=[custs[0].id])
    pf.limit(pool.id, "manager", hold=1)
    with pytest.raises(UserError, match="持有上限"):
        _run(service.claim_customers, principal=_principal(a.id), pool_id=pool.id, customer_ids=[custs[1].id])
    assert f.get(Customer, custs[1].id).pool_id == pool.id


def test_conflict_when_taken_meanwhile(make_user: Any) -> None:
    a = make_user("pa")
    pool = pf.pool()
    cust = pf.pooled(pool.id)
    with db.transaction() as s:
        s.execute(Customer.__table__.update().where(Customer.id == cust.id).values(manager_id=a.id))
    with pytest.raises(Conflict):
        _run(service.claim_customers, principal=_principal(a.id), pool_id=pool.id, customer_ids=[cust.id])


def test_the_birthday_scan_leaves_customers_in_a_pool_alone(make_user: Any) -> None:
    import datetime as dt

    from crm_admin.care.service import fill_birthday_md, scan_birthdays

    owner = make_user("pbirth")
    pool = pf.pool("生日公海")
    today = dt.date(2026, 5, 20)
    pooled = pf.pooled(pool.id, "公海里的客户")
    owned = f.customer(owner.id, "有人负责的客户")
    f.linkman(pooled.id, birthday=dt.date(1980, 5, 20))
    f.linkman(owned.id, birthday=dt.date(1985, 5, 20))
    with db.transaction() as s:
        fill_birthday_md(s)
        assert scan_birthdays(s, today) == 1
    assert _count(CustomerCare, CustomerCare.customer_id == pooled.id) == 0
    assert _count(CustomerCare, CustomerCare.customer_id == owned.id, CustomerCare.manager_id == owner.id) == 1


def test_churn_evaluation_leaves_customers_in_a_pool_alone(make_user: Any) -> None:
    """Nobody would handle the alert of a pooled customer: none opens; an unhandled one opened before the
    customer came back to the pool goes away; after a claim the condition is looked at again."""
    import datetime as dt
    from decimal import Decimal

    from crm_admin.churn.models import ChurnAlert, ChurnRule
    from crm_admin.churn.service import evaluate

    owner = make_user("pchurn")
    pool = pf.pool("流失公海")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    pooled = pf.pooled(pool.id, "公海里的老客户", last_contact_at=long_ago, created_at=long_ago)
    owned = f.customer(owner.id, "有人负责的老客户", last_contact_at=long_ago, created_at=long_ago)
    f.add(ChurnRule(name="九十天未联系", metric="days_since_contact", threshold=Decimal("90"), risk_level="high",
                    is_active=True))
    today = dt.date.today()
    with db.transaction() as s:
        assert evaluate(s, today).opened == 1
    assert _count(ChurnAlert, ChurnAlert.customer_id == pooled.id) == 0
    assert _count(ChurnAlert, ChurnAlert.customer_id == owned.id, ChurnAlert.open_key == 1) == 1

    # the owned customer is returned to the pool: its unhandled alert goes, its status comes back
    with db.transaction() as s:
        s.execute(Customer.__table__.update().where(Customer.id == owned.id).values(pool_id=pool.id,
                                                                                     manager_id=None))
        result = evaluate(s, today)
    assert (result.opened, result.dismissed) == (0, 1)
    with db.session_factory()() as s:
        assert s.get(Customer, owned.id).status != "at_risk"  # type: ignore[union-attr]
    # claimed again: the condition still holds, the alert opens again for the new owner
    with db.transaction() as s:
        s.execute(Customer.__table__.update().where(Customer.id == owned.id).values(pool_id=None,
                                                                                     manager_id=owner.id))
        assert evaluate(s, today).opened == 1


def test_care_plans_of_a_pooled_customer_wait_until_it_is_claimed(make_user: Any) -> None:
    import datetime as dt

    from crm_admin.care.models import CarePlan
    from crm_admin.care.service import create_plan_tasks

    owner = make_user("pplan")
    pool = pf.pool("关怀公海")
    pooled = pf.pooled(pool.id, "公海里有计划的客户")
    owned = f.customer(owner.id, "有人负责有计划的客户")
    today = dt.date(2026, 6, 1)
    waiting = f.plan(pooled.id, None, today - dt.timedelta(days=10), interval_days=30)
    f.plan(owned.id, owner.id, today, interval_days=30)
    with db.transaction() as s:
        assert create_plan_tasks(s, today) == 1
    assert _count(CustomerCare, CustomerCare.customer_id == pooled.id) == 0
    with db.session_factory()() as s:
        assert s.get(CarePlan, waiting.id).next_date == today - dt.timedelta(days=10)  # type: ignore[union-attr]

    claimer = make_user("pplan_claimer")
    _run(service.claim_customers, principal=_principal(claimer.id), pool_id=pool.id, customer_ids=[pooled.id])
    with db.transaction() as s:
        assert create_plan_tasks(s, today) == 1  # one task for what was missed, for the claimer
    with db.session_factory()() as s:
        task = s.execute(select(CustomerCare).where(CustomerCare.customer_id == pooled.id)).scalar_one()
        assert task.manager_id == claimer.id
        assert s.get(CarePlan, waiting.id).next_date > today  # type: ignore[union-attr]
