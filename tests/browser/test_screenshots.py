"""The main screens at 1366×768 (a common office laptop), in Chinese and the main ones in English.

Each screen is opened by the role that uses it on the demo company and must answer 200 without a
page error. With ``CRM_SCREENSHOTS=docs/screens`` (a folder, relative to the repository) the
screenshots are also written there as ``<language>-<screen>.png`` with a ``README.md`` listing
them; without it nothing in the repository is rewritten (CI runs the checks only).

    CRM_SCREENSHOTS=docs/screens .venv/bin/python -m pytest tests/browser/test_screenshots.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.browser.conftest import ROOT
from tests.browser.walk import LAPTOP, open_as

OUT = os.environ.get("CRM_SCREENSHOTS", "")
ROLE_NAMES = {"": "—", "admin": "系统管理员", "sales_lead": "销售主管", "manager": "客户经理", "readonly": "只读用户"}


@dataclass(frozen=True)
class Screen:
    name: str  # file name part: zh-<name>.png
    title: str  # what the gallery calls it
    role: str
    url: str  # "360" stands for the first customer's 360° page in the role's list
    english: bool = False  # also shot with the interface in English
    wait_for: str = ""  # a selector drawn by JavaScript (a chart)


SCREENS = [
    Screen("login", "登录", "", "/admin/login"),
    Screen("dashboard", "工作台(客户经理)", "manager", "/admin/", english=True),
    Screen("dashboard-admin", "系统概览(管理员)", "admin", "/admin/"),
    Screen("customer-list", "客户列表与组合查询", "manager", "/admin/customer/list", english=True),
    Screen("customer-360", "客户 360° 页", "manager", "360", english=True),
    Screen("customer-create", "新建客户", "manager", "/admin/customer/create"),
    Screen("care-workbench", "关怀工作台", "manager", "/admin/care/workbench", english=True),
    Screen("follow-ups-due", "待跟进", "manager", "/admin/follow-ups/due"),
    Screen("pipeline", "销售漏斗", "manager", "/admin/pipeline", english=True),
    Screen("opportunity-list", "销售机会列表", "manager", "/admin/sales-opportunity/list"),
    Screen("order-list", "订单列表", "manager", "/admin/customer-order/list"),
    Screen("product-list", "产品目录", "manager", "/admin/product/list"),
    Screen("transfer", "客户转移", "sales_lead", "/admin/transfer"),
    Screen("transfer-history", "转移记录", "sales_lead", "/admin/transfer/history"),
    Screen("churn-alerts", "流失预警", "admin", "/admin/churn/alerts"),
    Screen("churn-analysis", "流失分析", "admin", "/admin/churn/analysis", wait_for="#chart-months canvas"),
    Screen("import", "数据导入", "admin", "/admin/import/customer"),
    Screen("users", "用户管理", "admin", "/admin/users"),
    Screen("policy", "角色权限", "admin", "/admin/policy"),
    Screen("dictionary", "数据字典", "admin", "/admin/dict-type/list"),
    Screen("audit-log", "审计日志", "admin", "/admin/audit-log/list"),
    Screen("audit-analysis", "日志分析", "admin", "/admin/audit/analysis"),
    Screen("scheduler", "定时任务", "admin", "/admin/scheduler"),
]


def _folder() -> Path | None:
    if not OUT:
        return None
    folder = Path(OUT) if Path(OUT).is_absolute() else ROOT / OUT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(page: Any, screen: Screen, *, for_picture: bool) -> None:
    url = screen.url
    if url == "360":
        page.goto("/admin/customer/list")
        url = page.locator("a[href*='/customer/360/']").first.get_attribute("href") or ""
        assert url, "客户列表中没有 360° 链接"
    response = page.goto(url)
    assert response is not None and response.status == 200, (screen.name, url)
    if screen.wait_for:
        page.wait_for_selector(screen.wait_for)
    if for_picture:  # a picture waits for late requests and for charts to finish their entrance
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)


def _shoot(browser: Any, live_server: str, locale: str, screens: list[Screen]) -> list[tuple[Screen, str]]:
    folder = _folder()
    taken: list[tuple[Screen, str]] = []
    by_role: dict[str, list[Screen]] = {}
    for screen in screens:
        by_role.setdefault(screen.role, []).append(screen)
    for role, group in by_role.items():
        if role:
            context, page, _watch = open_as(browser, live_server, role, locale=locale, viewport=LAPTOP)
        else:
            context = browser.new_context(base_url=live_server, locale="zh-CN", viewport=LAPTOP,
                                          timezone_id="Asia/Shanghai")
            if locale != "zh":
                context.add_cookies([{"name": "crm_lang", "value": locale, "url": live_server}])
            page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            for screen in group:
                _open(page, screen, for_picture=folder is not None)
                assert page.locator("html").get_attribute("lang") == ("zh-CN" if locale == "zh" else locale)
                file = f"{locale}-{screen.name}.png"
                if folder is not None:
                    page.screenshot(path=str(folder / file), full_page=False)
                taken.append((screen, file))
        finally:
            context.close()
        assert not errors, errors
    return taken


def _write_index(taken: list[tuple[Screen, str]]) -> None:
    folder = _folder()
    if folder is None:
        return
    lines = [
        "# 界面截图 / Screens",
        "",
        "由 `tests/browser/test_screenshots.py` 在 1366×768 窗口中用演示数据(`crm-admin demo`)生成,",
        "每个页面由使用它的角色打开。重新生成:",
        "",
        "```",
        "CRM_SCREENSHOTS=docs/screens .venv/bin/python -m pytest tests/browser/test_screenshots.py",
        "```",
        "",
        "| 页面 | 角色 | 中文 | English |",
        "|---|---|---|---|",
    ]
    files = {file for _screen, file in taken}
    for screen in SCREENS:
        zh, en = f"zh-{screen.name}.png", f"en-{screen.name}.png"
        lines.append(f"| {screen.title} | {ROLE_NAMES[screen.role]} | [{zh}]({zh}) | "
                     + (f"[{en}]({en})" if en in files else "") + " |")
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_main_screens_in_chinese_and_english(demo_data: Any, browser: Any, live_server: str) -> None:
    taken = _shoot(browser, live_server, "zh", SCREENS)
    taken += _shoot(browser, live_server, "en", [s for s in SCREENS if s.english])
    assert len(taken) == len(SCREENS) + sum(s.english for s in SCREENS)
    _write_index(taken)
