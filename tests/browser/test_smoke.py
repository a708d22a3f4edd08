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
