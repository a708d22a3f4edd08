"""Two app nodes on one database agree about sessions and permissions: a logout, a password change
(which signs the user out everywhere else), a disabled account and a policy change made on one node
are honoured by the other on its next request. The other node is a process of its own
(``other_node``), so nothing it decides can come from this process's memory."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.accounts.conftest import Node
from tests.accounts.test_policy_editor import _grid_form, _lines, _post
from tests.conftest import PASSWORD, csrf_token


def _cookie(client: Any) -> str:
    value = client.cookies.get("crm_session")
    assert value, "signed in without a session cookie"
    return str(value)


def _signed_out(response: httpx.Response) -> bool:
    return response.status_code in (302, 303) and "/admin/login" in response.headers.get("location", "")


def _page_token(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', client.get(path).text)
    assert match, f"no form token on {path}"
    return match.group(1)


def test_logout_on_one_node_ends_the_session_on_the_other(make_user: Any, login_as: Any,
                                                           other_node: Node) -> None:
    make_user("node_out1", ["manager"])
    here = login_as("node_out1")
    with other_node.client(ip="203.0.113.101", cookie=_cookie(here)) as there:
        assert there.get("/admin/customer/list").status_code == 200  # one session, both nodes
        out = here.post("/admin/logout", data={"csrf_token": csrf_token(here)}, follow_redirects=False)
        assert out.status_code in (302, 303)
        assert _signed_out(there.get("/admin/customer/list"))

    # and the other way round: signed in and out on the other node, refused here
    with other_node.client(ip="203.0.113.102") as there:
        assert other_node.login(there, "node_out1", PASSWORD).status_code == 302
        copied = str(there.cookies.get("crm_session"))
        here.cookies.clear()
        here.cookies.set("crm_session", copied)
        assert here.get("/admin/customer/list").status_code == 200
        token = _page_token(there, "/admin/logout")
        assert there.post("/admin/logout", data={"csrf_token": token}).status_code in (302, 303)
    assert _signed_out(here.get("/admin/customer/list", follow_redirects=False))


def test_password_change_on_one_node_signs_out_everywhere_else(make_user: Any, login_as: Any,
                                                               other_node: Node) -> None:
    make_user("node_pw1", ["manager"])
    laptop = login_as("node_pw1")  # a session served by this node
    with other_node.client(ip="203.0.113.103") as phone:
        assert other_node.login(phone, "node_pw1", PASSWORD).status_code == 302
        token = _page_token(phone, "/admin/account/password")
        changed = phone.post("/admin/account/password", data={
            "csrf_token": token, "old_password": PASSWORD,
            "new_password": "N3w-passw0rd!x", "confirm_password": "N3w-passw0rd!x"})
        assert changed.status_code == 200, changed.text[-500:]
        assert phone.get("/admin/customer/list").status_code == 200  # the session that changed it stays
    assert _signed_out(laptop.get("/admin/customer/list", follow_redirects=False))


def test_disabling_a_user_on_one_node_ends_their_sessions_on_the_other(
        admin_client: Any, make_user: Any, other_node: Node) -> None:
    user = make_user("node_off1", ["manager"])
    with other_node.client(ip="203.0.113.104") as there:
        assert other_node.login(there, "node_off1", PASSWORD).status_code == 302
        assert there.get("/admin/customer/list").status_code == 200
        r = _post(admin_client, f"/admin/users/{user.id}", {"op": "disable"})
        assert r.status_code in (200, 302, 303), r.text[-500:]
        assert _signed_out(there.get("/admin/customer/list"))


def test_policy_change_on_one_node_takes_effect_on_the_other(admin_client: Any, make_user: Any,
                                                             other_node: Node) -> None:
    """The other node caches each user's permissions per policy version; the version is read from the
    database on every request, so a grant made here applies there at once, to a live session."""
    make_user("node_pol1", ["manager"])
    with other_node.client(ip="203.0.113.105") as there:
        assert other_node.login(there, "node_pol1", PASSWORD).status_code == 302
        assert there.get("/admin/product/create").status_code == 403  # cached there: no right
        before = _lines()
        r = _post(admin_client, "/admin/policy", [*_grid_form(before), ("perm", "manager|product|create")])
        assert r.status_code == 200 and "已保存" in r.text
        assert there.get("/admin/product/create").status_code == 200
        r = _post(admin_client, "/admin/policy", _grid_form(before))
        assert r.status_code == 200 and "已保存" in r.text
        assert there.get("/admin/product/create").status_code == 403
