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
    # the customer lifecycle (issue 16): a URL without "/" names data made by ``_lifecycle`` below
    Screen("pool", "公海客户(联系方式脱敏)", "manager", "pool"),
    Screen("pool-customer", "公海客户的进出记录", "manager", "pool-customer"),
    Screen("reclaim-preview", "回收规则预览", "admin", "reclaim-preview"),
    Screen("recycle-bin", "回收站", "admin", "/admin/recycle-bin"),
    Screen("import-update", "导入更新的预检(修改前→修改后)", "admin", "import-update"),
    Screen("contacts-masked", "联系人列表(无“查看敏感信息”权限,脱敏显示)", "readonly", "/admin/linkman/list"),
]


def _folder() -> Path | None:
    if not OUT:
        return None
    folder = Path(OUT) if Path(OUT).is_absolute() else ROOT / OUT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _lifecycle() -> dict[str, Any]:
    """On the demo company: a public pool with three customers another manager returned to it (with
    reasons), a reclaim rule not yet enabled, a customer deleted into the recycle bin, and a sheet that
    updates a customer's phone — what the lifecycle screens show."""
    import datetime as dt
    import random

    from sqlalchemy import select

    from crm_admin import db
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.context import SYSTEM, Actor, acting_as
    from crm_admin.core.principal import load_principal
    from crm_admin.customers.codes import make_credit_code
    from crm_admin.customers.models import Customer
    from crm_admin.customers.service import delete_customer
    from crm_admin.pools import service as pools
    from crm_admin.pools.models import CustomerPool
    from crm_admin.reclaim.models import ReclaimRule

    reasons = ["客户已转向竞争对手,三个月未回电", "联系人离职,暂无新的对接人", "区域调整,交由公海重新分配"]
    with acting_as(SYSTEM), db.transaction() as s:
        pool = CustomerPool(name="华东公海", remark="华东区无人跟进的客户", mask_contacts=True, daily_claim_limit=5)
        s.add(pool)
        s.flush()
        rule = ReclaimRule(name="30 天未跟进", pool_id=pool.id, days_without_follow_up=30, warn_days=5,
                           protect_pending_care=True, priority=10, is_active=False)
        s.add(rule)
        s.flush()
        lead = s.execute(select(SysUser).where(SysUser.username == "zhaomin")).scalar_one()
        others = list(s.execute(select(Customer).where(Customer.manager_id.is_not(None), Customer.manager_id
                                != select(SysUser.id).where(SysUser.username == "zhangwei").scalar_subquery())
                                .order_by(Customer.id).limit(11)).scalars())
        rule_id = rule.id
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
        for quiet in others[5:]:  # not followed up for 45 days: what the rule would reclaim
            quiet.last_contact_at = long_ago
            quiet.created_at = long_ago - dt.timedelta(days=365)
        pool_id = pool.id
        lead_principal = load_principal(s.connection(), lead)
        admin_id = s.execute(select(SysUser.id).where(SysUser.username == "admin")).scalar_one()
    returned = []
    for customer, reason in zip(others[:3], reasons, strict=True):
        with acting_as(SYSTEM), db.transaction() as s:
            pools.return_to_pool(s, lead_principal, pool_id=pool_id, customer_ids=[customer.id], reason=reason)
        returned.append(customer.id)
    with acting_as(Actor(user_id=admin_id, username="admin")), db.transaction() as s:
        gone = s.get(Customer, others[3].id)
        assert gone is not None
        delete_customer(s, gone, cascade=True)
        target = s.get(Customer, others[4].id)
        assert target is not None
        if not target.credit_code:
            target.credit_code = make_credit_code(random.Random(16))
        sheet = [[target.name, target.credit_code, "13911112222", target.level or "B"],
                 ["华东新材料有限公司", make_credit_code(random.Random(61)), "13900000004", "B"]]
    return {"pool": f"/admin/pools/{pool_id}", "pool-customer": f"/admin/pools/{pool_id}/customer/{returned[0]}",
            "reclaim-preview": f"/admin/reclaim-rule/preview?rule={rule_id}", "sheet": sheet}


def _import_update(page: Any, sheet: list[list[Any]]) -> None:
    """The customer import's dry run of a sheet matched by credit code, updating phone and level."""
    from tests.imports.jobs import workbook

    page.goto("/admin/import/customer")
    page.set_input_files("#import-file", files=[{
        "name": "客户更新.xlsx", "buffer": workbook(["客户名称", "统一社会信用代码", "电话", "客户等级"], sheet),
        "mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}])
    page.select_option("#import-match", "credit_code")
    page.check("#import-update input[name=update_columns][value=phone]")
    page.check("#import-update input[name=update_columns][value=level]")
    with page.expect_navigation():
        page.click("#import-submit")
    page.wait_for_selector("#import-plan", timeout=30_000)


def _open(page: Any, screen: Screen, *, for_picture: bool, made: dict[str, Any] | None = None) -> None:
    url = screen.url
    if url == "import-update":
        _import_update(page, (made or {})["sheet"])
        url = page.url
    elif made and url in made:
        url = made[url]
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


def _shoot(browser: Any, live_server: str, locale: str, screens: list[Screen],
           made: dict[str, Any] | None = None) -> list[tuple[Screen, str]]:
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
                _open(page, screen, for_picture=folder is not None, made=made)
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
    made = _lifecycle()
    taken = _shoot(browser, live_server, "zh", SCREENS, made)
    taken += _shoot(browser, live_server, "en", [s for s in SCREENS if s.english], made)
    assert len(taken) == len(SCREENS) + sum(s.english for s in SCREENS)
    _write_index(taken)
