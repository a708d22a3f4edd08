"""The stage history written on every move of an opportunity is shown: below the opportunity's details
(whoever may see the opportunity, nobody else) and on the customer's 360° timeline."""

from __future__ import annotations

import re
from typing import Any

from crm_admin import db
from crm_admin.opportunities.service import create_opportunity
from tests.customers.conftest import principal_for
from tests.opportunities.conftest import opportunity_through


def _history_rows(html: str) -> list[str]:
    table = html.split('id="stage-history"', 1)[1]
    rows = re.findall(r'<tr class="stage-change">(.*?)</tr>', table, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


def test_the_opportunity_details_show_its_stage_history(make_user: Any, make_customer: Any, login_as: Any) -> None:
    make_user("wang", real_name="王经理")
    make_user("li")
    cust = make_customer("阶段历史公司", manager="wang")
    wang = principal_for("wang")
    with db.transaction() as s:
        opp = opportunity_through(s, wang, cust.id, "仓储系统", "requirement", "proposal")

    page = login_as("wang").get(f"/admin/sales-opportunity/details/{opp.id}")
    assert page.status_code == 200
    rows = _history_rows(page.text)
    assert len(rows) == 3, rows
    assert "创建" in rows[0] and "初步接洽" in rows[0] and "王经理" in rows[0]
    assert "初步接洽 → 需求确认" in rows[1]
    assert "需求确认 → 方案报价" in rows[2]

    # another manager's opportunity: neither it nor its history
    other = login_as("li").get(f"/admin/sales-opportunity/details/{opp.id}")
    assert other.status_code == 404 and "仓储系统" not in other.text


def test_the_history_reads_in_english_too(make_user: Any, make_customer: Any, login_as: Any) -> None:
    make_user("wang")
    cust = make_customer("英文公司", manager="wang")
    with db.transaction() as s:
        opp = create_opportunity(s, principal_for("wang"), customer_id=cust.id, title="Deal", stage="initial")
    client = login_as("wang")
    page = client.get(f"/admin/sales-opportunity/details/{opp.id}?lang=en")
    assert page.status_code == 200
    assert "Stage history" in page.text and "阶段变更记录" not in page.text
