"""The data scope is read in one place: other modules ask ``core.scope`` (who is in scope, whom work may
be given to) instead of reading the principal's internals, so a rule changes in one place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.company import World
from tests.conftest import csrf_token

PACKAGE = Path(__file__).resolve().parents[2] / "crm_admin"
SCOPE_MODULES = {PACKAGE / "core" / "scope.py", PACKAGE / "core" / "principal.py"}
INTERNALS = re.compile(r"\b(visible_user_ids|visible_users)\b")


def test_scope_internals_are_read_only_by_the_scope_module() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py")) if path not in SCOPE_MODULES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if INTERNALS.search(line)
    ]
    assert not offenders, "ask crm_admin.core.scope instead of reading the scope's internals: " + ", ".join(offenders)


def test_customer_form_manager_picker_offers_only_assignable_people(world: World, login_as: Any,
                                                                    make_user: Any) -> None:
    make_user("ro_s1", ["readonly"], dept_id=world.depts["s1"])
    lead = login_as("lead")
    found = lead.get("/admin/customer/ajax/lookup", params={"name": "manager", "term": "g"}).json()
    names = {item["text"] for item in found["results"]}
    assert any("mgr_a" in n for n in names) and any("mgr_b" in n for n in names)
    assert not any(("mgr_c" in n) or ("admin" in n) or ("ro_s1" in n) or n.endswith("(ro)") for n in names)


def test_customer_form_refuses_a_posted_manager_outside_the_rule(world: World, login_as: Any,
                                                                   make_user: Any) -> None:
    from crm_admin.customers.models import Customer

    world.users["ro_s1"] = make_user("ro_s1", ["readonly"], dept_id=world.depts["s1"]).id
    lead = login_as("lead")
    token = csrf_token(lead)
    for target, message in (("mgr_c", "不在您的数据范围内"), ("ro", "不在您的数据范围内"),
                            ("ro_s1", "不能负责客户")):
        response = lead.post("/admin/customer/create", data={
            "csrf_token": token, "name": f"表单越界{target}有限公司", "status": "potential",
            "manager": str(world.users[target]),
        }, follow_redirects=False)
        assert response.status_code == 400, response.status_code
        assert message in response.text, target
    # editing an existing customer: the same rule
    response = lead.post(f"/admin/customer/edit/{world.row('mgr_a', 'customer')}", data={
        "csrf_token": token, "name": "客户mgr_a有限公司", "status": "potential",
        "manager": str(world.users["ro_s1"]),
    }, follow_redirects=False)
    assert response.status_code == 400 and "不能负责客户" in response.text
    ok = lead.post("/admin/customer/create", data={
        "csrf_token": token, "name": "表单本部有限公司", "status": "potential", "manager": str(world.users["mgr_b"]),
    }, follow_redirects=False)
    assert ok.status_code == 302
    with db.session_factory()() as session:
        rows = session.execute(select(Customer.name, Customer.manager_id).where(Customer.name.like("表单%"))).all()
    assert [tuple(r) for r in rows] == [("表单本部有限公司", world.users["mgr_b"])]
