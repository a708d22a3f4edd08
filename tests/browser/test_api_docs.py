"""The API's interactive documentation (/api/v1/docs): Swagger UI from this server's own files (no
CDN), under the site's Content-Security-Policy — it renders every collection and breaks no rule."""

from __future__ import annotations

from typing import Any

from tests.browser.walk import Watch, report_violations


def test_api_docs_render_under_the_csp_from_local_files(live_server: str, browser: Any) -> None:
    context = browser.new_context(base_url=live_server)
    context.set_default_timeout(20_000)
    page = context.new_page()
    watch = Watch("anonymous")
    report_violations(context, page, watch)
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    watch.where = "/api/v1/docs"
    response = page.goto("/api/v1/docs")
    assert response is not None and response.status == 200
    page.wait_for_selector("#operations-tag-客户", state="attached")
    page.wait_for_selector(".opblock-summary-path", state="attached")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any(p.startswith("/customers") for p in paths) and any("/pools" in p for p in paths)
    page.evaluate("0")
    assert not watch.problems, watch.problems
    assert requested and all(url.startswith(live_server) for url in requested), requested
    context.close()
