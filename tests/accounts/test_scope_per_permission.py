"""A policy line carries its data scope: "see the team's customers, change only my own"
(``p, role:sales_lead, customer, view, dept_tree`` next to ``p, role:sales_lead, customer, edit, self``),
edited in the grid and the advanced editor, compiled into SQL by the scope module, and migrated from the
role-wide scope of earlier versions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text, update

from crm_admin import db
from tests.company import World, snapshot
from tests.conftest import csrf_token


def _form(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Repeated fields (the grid's checkboxes) as the client library wants them."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _set_scope(role: str, resource: str, action: str, scope: str) -> None:
    from crm_admin.accounts.models import CasbinRule
    from crm_admin.core.permissions import bump_policy_version

    with db.transaction() as session:
        changed = session.execute(update(CasbinRule).where(
            CasbinRule.ptype == "p", CasbinRule.v0 == f"role:{role}", CasbinRule.v1 == resource,
            CasbinRule.v2 == action).values(v3=scope)).rowcount
        assert changed == 1
        bump_policy_version(session.connection())


@pytest.fixture
def lead_edits_only_own(world: World) -> World:
    for action in ("edit", "delete"):
        _set_scope("sales_lead", "customer", action, "self")
    return world


def test_lead_sees_the_team_but_edits_only_own_customers(lead_edits_only_own: World, login_as: Any) -> None:
    world = lead_edits_only_own
    from crm_admin.core.routes import declared  # noqa: F401  (the pages below are declared routes)

    with db.transaction() as session:  # the lead owns a customer of their own
        from crm_admin.customers.models import Customer

        session.add(Customer(code="C-LEAD", name="主管自己的客户有限公司", manager_id=world.users["lead"]))
    lead = login_as("lead")
    team = world.row("mgr_a", "customer")
    listing = lead.get("/admin/customer/list").text
    assert "客户mgr_a有限公司" in listing and "客户mgr_b有限公司" in listing and "客户mgr_c有限公司" not in listing
    assert lead.get(f"/admin/customer/details/{team}").status_code == 200
    assert lead.get(f"/admin/customer/360/{team}").status_code == 200
    # editing or deleting a team member's customer (which the lead may look at): refused, nothing changes
    before = snapshot()
    assert lead.get(f"/admin/customer/edit/{team}").status_code == 403
    token = csrf_token(lead)
    response = lead.post(f"/admin/customer/edit/{team}", data={
        "csrf_token": token, "name": "改名了", "status": "potential"}, follow_redirects=False)
    assert response.status_code == 403
    lead.request("DELETE", f"/admin/customer/delete?pks={team}", headers={"X-CSRF-Token": token})
    response = lead.post(f"/admin/customer/360/{team}/delete", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code in (303, 404) and snapshot() == before
    # the details page offers no edit button for it; their own customer is editable
    details = lead.get(f"/admin/customer/details/{team}").text
    assert f"/admin/customer/edit/{team}" not in details
    with db.session_factory()() as session:
        own = session.execute(select(Customer.id).where(Customer.code == "C-LEAD")).scalar_one()
    assert f"/admin/customer/edit/{own}" in lead.get(f"/admin/customer/details/{own}").text
    response = lead.post(f"/admin/customer/edit/{own}", data={
        "csrf_token": token, "name": "主管自己的客户(改)有限公司", "status": "potential",
        "manager": str(world.users["lead"])}, follow_redirects=False)
    import re
    assert response.status_code == 302, re.findall(r'alert-danger[^>]*>([^<]*)<', response.text)
    # other permissions keep the role's scope: a contact on a team member's customer may still be added
    response = lead.post(f"/admin/customer/360/{team}/contact", data={"csrf_token": token, "name": "新联系人"},
                         follow_redirects=False)
    assert response.status_code == 303 and "error=" not in response.headers["location"]


def test_grid_sets_and_lists_a_scope_exception(world: World, admin_client: Any, login_as: Any) -> None:
    from crm_admin.accounts.policy import current_lines

    page = admin_client.get("/admin/policy")
    assert "按权限细分数据范围" in page.text
    form: list[tuple[str, str]] = [("csrf_token", csrf_token(admin_client))]
    with db.session_factory()() as session:
        lines = current_lines(session)
    form += [("perm", f"{line[1].removeprefix('role:')}|{line[2]}|{line[3]}") for line in lines
             if line[0] == "p" and "*" not in line[2:4]]
    form += [("add_role", "sales_lead"), ("add_resource", "customer"), ("add_action", "edit"), ("add_scope", "self")]
    response = admin_client.post("/admin/policy", data=_form(form))
    assert response.status_code == 200 and "已保存" in response.text
    with db.session_factory()() as session:
        lines = set(current_lines(session))
    assert ("p", "role:sales_lead", "customer", "edit", "self") in lines
    assert ("p", "role:sales_lead", "customer", "view", "dept_tree") in lines
    page = admin_client.get("/admin/policy").text
    assert 'name="except:sales_lead|customer|edit"' in page
    # the lead's edit of a team member's customer is now refused
    lead = login_as("lead")
    assert lead.get(f"/admin/customer/edit/{world.row('mgr_a', 'customer')}").status_code == 403
    # choosing "按角色默认" drops the exception again
    form = [(k, v) for k, v in form if not k.startswith("add_")] + [("except:sales_lead|customer|edit", "")]
    admin_client.post("/admin/policy", data=_form(form))
    with db.session_factory()() as session:
        assert ("p", "role:sales_lead", "customer", "edit", "dept_tree") in set(current_lines(session))


def test_role_default_scope_moves_the_permissions_that_followed_it(world: World, admin_client: Any) -> None:
    from crm_admin.accounts.models import SysRole
    from crm_admin.accounts.policy import current_lines

    _set_scope("sales_lead", "customer", "edit", "self")  # an exception, kept
    with db.session_factory()() as session:
        role = session.execute(select(SysRole).where(SysRole.code == "sales_lead")).scalar_one()
    response = admin_client.post(f"/admin/sys-role/edit/{role.id}", data={
        "csrf_token": csrf_token(admin_client), "code": "sales_lead", "name": role.name, "data_scope": "dept",
        "is_active": "y"}, follow_redirects=False)
    assert response.status_code == 302
    with db.session_factory()() as session:
        lines = set(current_lines(session))
    assert ("p", "role:sales_lead", "customer", "view", "dept") in lines
    assert ("p", "role:sales_lead", "customer", "edit", "self") in lines


def test_advanced_editor_reads_and_writes_scopes(admin_client: Any) -> None:
    text_now = admin_client.get("/admin/policy/advanced").text
    assert "p, role:sales_lead, customer, view, dept_tree" in text_now
    from crm_admin.accounts.policy import current_lines, format_line

    with db.session_factory()() as session:
        lines = current_lines(session)
    body = "\n".join(format_line(x) for x in lines)
    changed = body.replace("p, role:manager, customer, edit, self", "p, role:manager, customer, edit, dept")
    response = admin_client.post("/admin/policy/advanced", data={
        "csrf_token": csrf_token(admin_client), "text": changed, "op": "apply"})
    assert response.status_code == 200
    for bad, message in ((body + "\np, role:manager, customer, list, everywhere", "数据范围只能是"),
                         (body + "\np, role:manager, transfer, transfer", "不适用于"),
                         (body + "\np, role:manager, customer, list, all", "只能有一个数据范围")):
        response = admin_client.post("/admin/policy/advanced", data={
            "csrf_token": csrf_token(admin_client), "text": bad, "op": "apply"})
        assert response.status_code == 400 and message in response.text, message


def test_migration_writes_each_lines_scope_and_merges_transfer_permissions(engine: Any) -> None:
    """0008 → 0009 on data as the earlier versions left it (no scope on lines; the duplicate transfer)."""
    from alembic import command

    from crm_admin.accounts.models import CasbinRule
    from crm_admin.migrate import alembic_config, upgrade

    with db.transaction() as session:
        session.execute(update(CasbinRule).values(v3=""))
        session.add(CasbinRule(ptype="p", v0="role:manager", v1="transfer", v2="transfer"))
        session.add(CasbinRule(ptype="p", v0="role:readonly", v1="transfer", v2="transfer"))
    with engine.begin() as conn:  # back to just after 0009, then pretend 0009 had not run
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
        conn.execute(text("UPDATE alembic_version SET version_num = '0008'"))
    upgrade(engine)
    with db.session_factory()() as session:
        rows = {(r.v0, r.v1, r.v2): r.v3 for r in session.execute(
            select(CasbinRule).where(CasbinRule.ptype == "p")).scalars()}
    assert rows[("role:admin", "*", "*")] == "all"
    assert rows[("role:sales_lead", "customer", "view")] == "dept_tree"
    assert rows[("role:manager", "customer", "list")] == "self"
    assert not any(key[1:] == ("transfer", "transfer") for key in rows)
    assert rows[("role:readonly", "customer", "transfer")] == "all"  # kept the right it had
    assert rows[("role:manager", "customer", "transfer")] == "self"
