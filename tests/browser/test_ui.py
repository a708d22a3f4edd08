"""UI journeys in a real browser: Chinese pages, the English switch, CSRF-carrying JS, POST logout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from tests.browser.conftest import page_errors, screenshot
from tests.conftest import ADMIN_PASSWORD


def _dept_count(name: str) -> int:
    from crm_admin.accounts.models import SysDept

    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(SysDept).where(SysDept.name == name)).scalar_one())


def test_login_page_title_language_and_assets(page: Any) -> None:
    page.goto("/admin/login")
    assert page.title() == "登录 - 客户信息管理系统"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator('input[name="csrf_token"]').get_attribute("value")
    page.click("text=English")
    page.wait_for_load_state()
    assert "Username" in page.inner_text("body")
    page.click("text=简体中文")
    page.wait_for_load_state()
    assert "用户名" in page.inner_text("body")
    assert page_errors(page) == []


def test_create_edit_delete_through_the_browser(login_page: Callable[..., Any]) -> None:
    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/sys-dept/create")
    assert page.title() == "部门管理 - 客户信息管理系统"
    page.fill("input[name=name]", "浏览器测试部")
    with page.expect_navigation():
        page.click('input[type=submit][value="保存"]')
    assert "/admin/sys-dept/list" in page.url
    assert _dept_count("浏览器测试部") == 1
    body = page.inner_text("body")
    assert "浏览器测试部" in body and "第 1–1 条,共 1 条" in body
    screenshot(page, "ui-list-zh")

    # SQLAdmin's delete is an ajax DELETE: our JS adds the X-CSRF-Token header
    page.click('a[data-bs-target="#modal-delete"][data-pk]')
    page.wait_for_selector("#modal-delete-text:has-text('确定要永久删除部门')")
    screenshot(page, "ui-delete-confirm")
    with page.expect_navigation():
        page.click("#modal-delete-button")
    assert _dept_count("浏览器测试部") == 0
    assert page_errors(page) == []


def test_english_switch_and_back(login_page: Callable[..., Any]) -> None:
    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/sys-dept/list?lang=en")
    body = page.inner_text("body")
    assert "Departments" in body and "New Department" in body
    assert page.locator("html").get_attribute("lang") == "en"
    screenshot(page, "ui-list-en")
    page.goto("/admin/sys-dept/list")  # the cookie keeps English
    assert "Departments" in page.inner_text("body")
    page.goto("/admin/sys-dept/list?lang=zh")
    assert "部门管理" in page.inner_text("body")
    assert page_errors(page) == []


def test_logout_button_posts_with_token(login_page: Callable[..., Any]) -> None:
    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/sys-dept/list")
    page.click("#user-menu > a")
    with page.expect_navigation():
        page.click("#logout-form button[type=submit]")
    assert "/admin/login" in page.url
    page.goto("/admin/sys-dept/list")
    assert "/admin/login" in page.url
    assert page_errors(page) == []


def test_relation_picker_speaks_chinese_and_datetime_is_local(login_page: Callable[..., Any]) -> None:
    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/follow-up/create")
    assert page.locator('input[name="contacted_at"]').get_attribute("type") == "datetime-local"
    page.locator(".select2-selection").first.click()
    page.wait_for_selector(".select2-results__message")
    assert "请再输入至少 1 个字符" in page.inner_text(".select2-results__message")
    assert page_errors(page) == []
