"""Nobody grants more than they hold, by any path (issue: a non-admin holding ``role, edit`` re-posted
``/admin/sys-role/edit/<id>`` with ``data_scope=all`` and their own role — or every manager — then saw
every customer; the policy grid refused the same change)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from tests.company import World, snapshot
from tests.conftest import ADMIN_PASSWORD, csrf_token


def _grant(role: str, *pairs: tuple[str, str]) -> None:
    from crm_admin.accounts.models import CasbinRule
    from crm_admin.core.permissions import bump_policy_version

    with db.transaction() as session:
        for resource, action in pairs:
            session.add(CasbinRule(ptype="p", v0=f"role:{role}", v1=resource, v2=action))
        session.flush()
        bump_policy_version(session.connection())


def _role(code: str) -> Any:
    from crm_admin.accounts.models import SysRole

    with db.session_factory()() as session:
        return session.execute(select(SysRole).where(SysRole.code == code)).scalar_one()


@pytest.fixture
def lead_edits_roles(world: World) -> World:
    _grant("sales_lead", ("role", "list"), ("role", "view"), ("role", "edit"), ("role", "create"),
           ("role", "delete"), ("user", "list"), ("user", "view"), ("user", "edit"),
           ("policy", "list"), ("policy", "edit"), ("dept", "list"), ("dept", "view"), ("dept", "edit"))
    return world


def _role_form(role: Any, token: str, **changes: Any) -> dict[str, Any]:
    form = {"csrf_token": token, "code": role.code, "name": role.name, "data_scope": role.data_scope,
            "remark": role.remark or ""}
    if role.is_active:
        form["is_active"] = "y"
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


@pytest.mark.parametrize("code", ["sales_lead", "manager"])
def test_role_form_cannot_widen_a_scope_beyond_the_editors(lead_edits_roles: World, login_as: Any,
                                                           code: str) -> None:
    lead = login_as("lead")
    role = _role(code)
    assert lead.get(f"/admin/sys-role/edit/{role.id}").status_code == 200
    before = snapshot()
    response = lead.post(f"/admin/sys-role/edit/{role.id}", data=_role_form(role, csrf_token(lead),
                                                                             data_scope="all"),
                         follow_redirects=False)
    assert response.status_code in (400, 403), response.status_code
    assert "数据范围" in response.text and "Traceback" not in response.text
    assert _role(code).data_scope == role.data_scope
    assert snapshot() == before
    # and the lead still sees only their own department's customers
    listing = lead.get("/admin/customer/list").text
    assert "客户mgr_c有限公司" not in listing


def test_role_form_refuses_a_new_role_wider_than_the_editor(lead_edits_roles: World, login_as: Any) -> None:
    lead = login_as("lead")
    response = lead.post("/admin/sys-role/create", data={
        "csrf_token": csrf_token(lead), "code": "super_sales", "name": "超级销售", "data_scope": "all",
        "is_active": "y"}, follow_redirects=False)
    assert response.status_code in (400, 403)
    with db.session_factory()() as session:
        from crm_admin.accounts.models import SysRole

        assert session.execute(select(SysRole).where(SysRole.code == "super_sales")).first() is None


def test_role_form_cannot_switch_roles_on_or_off_beyond_the_editors_rights(lead_edits_roles: World,
                                                                           login_as: Any) -> None:
    lead = login_as("lead")
    readonly = _role("readonly")  # scope "all": wider than the lead's
    response = lead.post(f"/admin/sys-role/edit/{readonly.id}",
                         data=_role_form(readonly, csrf_token(lead), is_active=None), follow_redirects=False)
    assert response.status_code in (400, 403)
    assert _role("readonly").is_active is True
    admin = _role("admin")
    response = lead.post(f"/admin/sys-role/edit/{admin.id}",
                         data=_role_form(admin, csrf_token(lead), is_active=None), follow_redirects=False)
    assert response.status_code in (400, 403)
    assert _role("admin").is_active is True


def test_role_delete_cannot_drop_permissions_the_editor_lacks(lead_edits_roles: World, login_as: Any) -> None:
    from crm_admin.accounts.models import CasbinRule, SysRole

    with db.transaction() as session:
        session.add(SysRole(code="auditor", name="审计员", data_scope="self"))
    _grant("auditor", ("audit", "list"))
    lead = login_as("lead")
    role = _role("auditor")
    response = lead.request("DELETE", f"/admin/sys-role/delete?pks={role.id}",
                            headers={"X-CSRF-Token": csrf_token(lead)})
    # SQLAdmin's delete answers with the list URL carrying the refusal
    assert response.status_code == 200 and "error=" in response.text
    with db.session_factory()() as session:
        assert session.execute(select(CasbinRule).where(CasbinRule.v0 == "role:auditor")).first() is not None


def test_grid_and_form_give_the_same_answer(lead_edits_roles: World, login_as: Any) -> None:
    lead = login_as("lead")
    token = csrf_token(lead)
    response = lead.post("/admin/policy", data={"csrf_token": token, "scope:manager": "all"},
                         follow_redirects=False)
    assert response.status_code == 403 and "数据范围" in response.text
    assert _role("manager").data_scope == "self"


def test_user_form_cannot_take_over_a_stronger_account(lead_edits_roles: World, login_as: Any,
                                                       make_client: Any) -> None:
    from crm_admin.accounts.models import SysUser
    from tests.conftest import login

    lead = login_as("lead")
    with db.session_factory()() as session:
        admin_id = session.execute(select(SysUser.id).where(SysUser.username == "admin")).scalar_one()
        hash_before = session.get(SysUser, admin_id).password_hash  # type: ignore[union-attr]
    token = csrf_token(lead)
    response = lead.post(f"/admin/users/{admin_id}", data={
        "csrf_token": token, "op": "reset", "new_password": "Takeover123", "confirm_password": "Takeover123"})
    assert response.status_code == 403 and "权限比您大" in response.text
    assert login(make_client(), "admin", "Takeover123").status_code == 400
    assert login(make_client(), "admin", ADMIN_PASSWORD).status_code == 302
    for op in ("disable", "unlock"):
        assert lead.post(f"/admin/users/{admin_id}", data={"csrf_token": token, "op": op}).status_code == 403
    with db.session_factory()() as session:
        admin = session.get(SysUser, admin_id)
        assert admin is not None and admin.is_active and admin.password_hash == hash_before


def test_user_form_cannot_move_the_editor_up_the_tree(lead_edits_roles: World, login_as: Any,
                                                      make_user: Callable[..., Any]) -> None:
    """The lead's scope is "本部门及下级": moving themselves (or a team member) into 二部 would widen it."""
    from crm_admin.accounts.models import SysDept, SysUser

    with db.transaction() as session:
        top = SysDept(name="总公司")
        session.add(top)
        session.flush()
        for dept_id in (world_dept(session, "销售一部"), world_dept(session, "销售二部")):
            session.get(SysDept, dept_id).parent_id = top.id  # type: ignore[union-attr]
        top_id = top.id
    lead = login_as("lead")
    users = lead_edits_roles.users
    token = csrf_token(lead)
    for user_id, dept_id in ((users["lead"], top_id), (users["mgr_a"], lead_edits_roles.depts["s2"])):
        response = lead.post(f"/admin/users/{user_id}", data={
            "csrf_token": token, "op": "save", "real_name": "", "dept_id": str(dept_id), "roles": "sales_lead"
            if user_id == users["lead"] else "manager"})
        assert response.status_code == 403, response.status_code
    with db.session_factory()() as session:
        assert session.get(SysUser, users["lead"]).dept_id == lead_edits_roles.depts["s1"]  # type: ignore[union-attr]
        assert session.get(SysUser, users["mgr_a"]).dept_id == lead_edits_roles.depts["s1"]  # type: ignore[union-attr]
    # the department tree itself: re-parenting 二部 under 一部 would put it in the lead's scope
    response = lead.post(f"/admin/sys-dept/edit/{lead_edits_roles.depts['s2']}", data={
        "csrf_token": token, "name": "销售二部", "parent": str(lead_edits_roles.depts["s1"]), "sort": "0"},
        follow_redirects=False)
    assert response.status_code in (400, 403)
    assert "客户mgr_c有限公司" not in lead.get("/admin/customer/list").text


def world_dept(session: Any, name: str) -> int:
    from crm_admin.accounts.models import SysDept

    return int(session.execute(select(SysDept.id).where(SysDept.name == name)).scalar_one())


def test_nobody_removes_the_last_administrator(admin_client: Any) -> None:
    admin = _role("admin")
    response = admin_client.post(f"/admin/sys-role/edit/{admin.id}",
                                 data=_role_form(admin, csrf_token(admin_client), data_scope="dept"),
                                 follow_redirects=False)
    assert response.status_code == 400
    assert _role("admin").data_scope == "all"
