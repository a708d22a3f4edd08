"""Browser journey: the administrator creates a manager, grants permissions in the grid, and the
manager sees exactly the menus granted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.browser.conftest import login, page_errors, screenshot
from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.browser


def _menu_targets(page: Any) -> set[str]:
    hrefs = page.eval_on_selector_all("#navbar-menu a[href]", "els => els.map(e => e.getAttribute('href'))")
    out = set()
    for href in hrefs:
        path = urlparse(href).path
        if path.startswith("/admin/") and path.rstrip("/") != "/admin":
            out.add(path)
    return out


def test_admin_creates_manager_grants_in_grid_and_manager_sees_exactly_that(
        login_page: Callable[..., Any], browser: Any, live_server: str) -> None:
    admin = login_page("admin", ADMIN_PASSWORD)
    admin.goto("/admin/users")
    admin.click("#new-user")
    admin.fill("#username", "jingli")
    admin.fill("#real_name", "经理小王")
    admin.check("input[name=roles][value=manager]")
    admin.fill("#password", "Start1234a")
    admin.fill("#confirm_password", "Start1234a")
    with admin.expect_navigation():
        admin.click("#save-user")
    assert "jingli" in admin.inner_text("#user-table")

    admin.goto("/admin/policy")
    admin.eval_on_selector_all("input[data-perm^='manager|']", "els => els.forEach(e => { e.checked = false; })")
    admin.check("input[data-perm='manager|customer|list']")
    admin.check("input[data-perm='manager|customer|view']")
    admin.check("input[data-perm='manager|product|list']")
    with admin.expect_navigation():
        admin.click("#save-policy")
    assert "已保存" in admin.inner_text("body")
    screenshot(admin, "rbac-policy-grid")
    assert page_errors(admin) == []

    context = browser.new_context(base_url=live_server, locale="zh-CN")
    try:
        manager = context.new_page()
        login(manager, "jingli", "Start1234a")
        assert "/admin/account/password" in manager.url  # first sign-in: change the initial password
        manager.fill("#old_password", "Start1234a")
        manager.fill("#new_password", "Mine5678b")
        manager.fill("#confirm_password", "Mine5678b")
        with manager.expect_navigation():
            manager.click("form:has(#old_password) button[type=submit]")
        manager.goto("/admin/customer/list")
        targets = _menu_targets(manager)
        # with the customer list comes the list of their customers due to go back to a pool
        assert targets == {"/admin/customer/list", "/admin/customer/reclaim-upcoming", "/admin/product/list"}, targets
        categories = manager.eval_on_selector_all(
            "#navbar-menu [data-sqladmin-menu-category]", "els => els.map(e => e.dataset.sqladminMenuCategory)")
        assert sorted(categories) == ["产品与交易", "客户管理"], categories  # empty categories are hidden
        body = manager.inner_text("body")
        assert "新建" not in body or "客户" in body
        assert manager.goto("/admin/linkman/list").status == 403
        assert manager.goto("/admin/customer/create").status == 403
        screenshot(manager, "rbac-manager-menu")
    finally:
        context.close()
