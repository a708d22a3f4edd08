"""Two-factor sign-in in a real browser: a user sets it up from their account page (the QR code drawn
on the page, the recovery codes shown once), then signs in with the password and the code. No page of
the journey breaks the Content-Security-Policy or throws."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest

from crm_admin.accounts import second_factor
from tests.browser.conftest import login, screenshot
from tests.browser.walk import Watch, report_violations
from tests.conftest import ADMIN_PASSWORD, PASSWORD


def test_user_sets_up_two_factor_and_signs_in_with_a_code(browser: Any, live_server: str, make_user: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    monkeypatch.setattr(second_factor, "_now", lambda: now[0])  # the live server runs in this process
    make_user("tfa_browser", ["manager"], real_name="两步用户")
    watch = Watch("manager")
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = context.new_page()
    report_violations(context, page, watch)
    login(page, "tfa_browser")

    # the account menu leads to the page; set it up
    page.click("#user-menu .dropdown-toggle")
    with page.expect_navigation():
        page.click("#user-menu a[href$='/account/two-factor']")
    with page.expect_navigation():
        page.click("#start-two-factor")
    assert page.locator("#totp-qr svg").is_visible()
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("#confirm-code", pyotp.TOTP(secret).at(now[0]))
    with page.expect_navigation():
        page.click("#confirm-two-factor")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    screenshot(page, "two-factor-recovery-codes")
    context.close()

    # a new browser: the password, then the code page, then the home page
    now[0] += second_factor.STEP_SECONDS
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = context.new_page()
    report_violations(context, page, watch)
    page.goto("/admin/login")
    page.fill("input[name=username]", "tfa_browser")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("#second-factor-form").is_visible()
    screenshot(page, "two-factor-code-step")
    page.fill("#code", pyotp.TOTP(secret).at(now[0]))
    with page.expect_navigation():
        page.click("#verify-code")
    assert "/admin/login" not in page.url
    assert "两步用户" in page.inner_text("#user-menu")
    page.evaluate("0")  # the last violation reports reach the test
    context.close()
    assert not watch.problems, watch.problems


def test_two_factor_cards_stack_on_the_account_and_user_pages(login_page: Any, make_user: Any) -> None:
    """The page's cards are one above the other (not squeezed side by side by the card grid)."""
    user = make_user("tfa_layout", ["manager"])
    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/account/two-factor")
    with page.expect_navigation():
        page.click("#start-two-factor")
    boxes = [page.locator(sel).bounding_box() for sel in ("#confirm-form",)]
    assert boxes[0] and boxes[0]["width"] > 400
    screenshot(page, "two-factor-set-up")
    page.goto(f"/admin/users/{user.id}")
    reset = page.locator("#reset-two-factor-form").bounding_box()
    form = page.locator("#user-form").bounding_box()
    assert reset and form and reset["y"] > form["y"] + form["height"] - 1
    screenshot(page, "two-factor-user-page")
