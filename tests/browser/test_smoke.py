"""First browser journey: the administrator logs in and opens the customer list."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.browser.conftest import page_errors, screenshot
from tests.conftest import ADMIN_PASSWORD

_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_login_page_is_chinese(page: Any) -> None:
    page.goto("/admin/login")
    assert page.locator("input[name=username]").is_visible()
    assert "登录" in page.inner_text("body")
    assert page_errors(page) == []


def test_admin_opens_customer_list(login_page: Callable[..., Any]) -> None:
    page = login_page("admin", ADMIN_PASSWORD)
    response = page.goto("/admin/customer/list")
    assert response is not None and response.status == 200
    page.wait_for_load_state("networkidle")
    body = page.inner_text("body")
    assert "客户" in body
    # Chinese throughout: most of the visible words are Chinese, not SQLAdmin's English defaults.
    assert len(_CJK.findall(body)) > 20
    for english in ("New Customer", "Export", "Search", "Actions"):
        assert english not in body, english
    path = screenshot(page, "smoke-customer-list")
    assert path.stat().st_size > 10_000
    assert page_errors(page) == []


def test_customer_list_with_demo_data(demo_data: Any, login_page: Callable[..., Any]) -> None:
    """The list with real-looking data; ``CRM_UPDATE_SCREENSHOT=1`` refreshes the README's screenshot."""
    import os
    import shutil
    from pathlib import Path

    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/customer/list")
    page.wait_for_load_state("networkidle")
    assert page.locator("text=有限公司").count() >= 10
    page.set_viewport_size({"width": 1440, "height": 1280})
    path = screenshot(page, "demo-customer-list", full_page=False)
    assert page_errors(page) == []
    if os.environ.get("CRM_UPDATE_SCREENSHOT") == "1":
        docs = Path(__file__).resolve().parents[2] / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(path, docs / "screenshot.png")


def test_manager_sees_only_own_demo_customers(demo_data: Any, login_page: Callable[..., Any]) -> None:
    from tests.demo_data import DEMO_PASSWORD

    page = login_page("lina", DEMO_PASSWORD)
    page.goto("/admin/customer/list")
    page.wait_for_load_state("networkidle")
    body = page.inner_text("body")
    assert "李娜" in body and "张伟(zhangwei)" not in body
    assert page_errors(page) == []
