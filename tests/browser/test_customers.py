"""Browser journey of a customer manager: import a sheet, find a customer with a combined query,
open its 360° page, log a follow-up, move an opportunity on the pipeline."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from crm_admin import db
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import SalesOpportunity
from tests.browser.conftest import page_errors, screenshot

pytestmark = pytest.mark.browser


def _sheet(tmp_path: Any) -> str:
    wb = Workbook()
    ws = wb.active
    ws.append(["客户名称*", "行业", "客户等级", "地区", "电话"])
    ws.append(["杭州云帆网络科技有限公司", "信息技术", "A 级(重点客户)", "杭州", "0571-88001234"])
    ws.append(["杭州云帆网络科技", "信息技术", "A", "杭州", ""])  # duplicate in the file
    ws.append(["宁波海通物流有限公司", "交通物流", "B", "宁波", "13900001111"])
    ws.append(["坏等级公司", "信息技术", "S 级", "杭州", ""])  # not a dictionary label
    path = tmp_path / "客户名单.xlsx"
    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(buf.getvalue())
    return str(path)


def test_manager_imports_finds_works_customer_and_moves_opportunity(
    tmp_path: Any, make_user: Any, login_page: Callable[..., Any]
) -> None:
    make_user("bw_cust", real_name="许经理")
    page = login_page("bw_cust")

    # 1. import a sheet: dry run, then apply the valid rows
    page.goto("/admin/customer/list")
    page.click("#customer-import-link")
    page.wait_for_url("**/admin/import/customer")
    page.set_input_files("#import-file", _sheet(tmp_path))
    page.click("#import-submit")
    page.wait_for_url("**/admin/import/job/**")
    page.wait_for_selector("#apply-form:not([hidden])")
    assert "可导入 2 行" in page.locator("#job-message").inner_text()
    assert "有问题 2 行" in page.locator("#job-message").inner_text()
    page.click("#apply-button")
    page.wait_for_selector("#job-message.alert-success")
    assert "成功 2 行" in page.locator("#job-message").inner_text()
    assert page.locator("#errors-link").is_visible()
    screenshot(page, "customers-import-done")

    # 2. find the customer with a combined query (prefix + level + region), bookmarkable URL
    page.goto("/admin/customer/list")
    page.fill("#cq-q", "杭州")
    page.select_option("#cq-level", "A")
    page.fill("#cq-region", "杭州")
    page.click("#cq-submit")
    page.wait_for_url("**q=**")
    assert "level=A" in page.url and "industry=" not in page.url  # empty conditions are left out
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "杭州云帆网络科技有限公司" in rows.first.inner_text()
    screenshot(page, "customers-combined-query")

    # 3. open its 360° page
    page.click("text=杭州云帆网络科技有限公司")
    page.wait_for_url("**/admin/customer/360/**")
    assert "A 级(重点客户)" in page.locator("#customer-360").inner_text()

    # 4. log a follow-up: the timeline and the last contact time change
    page.select_option("#follow-up-form select[name=method]", "visit")
    page.fill("#follow-up-form textarea[name=content]", "上门拜访,确认二期需求")
    page.click("#follow-up-submit")
    page.wait_for_selector(".alert-success")
    assert "上门拜访,确认二期需求" in page.locator("#timeline").inner_text()
    assert page.locator("#last-contact").inner_text().strip() != "—"

    # a new opportunity from the same page
    page.fill("#opportunity-form input[name=title]", "二期扩容")
    page.fill("#opportunity-form input[name=amount]", "120000")
    page.fill("#opportunity-form input[name=probability]", "40")
    page.click("#opportunity-form button[type=submit]")
    page.wait_for_selector(".alert-success")

    # 5. move the opportunity on the pipeline
    page.goto("/admin/pipeline")
    item = page.locator(".pipeline-stage[data-stage=initial] .pipeline-item", has_text="二期扩容")
    assert item.count() == 1
    item.locator("select[name=stage]").select_option("proposal")
    item.locator("button[type=submit]").click()
    page.wait_for_selector(".alert-success")
    moved = page.locator(".pipeline-stage[data-stage=proposal] .pipeline-item", has_text="二期扩容")
    assert moved.count() == 1
    assert "¥120,000.00" in page.locator(".pipeline-stage[data-stage=proposal] .stage-summary").inner_text()
    screenshot(page, "customers-pipeline-moved")
    assert page_errors(page) == []

    with db.session_factory()() as s:
        cust = s.execute(select(Customer).where(Customer.name == "杭州云帆网络科技有限公司")).scalar_one()
        assert cust.last_contact_at is not None
        assert s.execute(select(FollowUp).where(FollowUp.customer_id == cust.id)).scalar_one().method == "visit"
        assert s.execute(select(SalesOpportunity.stage)).scalar_one() == "proposal"
