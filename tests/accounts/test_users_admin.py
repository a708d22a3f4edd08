"""Users admin: create with roles and department, disable/enable, reset password, roles take effect at once."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.conftest import PASSWORD, csrf_token, login


def _post(client: Any, url: str, data: dict[str, Any]) -> Any:
    token = csrf_token(client)
    return client.post(url, data={**data, "csrf_token": token}, headers={"X-CSRF-Token": token},
                       follow_redirects=False)


def _user(username: str) -> Any:
    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        return session.execute(select(SysUser).where(SysUser.username == username)).scalar_one_or_none()


def test_admin_creates_user_with_roles_and_dept(admin_client: Any, make_client: Any) -> None:
    from crm_admin.accounts.models import SysDept
    from crm_admin.accounts.service import user_roles

    with db.transaction() as session:
        dept = SysDept(name="销售三部")
        session.add(dept)
        session.flush()
        dept_id = dept.id
    page = admin_client.get("/admin/users")
    assert page.status_code == 200 and "用户管理" in page.text
    form = admin_client.get("/admin/users/new")
    assert form.status_code == 200 and "销售三部" in form.text
    r = _post(admin_client, "/admin/users/new", {
        "username": "zhang", "real_name": "张三", "dept_id": str(dept_id), "roles": ["manager"],
        "password": "Init1234x", "confirm_password": "Init1234x",
    })
    assert r.status_code == 302, r.text[-1500:]
    user = _user("zhang")
    assert user.dept_id == dept_id and user.must_change_password and user.real_name == "张三"
    with db.session_factory()() as session:
        assert user_roles(session, user.id) == ["manager"]
    # first sign-in forces the password change
    c = make_client()
    assert login(c, "zhang", "Init1234x").status_code == 302
    r = c.get("/admin/customer/list", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].endswith("/admin/account/password")


def test_create_user_refuses_bad_input_and_changes_nothing(admin_client: Any) -> None:
    before = _count_users()
    for data in (
        {"username": "", "password": "Init1234x", "confirm_password": "Init1234x"},
        {"username": "weak", "password": "short", "confirm_password": "short"},
        {"username": "mism", "password": "Init1234x", "confirm_password": "Init1234y"},
        {"username": "admin", "password": "Init1234x", "confirm_password": "Init1234x"},
        {"username": "badrole", "password": "Init1234x", "confirm_password": "Init1234x", "roles": ["nope"]},
        {"username": "baddept", "password": "Init1234x", "confirm_password": "Init1234x", "dept_id": "99999"},
    ):
        r = _post(admin_client, "/admin/users/new", data)
        assert r.status_code == 400, (data, r.status_code)
        assert "alert-danger" in r.text
    assert _count_users() == before


def _count_users() -> int:
    from sqlalchemy import func

    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        return int(session.execute(select(func.count()).select_from(SysUser)).scalar() or 0)


def test_disable_user_ends_session_and_blocks_login_but_keeps_customers(
        admin_client: Any, make_user: Any, login_as: Any, make_client: Any) -> None:
    from crm_admin.customers.models import Customer

    user = make_user("li", ["manager"])
    with db.transaction() as session:
        session.add(Customer(code="C-LI", name="李的客户", manager_id=user.id))
    li = login_as("li")
    assert li.get("/admin/customer/list").status_code == 200
    r = _post(admin_client, f"/admin/users/{user.id}", {"op": "disable"})
    assert r.status_code == 200 and "已停用" in r.text
    assert li.get("/admin/customer/list", follow_redirects=False).status_code == 302  # back to login
    assert login(make_client(), "li", PASSWORD).status_code == 400
    with db.session_factory()() as session:
        assert session.execute(select(Customer.manager_id).where(Customer.code == "C-LI")).scalar() == user.id
    r = _post(admin_client, f"/admin/users/{user.id}", {"op": "enable"})
    assert r.status_code == 200
    assert login(make_client(), "li", PASSWORD).status_code == 302


def test_admin_cannot_disable_self_or_last_admin(admin_client: Any) -> None:
    admin = _user("admin")
    r = _post(admin_client, f"/admin/users/{admin.id}", {"op": "disable"})
    assert r.status_code == 400
    assert _user("admin").is_active


def test_reset_password_forces_change_and_ends_session(admin_client: Any, make_user: Any, login_as: Any,
                                                       make_client: Any) -> None:
    user = make_user("wang", ["manager"])
    wang = login_as("wang")
    r = _post(admin_client, f"/admin/users/{user.id}", {"op": "reset", "new_password": "Reset123x",
                                                        "confirm_password": "Reset123x"})
    assert r.status_code == 200, r.text[-1000:]
    assert wang.get("/admin/customer/list", follow_redirects=False).status_code == 302
    fresh = _user("wang")
    assert fresh.must_change_password
    assert login(make_client(), "wang", PASSWORD).status_code == 400
    c = make_client()
    assert login(c, "wang", "Reset123x").status_code == 302
    assert c.get("/admin/customer/list", follow_redirects=False).headers["location"].endswith("/admin/account/password")


def test_role_change_takes_effect_on_next_request(admin_client: Any, make_user: Any, login_as: Any) -> None:
    user = make_user("zhao", ["readonly"])
    zhao = login_as("zhao")
    assert zhao.get("/admin/customer/create").status_code == 403
    r = _post(admin_client, f"/admin/users/{user.id}", {"op": "save", "real_name": "赵", "roles": ["manager"]})
    assert r.status_code == 200, r.text[-1000:]
    # the role change ended the old session; a new one has the new rights
    assert zhao.get("/admin/customer/list", follow_redirects=False).status_code == 302
    zhao2 = login_as("zhao")
    assert zhao2.get("/admin/customer/create").status_code == 200


def test_manager_cannot_use_users_admin(make_user: Any, login_as: Any) -> None:
    make_user("m1", ["manager"])
    m1 = login_as("m1")
    assert m1.get("/admin/users").status_code == 403
    assert m1.get("/admin/users/new").status_code == 403
    admin = _user("admin")
    r = _post(m1, f"/admin/users/{admin.id}", {"op": "reset", "new_password": "Hacked123", "confirm_password": "Hacked123"})
    assert r.status_code == 403
    assert not _user("admin").must_change_password


def test_epoch_bumps_on_any_status_change(make_user: Any) -> None:
    from crm_admin.accounts.models import SysUser

    user = make_user("sun", ["manager"])
    with db.transaction() as session:
        session.get(SysUser, user.id).is_active = False
    assert _user("sun").session_epoch == user.session_epoch + 1


def test_departments_tree_refuses_cycles(admin_client: Any) -> None:
    from crm_admin.accounts.models import SysDept

    with db.transaction() as session:
        root = SysDept(name="总部")
        session.add(root)
        session.flush()
        child = SysDept(name="华东", parent_id=root.id)
        session.add(child)
        session.flush()
        root_id, child_id = root.id, child.id
    page = admin_client.get("/admin/sys-dept/list")
    assert "总部 / 华东" in page.text
    r = _post(admin_client, f"/admin/sys-dept/edit/{root_id}", {"name": "总部", "parent": str(child_id), "sort": "0",
                                                               "save": "Save"})
    assert r.status_code == 400
    with db.session_factory()() as session:
        assert session.get(SysDept, root_id).parent_id is None


def test_role_scope_select_is_chinese_and_bumps_policy(admin_client: Any) -> None:
    from crm_admin.accounts.models import SysRole
    from crm_admin.core.permissions import Gate

    page = admin_client.get("/admin/sys-role/list")
    assert "仅本人" in page.text and "全部数据" in page.text
    with db.session_factory()() as session:
        role = session.execute(select(SysRole).where(SysRole.code == "manager")).scalar_one()
        version = Gate.current_version(session.connection())
    form = admin_client.get(f"/admin/sys-role/edit/{role.id}")
    assert "本部门及下级" in form.text
    r = _post(admin_client, f"/admin/sys-role/edit/{role.id}", {
        "code": "manager", "name": "客户经理", "data_scope": "dept", "is_active": "y", "save": "Save"})
    assert r.status_code == 302, r.text[-1500:]
    with db.session_factory()() as session:
        assert Gate.current_version(session.connection()) > version
        assert session.get(SysRole, role.id).data_scope == "dept"


def test_user_list_shows_every_users_roles_in_a_fixed_number_of_statements(
        admin_client: Any, make_user: Any) -> None:
    from tests.conftest import statements_sent

    def list_statements() -> tuple[str, int]:
        with statements_sent() as statements:
            page = admin_client.get("/admin/users")
        assert page.status_code == 200
        return page.text, len(statements)

    make_user("rolesa", ["manager"])
    admin_client.get("/admin/users")  # warm
    _, few = list_statements()
    make_user("rolesb", ["sales_lead", "manager"])
    make_user("rolesc", [])
    for n in range(5):
        make_user(f"rolesx{n}", ["manager"])
    admin_client.get("/admin/users")  # warm again: new users changed the policy version
    html, many = list_statements()
    assert many == few  # the roles of all users are read at once, not per user
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r'<tr data-username="([^"]+)">\s*<td>.*?</td><td>.*?</td><td>.*?</td>\s*<td>(.*?)</td>', html, re.S)}
    assert rows["rolesa"] == "客户经理"
    assert rows["rolesb"] == "客户经理、销售主管"  # in role-code order, as the edit form lists them
    assert rows["rolesc"] == ""
    assert rows["admin"] == "系统管理员"
