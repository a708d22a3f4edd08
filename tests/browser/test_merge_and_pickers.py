"""Browser journeys of two flows that used to confuse: merging two customers through a preview (pick both
with the scoped picker, see what moves and what is kept, confirm), and the care-plan form's contact
picker, which waits for the customer and then offers only that customer's contacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CarePlan
from crm_admin.contacts.models import Linkman
from crm_admin.customers.models import Customer
from tests.browser.conftest import page_errors, screenshot
from tests.care import factories as f
from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.browser


def _type_in_open_picker(page: Any, typed: str) -> None:
    """Type into the open picker's search field once it has the focus (typing earlier is lost)."""
    field = page.locator(".select2-container--open .select2-search__field")
    field.wait_for()
    field.focus()
    page.keyboard.type(typed)


def _pick(page: Any, select_id: str, typed: str, expected: str) -> None:
    """Choose ``expected`` in the select2 picker of ``select_id`` after typing ``typed``."""
    page.click(f"select#{select_id} + span.select2 .select2-selection")
    _type_in_open_picker(page, typed)
    page.locator(".select2-results__option--selectable", has_text=expected).first.wait_for()
    page.locator(".select2-results__option--selectable", has_text=expected).first.click()


def test_admin_merges_two_customers_through_the_preview(make_user: Any, login_page: Callable[..., Any]) -> None:
    manager = make_user("bw_merge", real_name="合并经理")
    keep = f.customer(manager.id, "浦江合并保留有限公司", region="上海")
    drop = f.customer(manager.id, "浦江合并重复有限公司", phone="13911112222")
    f.linkman(keep.id, name="保留方联系人")
    f.linkman(drop.id, name="重复方联系人甲")
    f.linkman(drop.id, name="重复方联系人乙")
    page = login_page("admin", ADMIN_PASSWORD)

    # from the customer list to the merge page; both customers chosen with the picker
    page.goto("/admin/customer/list")
    page.click("text=合并客户")
    page.wait_for_url("**/admin/customer/merge")
    _pick(page, "merge-keep", "浦江合并保留", "浦江合并保留有限公司")
    _pick(page, "merge-drop", drop.code, "浦江合并重复有限公司")  # by code, typed into the picker
    page.click("#merge-preview-button")
    page.wait_for_url("**/admin/customer/merge/preview**")

    # the preview: both side by side, what moves, what is kept; nothing changed yet
    assert page.locator("#merge-records tr[data-kind=联系人] .merge-moving").inner_text() == "2"
    assert page.locator("#merge-moving-total").inner_text() == "2"
    phone = page.locator("#merge-fields tr[data-field=phone] .merge-result").inner_text()
    assert "13911112222" in phone and "取自被合并客户" in phone
    assert "上海" in page.locator("#merge-fields tr[data-field=region] .merge-result").inner_text()
    screenshot(page, "merge-preview")
    with db.session_factory()() as s:
        assert s.get(Customer, drop.id) is not None

    # confirm: the kept customer's 360° page says what came over
    page.click("#merge-confirm-button")
    page.wait_for_url(f"**/admin/customer/360/{keep.id}**")
    assert "合并完成,转入 2 条关联记录" in page.locator("#customer-360").inner_text()
    assert "重复方联系人甲" in page.locator("#customer-360").inner_text()
    with db.session_factory()() as s:
        assert s.get(Customer, drop.id) is None
        assert s.execute(select(func.count()).select_from(Linkman).where(Linkman.customer_id == keep.id)).scalar_one() == 3
        assert s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == "merge")).scalar_one() == 1
    assert not page_errors(page), page_errors(page)


def test_care_plan_contact_picker_offers_only_the_chosen_customers_contacts(
        make_user: Any, login_page: Callable[..., Any]) -> None:
    manager = make_user("bw_picker", real_name="关怀经理")
    other = make_user("bw_picker_other")
    one = f.customer(manager.id, "一号关怀公司")
    two = f.customer(manager.id, "二号关怀公司")
    theirs = f.customer(other.id, "别人的关怀公司")
    f.linkman(one.id, name="王一号")
    f.linkman(two.id, name="王二号")
    f.linkman(theirs.id, name="王三号")
    page = login_page("bw_picker")

    page.goto("/admin/care-plan/create")
    # no customer yet: the contact picker is closed and says what to do first
    assert page.locator("select#linkman").is_disabled()
    assert page.locator("select#linkman + span.select2").inner_text().strip() == "请先选择客户"

    _pick(page, "customer", "一号", "一号关怀公司")
    assert page.locator("select#linkman").is_enabled()
    page.click("select#linkman + span.select2 .select2-selection")
    _type_in_open_picker(page, "王")
    page.locator(".select2-results__option--selectable", has_text="王一号").wait_for()
    assert page.locator(".select2-results__option--selectable").all_inner_texts() == ["王一号"]
    page.keyboard.press("Enter")
    screenshot(page, "care-plan-contact-picker")

    # another customer chosen: the contact chosen for the first one is cleared
    _pick(page, "customer", "二号", "二号关怀公司")
    assert page.locator("select#linkman").input_value() == ""
    page.click("select#linkman + span.select2 .select2-selection")
    _type_in_open_picker(page, "王")
    page.locator(".select2-results__option--selectable", has_text="王二号").wait_for()
    assert page.locator(".select2-results__option--selectable").all_inner_texts() == ["王二号"]
    page.keyboard.press("Enter")

    page.select_option("select[name=care_type]", "visit")
    page.fill("input[name=interval_days]", "30")
    page.fill("input[name=next_date]", "2030-01-01")
    page.click("input[type=submit][name=save] >> nth=0")
    page.wait_for_url("**/admin/care-plan/list**")
    with db.session_factory()() as s:
        plan = s.execute(select(CarePlan)).scalar_one()
        contact = s.get(Linkman, plan.linkman_id)
        assert plan.customer_id == two.id and contact is not None and contact.name == "王二号"
    assert not page_errors(page), page_errors(page)
