"""Shared browser-test harness: a live server on the test database and headless Debian Chromium.

Fixtures
- ``live_server``: base URL (``http://127.0.0.1:<port>``) of the app served by uvicorn in a thread,
  against the same test database as the rest of the suite (rows are cleaned after each test as usual).
- ``browser``: one Chromium for the tests/browser package (Playwright sync API, never a downloaded
  browser); closed after the package so its event loop does not leak into other tests.
- ``page``: a fresh browser context + page (zh-CN, 1440×900) whose console errors and uncaught page
  errors are collected in ``page_errors(page)``; on failure a screenshot is saved in test-artifacts/.
- ``login_page(username, password=PASSWORD)``: a new page already logged in as that user.
- ``screenshot(page, name)``: saves ``test-artifacts/<name>.png`` and returns the path.
- ``demo_data``: the database filled by ``crm-admin demo`` for this test (users zhaomin, zhangwei,
  lina, wangqiang, liuyang, chenjing, sunli; password ``DEMO_PASSWORD``); cleaned afterwards.

Browser tests are marked ``browser`` automatically. Without Chromium they are skipped, except in CI
(``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Messages Chromium itself logs that say nothing about our pages.
_IGNORED_CONSOLE = ("favicon.ico",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # Kept on the item so the page fixture knows, at teardown, whether the test failed.
    setattr(item, f"rep_{report.when}", report)
    return report


def _chromium_path() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main thread
# while it is alive, which would break later tests that call asyncio.run() (SQLAdmin's async views).
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    path = _chromium_path()
    if path is None:
        if IN_CI:
            pytest.fail(f"CI 环境缺少 Chromium({CHROMIUM}):请安装 Debian 的 chromium 软件包")
        pytest.skip("未安装 Chromium,跳过浏览器测试")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def page_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions seen on this page so far."""
    return list(getattr(page, "_crm_errors", []))


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _new_page(browser: Any, live_server: str) -> tuple[Any, Any]:
    context = browser.new_context(base_url=live_server, locale="zh-CN",
                                  viewport={"width": 1440, "height": 900},
                                  timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page._crm_errors = errors

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        text = f"console: {msg.text} [{where}]" if where else f"console: {msg.text}"
        if not any(s in text for s in _IGNORED_CONSOLE):
            errors.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return context, page


def _safe_name(nodeid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in nodeid)[-120:]


@pytest.fixture
def page(browser: Any, live_server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    context, pg = _new_page(browser, live_server)
    yield pg
    _finish(request, [(context, pg)])


def _finish(request: pytest.FixtureRequest, opened: list[tuple[Any, Any]]) -> None:
    failed = getattr(request.node, "rep_call", None)
    for i, (context, pg) in enumerate(opened):
        if failed is not None and failed.failed:
            # A crashed page must not hide the test's own failure.
            with contextlib.suppress(Exception):
                screenshot(pg, f"FAILED-{_safe_name(request.node.nodeid)}-{i}")
        context.close()


def login(page: Any, username: str, password: str = PASSWORD) -> Any:
    """Logs the page in through the real login form; fails the test if the login is refused."""
    page.goto("/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/admin/login" not in page.url, f"登录失败:{username}"
    return page


@pytest.fixture
def login_page(browser: Any, live_server: str,
               request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    opened: list[tuple[Any, Any]] = []

    def factory(username: str, password: str = PASSWORD) -> Any:
        context, pg = _new_page(browser, live_server)
        opened.append((context, pg))
        return login(pg, username, password)

    yield factory
    _finish(request, opened)
