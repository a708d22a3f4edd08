from __future__ import annotations

import datetime as dt
import re
from typing import Any

from crm_admin.core.formatting import local_today
from tests.care import factories as f
from tests.conftest import login


def _stat(html: str, stat_id: str) -> str:
    m = re.search(rf'id="{stat_id}".*?<div class="h1[^"]*">([^<]*)</div>', html, re.S)
    assert m, stat_id
    return m.group(1).strip()


def test_manager_lands_on_their_work(make_user: Any, login_as: Any) -> None:
    a = make_user("dash_a", real_name="郑经理")
    b = make_user("dash_b")
    mine = f.customer(a.id, "我的看板客户", status="at_risk")
    theirs = f.customer(b.id, "别人的看板客户", status="at_risk")
    today = local_today()
    f.care(mine.id, a.id, due_date=today)
    f.care(mine.id, a.id, due_date=today - dt.timedelta(days=3))
    f.care(theirs.id, b.id, due_date=today)
    f.opportunity(mine.id, a.id, amount="12345.00", stage="proposal")
    f.opportunity(theirs.id, b.id, amount="99999.00", stage="proposal")

    page = login_as("dash_a").get("/admin/")
    assert page.status_code == 200
    html = page.text
    assert _stat(html, "stat-care-today") == "1"
    assert _stat(html, "stat-care-overdue") == "1"
    assert _stat(html, "stat-at-risk") == "1"
    assert "我的看板客户" in html and "别人的看板客户" not in html
    assert "12,345.00" in html and "99,999.00" not in html
    # the numbers link to the lists behind them
    assert 'href="/admin/care/workbench"' in html or "/admin/care/workbench" in html
    assert "status=at_risk" in html


def test_admin_sees_totals_and_failed_logins(admin_client: Any, client: Any, make_user: Any) -> None:
    m = make_user("dash_m")
    f.customer(m.id)
    f.customer(m.id)
    login(client, "dash_m", "wrong-password-1")
    html = admin_client.get("/admin/").text
    assert _stat(html, "stat-customers") == "2"
    assert "最近的登录失败" in html
    assert re.search(r'id="dash-failed-logins".*dash_m', html, re.S)


def test_readonly_dashboard_opens(make_user: Any, login_as: Any) -> None:
    make_user("dash_ro", roles=("readonly",))
    assert login_as("dash_ro").get("/admin/").status_code == 200


def test_an_empty_system_shows_first_steps_not_a_board_of_zeros(admin_client: Any, make_user: Any) -> None:
    page = admin_client.get("/admin/")
    assert page.status_code == 200 and 'id="first-steps"' in page.text
    assert "/admin/users/new" in page.text and "/admin/import/customer" in page.text and "crm-admin demo" in page.text
    rate = page.text.split('id="stat-care-rate"', 1)[1].split("</a>", 1)[0]
    assert "—" in rate and "0.0%" not in rate and "text-green" not in rate  # nothing to complete yet
    f.customer(make_user("wang").id, "第一位客户")
    assert 'id="first-steps"' not in admin_client.get("/admin/").text
