"""A small company for probing the scope: two teams, managers, a lead, a read-only user, and one
customer per manager with something of every kind hanging off it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as


@dataclass
class World:
    users: dict[str, int] = field(default_factory=dict)
    depts: dict[str, int] = field(default_factory=dict)
    # customer of each manager, and the ids of what hangs off it: rows[manager][kind] = id
    rows: dict[str, dict[str, int]] = field(default_factory=dict)

    def row(self, owner: str, kind: str) -> int:
        return self.rows[owner][kind]


KINDS = ("customer", "linkman", "follow_up", "opportunity", "customer_care", "care_plan",
         "order", "order_item", "churn_alert", "transfer")


def _make_rows(session: Any, owner_id: int, tag: str, product_id: int, rule_id: int) -> dict[str, int]:
    from crm_admin.care.models import CarePlan, CustomerCare
    from crm_admin.churn.models import ChurnAlert
    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.models import Customer
    from crm_admin.followups.models import FollowUp
    from crm_admin.opportunities.models import SalesOpportunity
    from crm_admin.orders.models import CustomerOrder, OrderItem
    from crm_admin.transfers.models import CustomerTransfer

    now = dt.datetime.now(dt.UTC)
    c = Customer(code=f"C-{tag}", name=f"客户{tag}有限公司", manager_id=owner_id, industry="it", level="A")
    session.add(c)
    session.flush()
    lk = Linkman(customer_id=c.id, name=f"联系人{tag}", mobile="13800000000")
    session.add(lk)
    session.flush()
    opp = SalesOpportunity(customer_id=c.id, title=f"商机{tag}", stage="initial", amount=Decimal("1000.00"),
                           manager_id=owner_id)
    fu = FollowUp(customer_id=c.id, linkman_id=lk.id, manager_id=owner_id, method="phone",
                  content=f"联系{tag}", contacted_at=now)
    care = CustomerCare(customer_id=c.id, linkman_id=lk.id, care_type="phone_call", manager_id=owner_id,
                        detail=f"关怀{tag}")
    plan = CarePlan(customer_id=c.id, linkman_id=lk.id, care_type="visit", interval_days=30,
                    next_date=dt.date.today(), manager_id=owner_id)
    order = CustomerOrder(order_no=f"SO-{tag}", customer_id=c.id, order_date=dt.date.today(),
                          amount=Decimal("10.00"), manager_id=owner_id)
    alert = ChurnAlert(customer_id=c.id, rule_id=rule_id, risk_level="high")
    transfer = CustomerTransfer(customer_id=c.id, old_manager_id=None, new_manager_id=owner_id, reason="初始分配")
    session.add_all([opp, fu, care, plan, order, alert, transfer])
    session.flush()
    item = OrderItem(order_id=order.id, product_id=product_id, quantity=1, unit_price=Decimal("10.00"))
    session.add(item)
    session.flush()
    return {"customer": c.id, "linkman": lk.id, "follow_up": fu.id, "opportunity": opp.id,
            "customer_care": care.id, "care_plan": plan.id, "order": order.id, "order_item": item.id,
            "churn_alert": alert.id, "transfer": transfer.id}


@pytest.fixture
def world(engine: Any, make_user: Callable[..., Any]) -> World:
    from crm_admin.accounts.models import SysDept
    from crm_admin.churn.models import ChurnRule
    from crm_admin.products.models import Product

    w = World()
    with acting_as(SYSTEM), db.transaction() as session:
        s1 = SysDept(name="销售一部")
        s2 = SysDept(name="销售二部")
        session.add_all([s1, s2])
        session.flush()
        s1a = SysDept(name="销售一部华东组", parent_id=s1.id)
        session.add(s1a)
        session.flush()
        w.depts = {"s1": s1.id, "s1a": s1a.id, "s2": s2.id}
    w.users["mgr_a"] = make_user("mgr_a", ["manager"], dept_id=w.depts["s1"]).id
    w.users["mgr_b"] = make_user("mgr_b", ["manager"], dept_id=w.depts["s1a"]).id
    w.users["mgr_c"] = make_user("mgr_c", ["manager"], dept_id=w.depts["s2"]).id
    w.users["lead"] = make_user("lead", ["sales_lead"], dept_id=w.depts["s1"]).id
    w.users["ro"] = make_user("ro", ["readonly"], dept_id=w.depts["s2"]).id
    with acting_as(SYSTEM), db.transaction() as session:
        product = Product(code="P-1", name="测试产品", price=Decimal("10.00"))
        rule = ChurnRule(name="30天未联系", metric="days_since_contact", threshold=Decimal("30"))
        session.add_all([product, rule])
        session.flush()
        for owner in ("mgr_a", "mgr_b", "mgr_c"):
            w.rows[owner] = _make_rows(session, w.users[owner], owner, product.id, rule.id)
    return w


def snapshot() -> dict[str, Any]:
    """A fingerprint of every business table: row counts and the newest update times."""
    import crm_admin.models  # noqa: F401
    from crm_admin.db import Base

    out: dict[str, Any] = {}
    with db.session_factory()() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in {"audit_log", "sys_meta", "job_run"}:
                continue
            stmt: Any = select(func.count()).select_from(table)
            count = session.execute(stmt).scalar()
            newest = None
            if "updated_at" in table.c:
                newest = session.execute(select(func.max(table.c.updated_at))).scalar()
            out[table.name] = (count, newest)
    return out
