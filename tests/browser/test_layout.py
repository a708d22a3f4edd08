"""Every main screen reads at 1366×768 (an office laptop) and 1440×900, in Chinese and English.

Each check measures what the user sees: a drop-down's chosen text and a date's yyyy/mm/dd fit their
box, labels and the side bar's title are not cut, the customer table shows its manager column
without scrolling sideways, list pages have a title where their header band is, and where a wide
screen must scroll (the policy grid, a narrow pipeline) it says so and keeps its first column in view.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.walk import DESKTOP, LAPTOP, open_as

SIZES = [pytest.param(LAPTOP, id="1366"), pytest.param(DESKTOP, id="1440")]
LOCALES = ["zh", "en"]

# Controls of a form whose text does not fit: a select's chosen option (measured in the select's own
# font against its inner width, the arrow's padding excluded), a date input narrower than its
# yyyy/mm/dd plus the calendar button, a label whose text runs past its box.
_CUT_CONTROLS = """form => {
  const canvas = document.createElement('canvas').getContext('2d');
  const width = (el, text) => { const s = getComputedStyle(el); canvas.font = s.font; return canvas.measureText(text).width; };
  const inner = el => { const s = getComputedStyle(el);
    return el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); };
  const cut = [];
  form.querySelectorAll('select').forEach(el => {
    const text = el.selectedOptions.length ? el.selectedOptions[0].text.trim() : '';
    if (width(el, text) > inner(el) + 1) cut.push(`select ${el.name}: "${text}" ${Math.round(width(el, text))}px in ${inner(el)}px`);
  });
  form.querySelectorAll('input[type=date]').forEach(el => {
    const need = width(el, '0000/00/00') + 24;
    if (need > inner(el) + 1) cut.push(`date ${el.name}: needs ${Math.round(need)}px, has ${inner(el)}px`);
  });
  form.querySelectorAll('label, .form-label').forEach(el => {
    if (el.scrollWidth > el.clientWidth + 1) cut.push(`label "${el.textContent.trim()}"`);
  });
  return cut;
}"""

_BOX = "el => { const r = el.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; }"


def _open(browser: Any, live_server: str, role: str, locale: str, size: dict[str, int], url: str) -> tuple[Any, Any]:
    context, page, _watch = open_as(browser, live_server, role, locale=locale, viewport=size)
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("load")
    return context, page


def _scrolls_sideways(box: Any) -> bool:
    return bool(box.evaluate("el => el.scrollWidth > el.clientWidth + 1"))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("size", SIZES)
def test_customer_list_reads_without_cuts(demo_data: Any, browser: Any, live_server: str,
                                          size: dict[str, int], locale: str) -> None:
    context, page = _open(browser, live_server, "manager", locale, size, "/admin/customer/list")
    try:
        # query panel: no drop-down, date or label cut short
        cut = page.locator("#customer-query-form").evaluate(_CUT_CONTROLS)
        assert not cut, cut
        # the side bar's title stays inside the side bar
        title = page.locator(".crm-brand-title")
        _aleft, aright, _atop, _abottom = page.locator("aside.navbar-vertical").evaluate(_BOX)
        for part in (".crm-brand .crm-logo", ".crm-brand-title"):
            left, right, _top, _bottom = page.locator(part).evaluate(_BOX)
            assert left >= 8 and right <= aright - 8, (part, left, right, aright)
        assert title.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        # the list has its title (in the user's language) where the header band is, not an empty band
        header = page.locator(".page-header .page-title")
        assert header.inner_text().strip() == ("客户信息" if locale == "zh" else "Customer information")
        # the customer table: the manager column and the last contact in view without scrolling
        # sideways (long names and English words wrap inside their cells)
        table_box = page.locator(".table-responsive").first
        assert not _scrolls_sideways(table_box)
        for label in (("客户经理", "最近联系") if locale == "zh" else ("Account manager", "Last contact")):
            th = page.locator("table thead th", has_text=label)
            assert th.evaluate(_BOX)[1] <= size["width"], label
        assert page.locator(".crm-scroll-hint").first.is_hidden()
    finally:
        context.close()


@pytest.mark.parametrize("size", SIZES)
def test_pipeline_shows_its_five_stages(demo_data: Any, browser: Any, live_server: str,
                                        size: dict[str, int]) -> None:
    for locale in LOCALES:
        context, page = _open(browser, live_server, "manager", locale, size, "/admin/pipeline")
        try:
            stages = page.locator(".pipeline-stage")
            assert stages.count() == 5
            for i in range(stages.count()):
                left, right, _top, _bottom = stages.nth(i).evaluate(_BOX)
                assert left >= 0 and right <= size["width"], (locale, i, left, right)
            assert not _scrolls_sideways(page.locator("#pipeline-board"))
            assert page.locator(".crm-scroll-hint").is_hidden()
            # the stage drop-downs of the cards (their "移动" button) show the whole stage name
            cut = [c for i in range(page.locator(".move-form").count())
                   for c in page.locator(".move-form").nth(i).evaluate(_CUT_CONTROLS)]
            assert not cut, (locale, cut)
        finally:
            context.close()


def test_pipeline_in_a_narrow_window_says_it_scrolls(demo_data: Any, browser: Any, live_server: str) -> None:
    context, page = _open(browser, live_server, "manager", "zh", {"width": 1024, "height": 768}, "/admin/pipeline")
    try:
        assert _scrolls_sideways(page.locator("#pipeline-board"))
        assert page.locator(".crm-scroll-hint").is_visible()
        assert page.locator(".crm-scroll-hint").inner_text() == "→ 可左右滚动"
    finally:
        context.close()


@pytest.mark.parametrize("size", SIZES)
def test_policy_grid_scrolls_with_a_hint_and_keeps_its_resource_column(demo_data: Any, browser: Any,
                                                                       live_server: str,
                                                                       size: dict[str, int]) -> None:
    context, page = _open(browser, live_server, "admin", "zh", size, "/admin/policy")
    try:
        box = page.locator(".crm-policy-scroll")
        assert _scrolls_sideways(box)  # 4 roles × 10 actions do not fit: it must say so
        hint = page.locator(".crm-scroll-hint")
        assert hint.is_visible() and "可左右滚动" in hint.inner_text()
        box.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
        bleft, bright, _btop, _bbottom = box.evaluate(_BOX)
        # the last role (只读用户) is reachable, and the resource column stays in view
        last_role = page.locator(".crm-policy-grid thead tr").first.locator("th").last
        assert "只读用户" in last_role.inner_text()
        left, right, _top, _bottom = last_role.evaluate(_BOX)
        assert bleft <= left and right <= bright + 1, (left, right, bleft, bright)
        first = page.locator(".crm-policy-grid tbody th").first
        fleft, fright, _ft, _fb = first.evaluate(_BOX)
        assert bleft - 1 <= fleft and fright <= bright and fleft < bleft + 5, (fleft, bleft)
        assert first.evaluate("el => document.elementFromPoint(el.getBoundingClientRect().left + 5,"
                              " el.getBoundingClientRect().top + 5) === el || el.contains("
                              "document.elementFromPoint(el.getBoundingClientRect().left + 5,"
                              " el.getBoundingClientRect().top + 5))")
    finally:
        context.close()


def test_list_pages_have_a_title_not_an_empty_band(demo_data: Any, browser: Any, live_server: str) -> None:
    context, page = _open(browser, live_server, "admin", "zh", LAPTOP, "/admin/audit-log/list")
    try:
        for url in ("/admin/audit-log/list", "/admin/linkman/list", "/admin/customer-order/list"):
            page.goto(url)
            headers = page.locator(".page-header")
            assert headers.count() == 1, url
            assert headers.first.inner_text().strip(), url
    finally:
        context.close()
