"""The Content-Security-Policy in a real browser: no page, for no role, breaks it or throws; and no
Chinese screen shows a code (read on the same walk, so each page is opened once for both).

Each role signs in and walks the site from its home page (the walk shared with the Chinese
screen-text test, ``walk.chinese_walk``), following every link to a route it has
not opened yet (the menu, list → details → edit, create buttons, the 360° page, an alert, a
user …); the administrator also starts from the list and create page of every model view, and
every role from every custom page of the admin site, both read from the running app's routes.
Then the parts whose code runs only when used are used once: the relation picker, a date picker,
the delete and bulk-action modals, the export menu and a download, the customer query's sort,
the churn charts and their tooltips, an import with its progress polling, the policy grid, a
form saved through SQLAdmin, the manual care look-up, the transfer page's select-all, and the
plain error pages (404, CSRF refusal, 500, 503; each role meets the 403 page on its walk).

A violation is seen twice: a ``securitypolicyviolation`` listener installed before any page
script runs, and Chromium's console message ("… violates the following Content Security Policy
directive …"). Either one, or any uncaught page error, fails the test. (Playwright's
``wait_for_function`` evaluates a string, which the policy forbids: selectors are waited for.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.exc import OperationalError

from tests.browser.walk import (
    Site,
    Watch,
    chinese_walk,
    for_each_role,
    open_as,
    report_violations,
    visit,
    with_own_browser,
)


def _use_widgets_as(role: str, live_server: str, tmp_path: Path) -> Watch:
    """The parts whose code runs only when used, used once by the role that has them."""

    def use(browser: Any) -> Watch:
        _context, page, watch = open_as(browser, live_server, role, prepare=report_violations)
        if role == "admin":
            _use_admin_widgets(page, watch, tmp_path)
        if role == "manager":
            _use_manager_widgets(page, watch)
        page.evaluate("0")  # the last violation reports reach the test
        return watch

    return with_own_browser(use)


def test_no_page_violates_the_content_security_policy_or_shows_codes(
    demo_data: Any, app: Any, live_server: str, browser: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    site = Site(app)
    watches = chinese_walk(app, live_server)
    for role, walked in watches.items():
        if role != "admin":
            assert 403 in walked.visited.values(), role
    used = for_each_role(lambda role: _use_widgets_as(role, live_server, tmp_path), ["admin", "manager"])

    # the error pages last, once nobody else is walking: the 500/503 ones are faked in-process
    context, page, watch = open_as(browser, live_server, "admin", prepare=report_violations)
    try:
        _open_error_pages(page, watch, monkeypatch)
        page.evaluate("0")
    finally:
        context.close()

    problems = [p for w in (*watches.values(), *used.values(), watch) for p in w.problems]
    opened = {role: len(w.visited) for role, w in watches.items()}
    print(f"pages opened per role: {opened}; {time.monotonic() - started:.1f} s")
    assert not problems, "\n".join(dict.fromkeys(problems))
    # the same walk read every Chinese screen (tests/browser/test_screen_text.py says what a leak is)
    leaks = [leak for w in watches.values() for leak in w.leaks]
    assert not leaks, "\n".join(dict.fromkeys(leaks))
    assert all(len(w.visited) > 10 for w in watches.values())
    admin_visited = watches["admin"].visited
    for identity in site.model_identities:
        assert admin_visited.get(("list", identity)) == 200, identity
    for url in site.custom_pages:
        assert site.route_key(urlsplit(url).path) in admin_visited, url


def _use_admin_widgets(page: Any, watch: Watch, tmp_path: Path) -> None:
    # relation picker (select2 ajax): search, pick
    visit(page, watch, "/admin/follow-up/create")
    page.locator(".select2-selection").first.click()
    page.locator(".select2-container--open .select2-search__field").wait_for()  # typing earlier is lost
    page.keyboard.type("有限")
    page.wait_for_selector(".select2-results__option--selectable")
    page.keyboard.press("Enter")

    # date picker: the forms use the browser's own date input; SQLAdmin's flatpickr is loaded on
    # every page all the same, so it is opened once on a date field the way SQLAdmin would
    visit(page, watch, "/admin/linkman/create")
    page.evaluate("flatpickr(document.querySelector('input[name=birthday]'), {allowInput: true}).open()")
    page.click(".flatpickr-calendar.open .flatpickr-day:not(.prevMonthDay):not(.nextMonthDay) >> nth=9")

    # export menu and a download, a row's delete modal, the bulk-action menu and its modal
    visit(page, watch, "/admin/customer/list")
    page.click("#export-menu")
    with page.expect_download():
        page.click("[aria-labelledby=export-menu] .dropdown-item >> nth=0")
    page.click('a[data-bs-target="#modal-delete"][data-pk] >> nth=0')
    page.wait_for_selector("#modal-delete.show")
    page.click("#modal-delete [data-bs-dismiss=modal] >> nth=0")
    page.wait_for_selector("#modal-delete", state="hidden")
    page.check("input.select-box >> nth=0")
    page.click("#dropdownMenuButton")
    page.click("#action-delete")
    page.wait_for_selector("#modal-delete.show")
    page.click("#modal-delete [data-bs-dismiss=modal] >> nth=0")
    page.wait_for_selector("#modal-delete", state="hidden")

    # customer query: the sort select fills the hidden fields, empty conditions are not sent
    page.select_option("[data-sort-select]", index=1)
    with page.expect_navigation():
        page.click("#cq-submit")
    assert "sortBy=" in page.url and "region=" not in page.url

    # churn charts, and a tooltip under the mouse on each
    visit(page, watch, "/admin/churn/analysis")
    page.wait_for_selector("#chart-reasons canvas")
    for chart in ("#chart-reasons", "#chart-levels", "#chart-managers", "#chart-months"):
        box = page.locator(chart).bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(100)

    # import: upload, progress polled until validated, apply, polled until done
    visit(page, watch, "/admin/import/customer")
    upload = tmp_path / "customers.csv"
    upload.write_bytes(page.request.get("/admin/import/customer/template.csv").body())
    page.set_input_files("#import-file", str(upload))
    with page.expect_navigation():
        page.click("#import-submit")
    page.wait_for_selector("#apply-form:not([hidden])")
    with page.expect_navigation():
        page.click("#apply-button")
    page.wait_for_selector("#job-status:text-is('导入完成')")

    # the policy grid, saved unchanged
    visit(page, watch, "/admin/policy")
    with page.expect_navigation():
        page.click("#save-policy")

    # a form saved through SQLAdmin, and the redirect to the list
    visit(page, watch, "/admin/sys-dept/create")
    page.fill("input[name=name]", "内容安全策略测试部")
    with page.expect_navigation():
        page.click('input[type=submit][value="保存"]')


def _use_manager_widgets(page: Any, watch: Watch) -> None:
    # manual care record: customers looked up while typing, then the chosen customer's contacts
    visit(page, watch, "/admin/care/workbench")
    page.fill("#manual-customer-search", "有限")
    page.wait_for_selector("#manual-customer option >> nth=1", state="attached")
    page.select_option("#manual-customer", index=1)
    page.wait_for_selector("#manual-linkman option >> nth=1", state="attached")
    # transfer: the select-all box
    visit(page, watch, "/admin/transfer")
    page.check("#check-all")
    assert page.locator(".customer-check:checked").count() == page.locator(".customer-check").count()


def _open_error_pages(page: Any, watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("/admin/customer/details/99999999", "/admin/no-such-page", "/no-such-page"):
        response = visit(page, watch, url)
        assert response is not None and response.status == 404, url

    # CSRF refusal: the policy grid posted with a forged token
    visit(page, watch, "/admin/policy")
    page.evaluate("document.querySelector('#policy-grid input[name=csrf_token]').value = 'forged'")
    with page.expect_navigation():
        page.click("#save-policy")
    assert "请求已被拒绝" in page.title()

    # the friendly 500 and 503 pages (the live server runs in this process)
    from crm_admin.dashboard import admin as dashboard_admin

    def crash(*args: Any) -> Any:
        raise RuntimeError("boom")

    def database_down(*args: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("server has gone away"))

    for fake, status in ((crash, 500), (database_down, 503)):
        monkeypatch.setattr(dashboard_admin, "_data", fake)
        response = visit(page, watch, "/admin/")
        assert response is not None and response.status == status
    monkeypatch.undo()
