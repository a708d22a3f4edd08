"""The customer module works on whatever hangs off a customer through the registry: the 360° page's cost
does not grow with the number of rows, a cascade delete and a merge handle every kind (in an order the
foreign keys accept), and the module imports none of its neighbours."""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

import crm_admin
from crm_admin import db
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.churn.models import ChurnAlert
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import OpportunityStageHistory, SalesOpportunity
from crm_admin.opportunities.service import move_stage
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.transfers.models import CustomerTransfer
from tests.company import World
from tests.customers.conftest import form_token, merge_through_preview, principal_for
from tests.opportunities.conftest import opportunity_through

# Statements one 360° page costs (sign-in check and policy version, the route's scope check, the
# customer, each kind's reads, the names, the delete blockers): 21 before the registry, 16 with it,
# 17 with the public pools' timeline entries, 18 with the notification bell (one capped COUNT per page).
STATEMENTS_PER_360_PAGE = 18


class _Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Statements]:
    # the dictionary re-checks its version every 2 s: not part of the page's cost
    monkeypatch.setattr("crm_admin.dictionary.service._CHECK_EVERY", 3600.0)
    seen = _Statements()
    yield seen
    if event.contains(Engine, "before_cursor_execute", seen):
        event.remove(Engine, "before_cursor_execute", seen)


def _count_page(client: Any, url: str, seen: _Statements) -> int:
    assert client.get(url).status_code == 200  # warm: caches filled, connection open
    seen.seen.clear()
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        r = client.get(url)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert r.status_code == 200
    return len(seen.seen)


def _more_of_everything(world: World, owner: str, n: int) -> None:
    """``n`` more rows of every kind on ``owner``'s customer, opportunities moved through stages."""
    cid, uid = world.row(owner, "customer"), world.users[owner]
    now = dt.datetime.now(dt.UTC)
    with acting_as(SYSTEM), db.transaction() as s:
        for i in range(n):
            lk = Linkman(customer_id=cid, name=f"联系人{i}")
            s.add(lk)
            s.flush()
            s.add_all([
                FollowUp(customer_id=cid, linkman_id=lk.id, manager_id=uid, method="phone", content=f"第{i}次",
                         contacted_at=now - dt.timedelta(hours=i)),
                CustomerCare(customer_id=cid, linkman_id=lk.id, care_type="phone_call", manager_id=uid),
                CustomerOrder(order_no=f"SO-more-{i}", customer_id=cid, order_date=dt.date.today(),
                              amount=Decimal("5.00"), manager_id=uid),
                CustomerTransfer(customer_id=cid, old_manager_id=None, new_manager_id=uid, reason="补充"),
            ])
    principal = principal_for(owner)
    for i in range(n):
        with db.transaction() as s:
            opportunity_through(s, principal, cid, f"商机{i}", "proposal")


def test_the_360_page_costs_a_fixed_number_of_statements(
        world: World, login_as: Any, statements: _Statements) -> None:
    client = login_as("mgr_a")
    url = f"/admin/customer/360/{world.row('mgr_a', 'customer')}"
    first = _count_page(client, url, statements)
    assert first <= STATEMENTS_PER_360_PAGE, "\n".join(statements.seen)
    _more_of_everything(world, "mgr_a", 4)
    assert _count_page(client, url, statements) == first, "\n".join(statements.seen)


def test_stage_changes_are_on_the_360_timeline(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    make_user("li")
    cust = make_customer("阶段公司", manager="wang")
    wang = principal_for("wang")
    with db.transaction() as s:
        opp = opportunity_through(s, wang, cust.id, "年度框架协议", "proposal")
    html = login_as("wang").get(f"/admin/customer/360/{cust.id}").text
    assert 'data-kind="阶段变更"' in html and "初步接洽 → 方案报价" in html
    # the opportunity links to its details, where the whole history is
    assert f"/admin/sales-opportunity/details/{opp.id}" in html
    assert login_as("li").get(f"/admin/customer/360/{cust.id}").status_code == 404


def test_the_360_timeline_reads_statuses_as_words(make_user: Any, login_as: Any, make_customer: Any) -> None:
    """No status or risk codes on a Chinese screen: done/following/medium/completed read as words."""
    from crm_admin.churn.models import ChurnRule

    make_user("wang")
    cust = make_customer("状态公司", manager="wang")
    now = dt.datetime.now(dt.UTC)
    with db.transaction() as s:
        rule = ChurnRule(name="九十天未下单", metric="days_since_order", threshold=Decimal(90))
        s.add(rule)
        s.flush()
        s.add_all([
            CustomerCare(customer_id=cust.id, care_type="visit", due_date=now.date(), care_time=now,
                         detail="拜访", feedback="满意", status="done", origin="manual"),
            ChurnAlert(customer_id=cust.id, rule_id=rule.id, risk_level="medium", status="following",
                       analysis="订单减少"),
            CustomerOrder(order_no="O-TL-1", customer_id=cust.id, order_date=now.date(), status="completed",
                          amount=Decimal("10.00")),
        ])
    html = login_as("wang").get(f"/admin/customer/360/{cust.id}").text
    assert "状态:已完成" in html and "风险:中风险" in html and "状态:跟进中" in html and "已完成" in html
    for code in ("状态:done", "风险:medium", "状态:following", ">completed<"):
        assert code not in html


def test_cascade_delete_removes_every_kind_in_an_order_the_foreign_keys_accept(
        world: World, admin_client: Any) -> None:
    """Contacts are referred to by follow-ups, care tasks and care plans; care tasks by plans' tasks;
    opportunities by their stage history and follow-ups; orders by their items."""
    cid = world.row("mgr_a", "customer")
    with db.transaction() as s:
        move_stage(s, principal_for("admin"), opportunity_id=world.row("mgr_a", "opportunity"), stage="proposal")
        s.get(CustomerCare, world.row("mgr_a", "customer_care")).plan_id = world.row("mgr_a", "care_plan")
        s.get(FollowUp, world.row("mgr_a", "follow_up")).opportunity_id = world.row("mgr_a", "opportunity")
    page = admin_client.get(f"/admin/customer/360/{cid}")
    r = admin_client.post(f"/admin/customer/360/{cid}/delete", data={
        "csrf_token": form_token(page.text), "confirm_name": "客户mgr_a有限公司", "cascade": "1"},
        follow_redirects=False)
    assert r.status_code == 303 and "customer/list" in r.headers["location"], r.headers["location"]
    with db.session_factory()() as s:
        assert s.get(Customer, cid) is None
        for model in (Linkman, FollowUp, SalesOpportunity, CustomerOrder, CustomerCare, CarePlan,
                      CustomerTransfer, ChurnAlert):
            assert s.execute(select(func.count()).select_from(model)
                             .where(model.customer_id == cid)).scalar_one() == 0, model
        assert s.get(OrderItem, world.row("mgr_a", "order_item")) is None
        assert s.execute(select(func.count()).select_from(OpportunityStageHistory).where(
            OpportunityStageHistory.opportunity_id == world.row("mgr_a", "opportunity"))).scalar_one() == 0
        # the other managers' customers are untouched
        assert s.get(Customer, world.row("mgr_b", "customer")) is not None


def test_merge_keeps_one_primary_contact(admin_client: Any, make_customer: Any) -> None:
    keep = make_customer("保留公司")
    drop = make_customer("重复公司")
    with acting_as(SYSTEM), db.transaction() as s:
        s.add_all([Linkman(customer_id=keep.id, name="保留方主联系人", is_primary=True),
                   Linkman(customer_id=drop.id, name="重复方主联系人", is_primary=True),
                   Linkman(customer_id=drop.id, name="重复方普通联系人")])
    r = merge_through_preview(admin_client, str(keep.id), drop.id)
    assert r.status_code == 303, r.text[:500]
    with db.session_factory()() as s:
        contacts = dict(s.execute(select(Linkman.name, Linkman.is_primary).where(Linkman.customer_id == keep.id)).all())
    assert contacts == {"保留方主联系人": True, "重复方主联系人": False, "重复方普通联系人": False}


# ----- the customer module and its neighbours -----------------------------------------------------

PACKAGE = Path(crm_admin.__file__).parent
# what the customer module may build on: shared machinery, users (a customer's manager), the dictionary
BELOW_CUSTOMERS = {"core", "db", "settings", "customers", "accounts", "dictionary", "imports"}
# the imports the customer module still makes of its neighbours: none (a change of manager in the form
# and the "has an open opportunity" filter go through core.customer_records, which those modules fill)
JUSTIFIED: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_customer_module_imports_none_of_the_records_hanging_off_it() -> None:
    neighbours = set()
    for path in sorted((PACKAGE / "customers").glob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "crm_admin" and len(parts) > 1 and parts[1] not in BELOW_CUSTOMERS:
                neighbours.add((path.name, module))
    assert neighbours - JUSTIFIED == set(), "register the kind of record in its module's records.py instead"
    assert JUSTIFIED - neighbours == set(), "no longer needed: remove it from JUSTIFIED"
