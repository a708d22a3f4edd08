"""Browser journey of the order form: a manager creates an order with two lines, sees the line totals and the
order total as they type, saves, and finds the lines on the order's page."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.orders.models import CustomerOrder
from crm_admin.products.models import Product
from tests.browser.conftest import page_errors, screenshot
from tests.care import factories as f

pytestmark = pytest.mark.browser


def _pick(page: Any, selection: Any, term: str, option: str) -> None:
    """Open a select2 picker, type ``term`` and choose the result showing ``option``."""
    selection.click()
    search = page.locator(".select2-container--open .select2-search__field")
    search.fill(term)
    page.locator(".select2-results__option", has_text=option).first.click()


def test_manager_creates_an_order_with_two_lines_and_live_totals(make_user: Any,
                                                                  login_page: Callable[..., Any]) -> None:
    mgr = make_user("bw_orders", real_name="许经理")
    f.customer(mgr.id, "华东精密机械有限公司")
    with db.transaction() as s:
        s.add_all([Product(code="CAM-1", name="工业相机", price=Decimal("19.99"), stock=5),
                   Product(code="CAB-1", name="数据线", price=Decimal("0.10"), stock=5),
                   Product(code="OLD-1", name="停产相机", price=Decimal("5.00"), stock=0, is_active=False)])

    page = login_page("bw_orders")
    page.goto("/admin/customer-order/list")
    page.locator("a.btn-primary", has_text="新建").click()
    page.wait_for_url("**/admin/customer-order/new")

    _pick(page, page.locator("#order-customer + .select2 .select2-selection"), "华东", "华东精密机械有限公司")
    first = page.locator("tr.order-line").nth(0)
    _pick(page, first.locator(".select2-selection"), "相机", "工业相机")
    assert page.locator(".select2-results__option", has_text="停产相机").count() == 0
    assert first.locator(".order-unit-price").input_value() == "19.99"  # the list price, filled in
    first.locator(".order-quantity").fill("3")
    first.locator(".order-discount").fill("95")
    assert first.locator(".order-line-total").inner_text() == "¥56.97"  # 3 × 19.99 × 95%, to the fen

    page.click("#order-add-line")  # opens the new line's product picker
    page.locator(".select2-container--open .select2-search__field").fill("数据线")
    page.locator(".select2-results__option", has_text="数据线").first.click()
    second = page.locator("tr.order-line").nth(1)
    second.locator(".order-quantity").fill("10")
    assert second.locator(".order-line-total").inner_text() == "¥1.00"
    assert page.locator("#order-total").inner_text() == "¥57.97"

    page.click("#order-add-line")  # a third line, removed again
    page.keyboard.press("Escape")
    page.locator("tr.order-line").nth(2).locator(".order-remove-line").click()
    assert page.locator("tr.order-line").count() == 2
    screenshot(page, "orders-form-two-lines")

    with page.expect_navigation():
        page.click("#order-save")
    assert "订单已保存" in page.locator("#order-saved").inner_text()
    shown = page.locator("#order-lines-shown").inner_text()
    for text in ("工业相机", "数据线", "¥56.97", "¥1.00", "95"):
        assert text in shown, text
    assert page.locator("#order-total-shown").inner_text() == "¥57.97"
    screenshot(page, "orders-details-lines")
    assert page_errors(page) == []

    with db.session_factory()() as s:
        assert s.execute(select(CustomerOrder.amount)).scalar_one() == Decimal("57.97")
