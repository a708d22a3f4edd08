"""Text on the main screens meets WCAG AA contrast (4.5:1, 3:1 for large text) for every role.

axe-core (tests/browser/vendor/axe-core, vendored for the tests only; the product never loads it)
runs its ``color-contrast`` rule alone on each main page a role can open. The script is injected
into the page, which the strict Content-Security-Policy would refuse: this test's contexts alone
bypass the CSP. A failure lists the element, its colours and the ratio axe measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.walk import LAPTOP, ROLES, Watch, for_each_role, open_as, with_own_browser

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

# "360" stands for the first customer's 360° page in the role's list.
MAIN_PAGES = [
    "/admin/",
    "/admin/customer/list",
    "360",
    "/admin/care/workbench",
    "/admin/pipeline",
    "/admin/linkman/list",
    "/admin/customer-order/new",
    "/admin/audit-log/list",
]
ADMIN_ONLY = ["/admin/policy"]

_RUN_AXE = """async () => {
  const result = await axe.run(document, {runOnly: {type: 'rule', values: ['color-contrast']},
                                          resultTypes: ['violations']});
  return result.violations.flatMap(v => v.nodes.map(n => ({
    target: n.target.join(' '),
    html: n.html.slice(0, 160),
    summary: n.failureSummary || '',
    data: (n.any[0] || {}).data || {},
  })));
}"""


def contrast_violations(page: Any) -> list[str]:
    """The page's text elements below the AA contrast ratio, one readable line each."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(_RUN_AXE)
    lines = []
    for node in found:
        data = node["data"]
        lines.append(f"{node['target']}: {data.get('fgColor')} on {data.get('bgColor')} "
                     f"= {data.get('contrastRatio')} (needs {data.get('expectedContrastRatio')}) "
                     f"{node['html']}")
    return lines


def _check_role(role: str, live_server: str) -> Watch:
    def use(browser: Any) -> Watch:
        context, page, watch = open_as(browser, live_server, role, viewport=LAPTOP, bypass_csp=True)
        try:
            for url in MAIN_PAGES + (ADMIN_ONLY if role == "admin" else []):
                if url == "360":
                    page.goto("/admin/customer/list")
                    link = page.locator("a[href*='/customer/360/']").first
                    if not link.count():
                        continue
                    url = link.get_attribute("href") or ""
                response = page.goto(url)
                assert response is not None, url
                page.wait_for_load_state("networkidle")
                watch.visited[(url,)] = response.status
                for line in contrast_violations(page):
                    watch.problems.append(f"[{role}] {url} ({response.status}) {line}")
        finally:
            context.close()
        return watch

    return with_own_browser(use)


def test_main_screens_meet_aa_contrast(demo_data: Any, live_server: str, browser: Any) -> None:
    watches = for_each_role(lambda role: _check_role(role, live_server))
    problems = "\n".join(p for w in watches.values() for p in w.problems)
    assert not problems, "对比度不足 (WCAG AA):\n" + problems
    assert set(watches) == set(ROLES)
    # the admin reached every main page, so none was skipped by a wrong address
    not_opened = {k[0]: s for k, s in watches["admin"].visited.items() if s != 200}
    assert not not_opened, not_opened


def test_contrast_check_can_fail(live_server: str, browser: Any) -> None:
    context = browser.new_context(base_url=live_server, bypass_csp=True)
    try:
        page = context.new_page()
        page.set_content('<p style="color:#999;background:#aaa">灰底灰字</p>'
                         '<p style="color:#000;background:#fff">白底黑字</p>')
        found = contrast_violations(page)
        assert len(found) == 1 and "灰底灰字" in found[0], found
    finally:
        context.close()
