"""The side menu (web/menu.py): what each role may open, which entry is open, in the chosen language."""

from __future__ import annotations

import re
from typing import Any


def _menu(html: str) -> str:
    match = re.search(r'<div class="navbar-nav">(.*?)</nav>', html, re.S)
    assert match, "the page has no menu"
    return match.group(1)


def _links(menu: str) -> dict[str, str]:
    """href → class of every link in the menu."""
    return {href: cls for cls, href in re.findall(r'<a class="([^"]*)" href="([^"]+)"', menu)}


def test_a_manager_sees_work_entries_and_no_administration(login_as: Any, make_user: Any) -> None:
    make_user("menu_mgr")
    menu = _menu(login_as("menu_mgr").get("/admin/customer/list").text)
    links = _links(menu)
    assert any(href.endswith("/admin/customer/list") for href in links)
    assert not any("/admin/sys-user" in href or "/admin/audit-log" in href or "/admin/casbin-rule" in href
                   for href in links)


def test_the_open_page_and_its_category_are_marked(admin_client: Any) -> None:
    menu = _menu(admin_client.get("/admin/customer/list").text)
    links = _links(menu)
    open_links = [href for href, cls in links.items() if cls.split()[-1] == "active"]
    assert len(open_links) == 1 and open_links[0].endswith("/admin/customer/list")
    # a custom page (no identity in its URL) is recognised too, on every request, not only the first
    for _ in range(2):
        links = _links(_menu(admin_client.get("/admin/care/workbench").text))
        assert [h for h, c in links.items() if c.endswith("active")] == \
            [h for h in links if h.endswith("/admin/care/workbench")]
    categories = re.findall(r'<a class="nav-link dropdown-toggle( active)?"', menu)
    assert categories.count(" active") == 1


def test_the_menu_follows_the_language(admin_client: Any) -> None:
    zh = _menu(admin_client.get("/admin/customer/list").text)
    admin_client.cookies.set("crm_lang", "en")
    en = _menu(admin_client.get("/admin/customer/list").text)
    titles = re.compile(r'<span class="nav-link-title">([^<]*)</span>')
    assert "客户管理" in titles.findall(zh)
    assert "Customers" in titles.findall(en) and not any("客户" in t for t in titles.findall(en))
    assert _links(zh).keys() == _links(en).keys()


def test_whether_an_entry_is_shown_depends_on_the_permissions_only(app: Any) -> None:
    """The menu is kept per permission set (web/menu.py): every view must decide from the principal's
    permissions alone. Two principals with the same permissions and nothing else alike (user, roles,
    department, scope) see the same entries; one permission less changes what a view answers."""
    from dataclasses import replace
    from types import SimpleNamespace

    from crm_admin.core.principal import Principal

    admin = app.state.admin
    every = frozenset((getattr(v, "resource", v.identity), a) for v in admin.views
                      for a in ("list", "view", "create", "edit", "delete", "import", "export", "assign"))
    one = Principal(id=1, username="a", real_name="", dept_id=1, roles=frozenset({"manager"}), scope="self",
                    permissions=every, visible_user_ids=frozenset({1}))
    other = replace(one, id=2, username="b", dept_id=None, roles=frozenset({"admin", "readonly"}), scope="all",
                    visible_user_ids=None)

    def answers(principal: Principal) -> list[tuple[bool, bool]]:
        request = SimpleNamespace(state=SimpleNamespace(principal=principal), path_params={}, scope={})
        return [(bool(v.is_visible(request)), bool(v.is_accessible(request))) for v in admin.views]

    assert answers(one) == answers(other)
    fewer = replace(one, permissions=frozenset(p for p in one.permissions if p[0] != "customer"))
    assert answers(fewer) != answers(one)


def test_the_kept_menu_is_the_menu_drawn_afresh(admin_client: Any, login_as: Any, make_user: Any) -> None:
    from crm_admin.web import menu as menu_module

    make_user("menu_mgr2")
    manager = login_as("menu_mgr2")
    for client in (admin_client, manager):
        for path in ("/admin/customer/list", "/admin/care/workbench", "/admin/"):
            kept = _menu(client.get(path).text)
            menu_module._menus.clear()
            assert _menu(client.get(path).text) == kept
