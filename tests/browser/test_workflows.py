"""Browser journeys of the two core business flows (care, transfer) and churn handling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from crm_admin import db
from crm_admin.care.models import CustomerCare
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.core.formatting import local_today
from crm_admin.customers.models import Customer
from crm_admin.scheduler import service as scheduler
from crm_admin.transfers.models import CustomerTransfer
from tests.browser.conftest import page_errors, screenshot
from tests.care import factories as f
from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.browser


def test_manager_executes_todays_birthday_task_and_records_feedback(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    mgr = make_user("bw_care", real_name="冯经理")
    cust = f.customer(mgr.id, "华东精密机械有限公司")
    f.linkman(cust.id, local_today().replace(year=1988), name="陈总")  # 1988: a leap year
    assert scheduler.run_job("birthday_scan").created == 1  # the daily scan, as the scheduler runs it

    page = login_page("bw_care")
    page.goto("/admin/")
    assert page.locator("#stat-care-today .h1").inner_text().strip() == "1"
    page.click("#stat-care-today")
    page.wait_for_url("**/admin/care/workbench**")
    row = page.locator("#tasks-today tr", has_text="陈总")
    assert row.count() == 1 and "华东精密机械有限公司" in row.inner_text() and "生日祝福" in row.inner_text()
    task_id = int(row.get_attribute("data-task-id") or 0)

    # the row's button opens the page's one execute dialog with this task in it
    row.locator("a[data-care-action=execute]").click()
    dialog = page.locator("#care-execute-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("input[name=care_id]").input_value() == str(task_id)
    assert dialog.locator("select[name=care_type]").input_value() == "birthday"
    assert "华东精密机械有限公司" in dialog.locator("[data-care-subject]").inner_text()
    dialog.locator("form.execute-form textarea[name=detail]").fill("电话送上生日祝福,快递生日蛋糕")
    with page.expect_navigation():
        dialog.locator("form.execute-form button[type=submit]").click()
    assert "已记录本次关怀" in page.locator("#care-message").inner_text()

    row = page.locator("#tasks-today tr", has_text="陈总")
    assert "已执行" in row.inner_text()
    # opened again, the dialog shows what was recorded; closed, it changes nothing
    row.locator("a[data-care-action=execute]").click()
    dialog = page.locator("#care-execute-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("textarea[name=detail]").input_value() == "电话送上生日祝福,快递生日蛋糕"
    dialog.locator("[data-bs-dismiss=modal]").first.click()
    dialog.wait_for(state="hidden")
    row.locator("a[data-care-action=feedback]").click()
    dialog = page.locator("#care-feedback-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("input[name=care_id]").input_value() == str(task_id)
    dialog.locator("form.feedback-form textarea[name=feedback]").fill("陈总很感动,约下周面谈续约")
    dialog.locator("form.feedback-form select[name=status]").select_option("done")
    with page.expect_navigation():
        dialog.locator("form.feedback-form button[type=submit]").click()
    assert "已记录客户反馈" in page.locator("#care-message").inner_text()
    assert page.locator("#tasks-today tr", has_text="陈总").count() == 0
    assert "陈总很感动" in page.locator("#recent").inner_text()
    screenshot(page, "workflow-care-done")

    with db.session_factory()() as s:
        task = s.query(CustomerCare).one()
        assert (task.status, task.origin, task.detail, task.feedback) == (
            "done", "birthday", "电话送上生日祝福,快递生日蛋糕", "陈总很感动,约下周面谈续约")
        assert task.care_time is not None
    assert page_errors(page) == []


def test_manager_transfers_customer_and_loses_sight_of_it(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    old = make_user("bw_old", real_name="褚经理")
    new = make_user("bw_new", real_name="卫经理")
    cust = f.customer(old.id, "西部能源集团")
    f.customer(old.id, "留下的客户")

    page = login_page("bw_old")
    page.goto("/admin/transfer")
    page.check(f"#cust-{cust.id}")
    page.select_option("#new_manager_id", str(new.id))
    page.fill("#reason", "区域调整,西部客户统一由卫经理负责")
    with page.expect_navigation():
        page.click("#transfer-submit")
    assert "转移成功" in page.locator("#transfer-done").inner_text()
    assert "西部能源集团" not in page.inner_text("body")
    assert "留下的客户" in page.inner_text("body")
    response = page.goto(f"/admin/customer/details/{cust.id}")
    assert response is not None and response.status == 404

    other = login_page("bw_new")
    response = other.goto(f"/admin/customer/details/{cust.id}")
    assert response is not None and response.status == 200
    assert "西部能源集团" in other.inner_text("body")
    other.goto(f"/admin/transfer/history?customer_id={cust.id}")
    history = other.locator("#transfer-history").inner_text()
    assert "褚经理" in history and "卫经理" in history and "区域调整" in history
    screenshot(other, "workflow-transfer-history")

    with db.session_factory()() as s:
        assert s.get(Customer, cust.id).manager_id == new.id  # type: ignore[union-attr]
        assert s.query(CustomerTransfer).count() == 1
    # the old manager's 404 above is the expected answer, not a page error
    assert [e for e in page_errors(page) if "status of 404" not in e] == []
    assert page_errors(other) == []


def test_admin_closes_alert_as_lost_and_sees_it_in_the_analysis(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    mgr = make_user("bw_churn", real_name="蒋经理")
    cust = f.customer(mgr.id, "南方贸易有限公司",
                      last_contact_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=120))
    f.add(ChurnRule(name="九十天未联系", metric="days_since_contact", threshold=Decimal("90"), risk_level="high",
                    is_active=True))
    assert scheduler.run_job("churn_evaluation").created == 1

    page = login_page("admin", ADMIN_PASSWORD)
    page.goto("/admin/churn/alerts")
    row = page.locator("#alerts tr", has_text="南方贸易有限公司")
    assert "高风险" in row.inner_text()
    with page.expect_navigation():
        row.locator("a", has_text="处理").click()
    page.check("input[name=outcome][value=lost]")
    page.select_option("#reason", "competitor")
    page.fill("#analysis", "竞争对手以低 15% 的价格签下年度框架协议")
    with page.expect_navigation():
        page.click("#close-form button[type=submit]")
    assert "预警已关闭" in page.locator("#alert-message").inner_text()
    assert "已流失" in page.locator("#alert-status").inner_text()

    page.goto("/admin/churn/analysis")
    page.wait_for_load_state("networkidle")
    assert page.locator("#lost-total").inner_text().strip() == "1"
    assert "被竞争对手抢走" in page.locator("#table-reasons").inner_text()
    assert "蒋经理" in page.locator("#table-managers").inner_text()
    assert page.locator("#chart-reasons canvas").count() >= 1  # drawn by the locally served ECharts
    screenshot(page, "workflow-churn-analysis")

    with db.session_factory()() as s:
        alert = s.query(ChurnAlert).one()
        assert (alert.status, alert.reason) == ("lost", "competitor")
        assert s.get(Customer, cust.id).status == "lost"  # type: ignore[union-attr]
    assert page_errors(page) == []
