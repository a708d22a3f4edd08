"""Browser journeys of the customer lifecycle (issue 16): public pools (return, masked view, claim, the
limits, a lead's assignment), reclaim rules (form, preview, the owner's warning), the recycle bin
(restore exactly, purge), import that updates (dry run, apply, audit diff) and personal data (masked for
who may not see it, a revealed value audited, a data subject's export and erasure).

Each journey logs each of its users in once and keeps the page; the data is written straight to the
database where the journey is not about making it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.accounts.models import SysDept
from crm_admin.audit.models import AuditLog
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.pools.models import CustomerPoolLog
from crm_admin.reclaim.models import ReclaimRule
from crm_admin.recycle_bin.models import RecycleEntry
from tests.browser.conftest import page_errors, screenshot
from tests.care import factories as f
from tests.conftest import ADMIN_PASSWORD
from tests.pools import factories as pf
from tests.pools.reclaim_helpers import customer as aged_customer

pytestmark = pytest.mark.browser

MOBILE, MOBILE_MASKED = "13812341234", "138****1234"


def _dept(name: str) -> int:
    with acting_as(SYSTEM), db.transaction() as s:
        d = SysDept(name=name)
        s.add(d)
        s.flush()
        return int(d.id)


def _contact(customer_id: int, name: str, mobile: str = MOBILE) -> Linkman:
    return f.add(Linkman(customer_id=customer_id, name=name, mobile=mobile))


def _audit(action: str, resource: str) -> list[AuditLog]:
    with db.session_factory()() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action, AuditLog.resource == resource)
                              .order_by(AuditLog.id)).scalars())


def _submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def _no_errors(*pages: Any) -> None:
    for pg in pages:
        # a refused request (the limit, a row outside the scope) answers 4xx on purpose
        assert [e for e in page_errors(pg) if "status of 4" not in e] == []


# ----- public pools -----------------------------------------------------------------------------

def test_manager_returns_a_customer_another_claims_it_and_the_limit_refuses_more(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    east = _dept("华东销售部")
    a = make_user("bp_a", dept_id=east, real_name="张经理")
    make_user("bp_b", dept_id=east, real_name="李经理")
    pool = pf.pool("华东公海", mask_contacts=True)
    pf.limit(pool.id, "manager", daily=1)
    cust = f.customer(a.id, "东海重工有限公司", phone=MOBILE)
    _contact(cust.id, "周总")
    spare = pf.pooled(pool.id, "第二个公海客户")

    owner = login_page("bp_a")
    owner.goto(f"/admin/pools/return?customer_id={cust.id}")
    assert owner.locator(f"#cust-{cust.id}").is_checked()  # chosen from the 360° page's link
    owner.select_option("#pool_id", str(pool.id))
    # the reason is required: the browser keeps the form until one is written
    assert owner.evaluate("document.querySelector('#reason').validity.valueMissing")
    owner.fill("#reason", "客户三个月未接电话,退回公海")
    _submit(owner, "#pool-return-submit")
    assert "已退回公海 1 个客户" in owner.locator("#pool-return-done").inner_text()
    response = owner.goto(f"/admin/customer/details/{cust.id}")
    assert response is not None and response.status == 404  # no longer theirs

    other = login_page("bp_b")
    other.goto(f"/admin/pools/{pool.id}")
    row = other.locator("#pool-customers tr", has_text="东海重工有限公司")
    assert MOBILE_MASKED in row.inner_text() and MOBILE not in other.inner_text("body")
    assert "张经理" in row.inner_text() and "客户三个月未接电话" in row.inner_text()
    screenshot(other, "lifecycle-pool-masked")
    with other.expect_navigation():
        row.locator("a").first.click()
    assert other.locator("#pool-customer-phone").inner_text().strip() == MOBILE_MASKED
    moves = other.locator("#pool-customer-moves").inner_text()
    assert "退回" in moves and "客户三个月未接电话" in moves and "张经理" in moves
    screenshot(other, "lifecycle-pool-history")
    _submit(other, "#pool-customer-claim button")
    assert "已领取 1 个客户" in other.locator("#pool-message, .alert").first.inner_text()
    other.goto(f"/admin/customer/details/{cust.id}")
    assert MOBILE in other.inner_text("body")  # claimed: the phone is shown in full

    # the pool's daily limit for managers is 1: a second claim today is refused, in Chinese
    other.goto(f"/admin/pools/{pool.id}")
    assert "今天已从本公海领取:1 / 1" in other.locator("#pool-limits").inner_text()
    _submit(other, f"button[form=claim-one-{spare.id}]")
    error = other.locator(".alert-danger").inner_text()
    assert "每日领取上限为 1 个" in error and "今天最多还能再领取 0 个" in error

    with db.session_factory()() as s:
        assert s.get(Customer, cust.id).manager_id != a.id  # type: ignore[union-attr]
        assert s.get(Customer, spare.id).pool_id == pool.id  # type: ignore[union-attr]
        kinds = s.execute(select(CustomerPoolLog.kind).where(CustomerPoolLog.customer_id == cust.id)
                          .order_by(CustomerPoolLog.id)).scalars().all()
    assert kinds == ["return", "claim"]
    _no_errors(owner, other)


def test_lead_assigns_from_the_pool_only_within_the_department(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    east, west = _dept("华东销售部"), _dept("华西销售部")
    mine = make_user("bl_east", dept_id=east, real_name="钱经理")
    outside = make_user("bl_west", dept_id=west, real_name="孙经理")
    make_user("bl_lead", ["sales_lead"], dept_id=east, real_name="赵主管")
    pool = pf.pool("待分配公海")
    first = pf.pooled(pool.id, "分配甲公司")
    second = pf.pooled(pool.id, "分配乙公司")

    lead = login_page("bl_lead")
    lead.goto(f"/admin/pools/{pool.id}")
    offered = lead.locator("#user_id option").all_inner_texts()
    assert any("钱经理" in o for o in offered) and not any("孙经理" in o for o in offered)
    lead.check(f"#cust-{first.id}")
    lead.select_option("#user_id", str(mine.id))
    _submit(lead, "#pool-assign-submit")
    assert "已分配 1 个客户" in lead.inner_text("body")

    # a manager of another department, slipped into the form, is refused and nothing moves
    lead.check(f"#cust-{second.id}")
    lead.evaluate("([id, name]) => { const o = new Option(name, id); document.querySelector('#user_id').add(o); }",
                  [str(outside.id), "孙经理"])
    lead.select_option("#user_id", str(outside.id))
    _submit(lead, "#pool-assign-submit")
    assert lead.locator(".alert-danger").count() == 1
    with db.session_factory()() as s:
        assert s.get(Customer, first.id).manager_id == mine.id  # type: ignore[union-attr]
        got = s.get(Customer, second.id)
        assert got is not None and got.manager_id is None and got.pool_id == pool.id
    _no_errors(lead)


# ----- reclaim rules ------------------------------------------------------------------------------

def test_admin_creates_previews_and_enables_a_rule_and_the_owner_is_warned(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    mgr = make_user("br_mgr", real_name="吴经理")
    pool = pf.pool("回收公海")
    now = dt.datetime.now(dt.UTC)
    aged_customer(mgr.id, contact=45, base=now, name="久未跟进有限公司")
    aged_customer(mgr.id, contact=28, base=now, name="快到期有限公司")
    aged_customer(mgr.id, contact=1, base=now, name="刚联系有限公司")

    admin = login_page("admin", ADMIN_PASSWORD)
    admin.goto("/admin/reclaim-rule/create")
    admin.fill("#name", "三十天未跟进")
    admin.select_option("#pool", str(pool.id))
    admin.fill("#days_without_follow_up", "30")
    admin.fill("#warn_days", "5")
    _submit(admin, "input[type=submit][name=save] >> nth=0")
    with db.session_factory()() as s:
        made = s.execute(select(ReclaimRule)).scalar_one()
    assert (made.days_without_follow_up, made.warn_days, made.is_active) == (30, 5, False)

    admin.goto(f"/admin/reclaim-rule/preview?rule={made.id}")
    preview = admin.inner_text("body")
    assert "现在运行将回收 1 个客户" in preview and "久未跟进有限公司" in preview
    assert "快到期有限公司" not in preview and "自动回收:30 天未跟进" in preview
    screenshot(admin, "lifecycle-reclaim-preview")

    admin.goto(f"/admin/reclaim-rule/edit/{made.id}")
    admin.check("#is_active")
    _submit(admin, "input[type=submit][name=save] >> nth=0")
    with db.session_factory()() as s:
        assert s.get(ReclaimRule, made.id).is_active  # type: ignore[union-attr]
        assert s.execute(select(func.count()).select_from(Customer).where(Customer.pool_id.is_not(None))
                         ).scalar_one() == 0  # enabling moves no one: the daily job does

    owner = login_page("br_mgr")
    owner.goto("/admin/")
    warning = owner.locator("#dash-reclaim").inner_text()
    assert "快到期有限公司" in warning and "天后回收" in warning and "刚联系有限公司" not in warning
    assert "即将被回收的客户" in owner.inner_text("body")
    _no_errors(admin, owner)


# ----- recycle bin ------------------------------------------------------------------------------

def _delete_from_details(page: Any, identity: str, pk: int) -> None:
    page.goto(f"/admin/{identity}/details/{pk}")
    page.click('a[data-bs-target="#modal-delete"]')
    page.wait_for_selector("#modal-delete.show")
    # the button learns its URL when the modal has finished opening
    page.wait_for_selector("#modal-delete-button:not([data-url=''])")
    with page.expect_navigation():
        page.click("#modal-delete-button")


def test_admin_deletes_restores_exactly_and_purges(make_user: Any, login_page: Callable[..., Any]) -> None:
    mgr = make_user("bb_mgr", real_name="郑经理")
    kept = f.customer(mgr.id, "恢复测试有限公司", phone="13900001111", region="上海")
    contact = _contact(kept.id, "冯总", "13900002222")
    f.add(FollowUp(customer_id=kept.id, manager_id=mgr.id, method="phone", content="首次电话拜访",
                   contacted_at=dt.datetime(2026, 11, 2, 2, 0, tzinfo=dt.UTC)))
    gone = f.customer(mgr.id, "彻底删除有限公司")
    with db.session_factory()() as s:
        before = s.get(Customer, kept.id)
        assert before is not None
        snapshot = (before.code, before.name, before.phone, before.region, before.manager_id, before.version)

    admin = login_page("admin", ADMIN_PASSWORD)
    # a customer with contacts and follow-ups: deleted on its 360° page, its records with it
    admin.goto(f"/admin/customer/360/{kept.id}")
    blockers = admin.locator("#delete").inner_text()
    assert "1 个联系人" in blockers.replace(" ", "") or "1个联系人" in blockers.replace(" ", "")
    admin.fill("#delete input[name=confirm_name]", "恢复测试有限公司")
    admin.check("#delete input[name=cascade]")
    _submit(admin, "#delete button[type=submit]")
    _delete_from_details(admin, "customer", gone.id)  # one without records: from its details page
    admin.goto("/admin/customer/list")
    body = admin.inner_text("body")
    assert "恢复测试有限公司" not in body and "彻底删除有限公司" not in body

    admin.goto("/admin/recycle-bin")
    row = admin.locator("#recycle-entries tr", has_text="恢复测试有限公司")
    assert "客户" in row.inner_text() and "1 个联系人" in row.inner_text()
    screenshot(admin, "lifecycle-recycle-bin")
    _submit(admin, "#recycle-entries tr:has-text('恢复测试有限公司') button:has-text('恢复')")
    assert "冯总" in admin.locator("#recycle-chosen").inner_text() or "恢复测试有限公司" in admin.inner_text("body")
    _submit(admin, "#recycle-confirm-button")
    assert "已恢复 1 条记录" in admin.inner_text("body")

    _submit(admin, "#recycle-entries tr:has-text('彻底删除有限公司') button:has-text('彻底删除')")
    assert "彻底删除后无法恢复" in admin.inner_text("body")
    _submit(admin, "#recycle-confirm-button")
    assert "已彻底删除 1 条记录" in admin.inner_text("body")
    assert admin.locator("#recycle-entries tr[data-entry]").count() == 0

    admin.goto(f"/admin/customer/360/{kept.id}")
    page_text = admin.inner_text("body")
    assert "冯总" in page_text and "首次电话拜访" in page_text
    with db.session_factory()() as s:
        after = s.get(Customer, kept.id)
        assert after is not None
        assert (after.code, after.name, after.phone, after.region, after.manager_id, after.version) == snapshot
        assert s.get(Linkman, contact.id) is not None
        assert s.get(Customer, gone.id) is None
        assert s.execute(select(func.count()).select_from(RecycleEntry)).scalar_one() == 0
    assert [a.action for a in _audit("restore", "customer")] == ["restore"]
    _no_errors(admin)


# ----- import that updates ----------------------------------------------------------------------

def _wait_for_plan(page: Any) -> None:
    """The job page reloads itself when the dry run (or the import) is done."""
    page.wait_for_selector("#import-plan", timeout=30_000)


def test_import_dry_run_shows_create_and_update_then_apply_is_audited_field_by_field(
    make_user: Any, login_page: Callable[..., Any], tmp_path: Any
) -> None:
    import random

    from crm_admin.customers import service as customers
    from crm_admin.customers.codes import make_credit_code
    from tests.imports.jobs import workbook

    mgr = make_user("bi_mgr", real_name="陈经理")
    rng = random.Random(1616)
    old_code, new_code = make_credit_code(rng), make_credit_code(rng)
    with acting_as(SYSTEM), db.transaction() as s:
        existing = Customer(name="导入更新有限公司", manager_id=mgr.id, credit_code=old_code, phone="13900000001",
                            region="北京", level="B")
        customers.validate_customer(existing)
        existing.code = customers.next_customer_codes(s)[0]
        s.add(existing)
        s.flush()
        existing_id = int(existing.id)
    sheet = tmp_path / "客户更新.xlsx"
    sheet.write_bytes(workbook(["客户名称", "统一社会信用代码", "电话", "地区", "客户等级"], [
        ["导入更新有限公司", old_code, "13911112222", "上海", "A"],
        ["导入新建有限公司", new_code, "13900000004", "广州", "B"],
    ]))

    admin = login_page("admin", ADMIN_PASSWORD)
    admin.goto("/admin/import/customer")
    admin.set_input_files("#import-file", str(sheet))
    admin.select_option("#import-match", "credit_code")
    admin.check("#import-update input[name=update_columns][value=phone]")
    admin.check("#import-update input[name=update_columns][value=level]")
    _submit(admin, "#import-submit")
    _wait_for_plan(admin)
    plan = admin.locator("#import-plan-rows").inner_text()
    assert "电话:13900000001 → 13911112222" in plan and "B 级(普通客户) → A 级(重点客户)" in plan
    assert "上海" not in plan  # a column not picked is neither shown nor changed
    outcomes = admin.locator("#import-plan-rows tbody tr").all_inner_texts()
    assert any("更新" in o for o in outcomes) and any("新建" in o and "导入新建有限公司" in o for o in outcomes)
    screenshot(admin, "lifecycle-import-update-dry-run")
    with db.session_factory()() as s:
        assert s.get(Customer, existing_id).phone == "13900000001"  # type: ignore[union-attr]  # dry run

    _submit(admin, "#apply-button")
    admin.wait_for_selector("#job-status:has-text('导入完成')", timeout=30_000)
    with db.session_factory()() as s:
        after = s.get(Customer, existing_id)
        assert after is not None and (after.phone, after.level, after.region) == ("13911112222", "A", "北京")
        assert s.execute(select(Customer.id).where(Customer.credit_code == new_code)).scalar() is not None
    (row,) = [r for r in _audit("update", "customer") if r.resource_id == str(existing_id)]
    admin.goto(f"/admin/audit-log/details/{row.id}")
    detail = admin.inner_text("body")
    assert "13900000001" in detail and "13911112222" in detail and "level" in detail
    _no_errors(admin)


# ----- personal data ----------------------------------------------------------------------------

def test_masked_without_the_permission_revealed_and_audited_with_it(
    make_user: Any, login_page: Callable[..., Any]
) -> None:
    from crm_admin.accounts.models import CasbinRule, SysRole
    from crm_admin.core.permissions import bump_policy_version

    with acting_as(SYSTEM), db.transaction() as s:  # may list, open and export, not see personal data
        s.add(SysRole(code="clerk", name="文员", data_scope="all"))
        for action in ("list", "view", "export"):
            s.add(CasbinRule(ptype="p", v0="role:clerk", v1="customer", v2=action, v3="all", v4="", v5=""))
        bump_policy_version(s.connection())
    make_user("bs_clerk", roles=("clerk",), real_name="文员小林")
    mgr = make_user("bs_mgr", real_name="何经理")
    cust = f.customer(mgr.id, "敏感信息有限公司", phone=MOBILE)
    pool = pf.pool("脱敏公海", mask_contacts=True)
    pooled = pf.pooled(pool.id, "公海敏感有限公司", phone="13700005678")

    clerk = login_page("bs_clerk")
    clerk.goto("/admin/customer/list")
    row = clerk.locator("tr", has_text="敏感信息有限公司")
    assert MOBILE_MASKED in row.inner_text() or MOBILE not in clerk.inner_text("body")
    assert MOBILE not in clerk.content()
    screenshot(clerk, "lifecycle-masked-list")
    clerk.goto(f"/admin/customer/details/{cust.id}")
    assert MOBILE_MASKED in clerk.inner_text("body") and MOBILE not in clerk.content()
    assert clerk.locator("form.crm-reveal").count() == 0  # nothing to reveal without the permission
    exported = clerk.request.get("/admin/customer/export/csv")
    assert exported.ok and MOBILE_MASKED in exported.text() and MOBILE not in exported.text()

    # a holder sees a pool's customer masked by the pool's rule and may reveal one value, audited
    admin = login_page("admin", ADMIN_PASSWORD)
    admin.goto(f"/admin/customer/details/{pooled.id}")
    assert "137****5678" in admin.inner_text("body") and "13700005678" not in admin.content()
    _submit(admin, "form.crm-reveal:has(input[value=phone]) button")
    assert admin.locator("#revealed-value").inner_text().strip() == "13700005678"
    (audited,) = _audit("reveal", "customer")
    assert (audited.resource_id, audited.changes, audited.username) == (str(pooled.id), {"field": "phone"}, "admin")
    _no_errors(clerk, admin)


def test_a_data_subject_export_and_erasure_of_a_contact(make_user: Any, login_page: Callable[..., Any]) -> None:
    mgr = make_user("bd_mgr", real_name="吕经理")
    cust = f.customer(mgr.id, "主体请求有限公司")
    contact = f.add(Linkman(customer_id=cust.id, name="欧阳娜", mobile="13600001234", email="ouyang@example.com"))
    f.add(FollowUp(customer_id=cust.id, linkman_id=contact.id, manager_id=mgr.id, method="phone",
                   content="与欧阳娜确认报价", contacted_at=dt.datetime(2026, 11, 3, 2, 0, tzinfo=dt.UTC)))

    admin = login_page("admin", ADMIN_PASSWORD)
    admin.goto(f"/admin/linkman/details/{contact.id}")
    with admin.expect_navigation():
        admin.click("text=个人信息主体请求")
    assert admin.locator("#subject-name").inner_text().strip() == "欧阳娜"
    admin.select_option("#subject-fmt", "json")
    with admin.expect_download() as download:
        admin.click("#subject-export-button")
    exported = download.value.path().read_text(encoding="utf-8")
    assert "13600001234" in exported and "与欧阳娜确认报价" in exported

    admin.fill("#confirm_name", "欧阳")
    admin.check("#subject-erase input[name=understood]")
    _submit(admin, "#subject-erase-button")
    assert "姓名" in admin.locator("#subject-error").inner_text()  # the name must be typed in full
    admin.fill("#confirm_name", "欧阳娜")
    admin.check("#subject-erase input[name=understood]")
    _submit(admin, "#subject-erase-button")
    assert "联系人的个人信息已匿名化" in admin.inner_text("body")
    assert admin.locator("#subject-anonymised").count() == 1
    with db.session_factory()() as s:
        erased = s.get(Linkman, contact.id)
        assert erased is not None and erased.mobile is None and "欧阳娜" not in erased.name
        note = s.execute(select(FollowUp.content).where(FollowUp.customer_id == cust.id)).scalar_one()
        assert "欧阳娜" not in note  # the business record stays, anonymised
    assert [a.action for a in _audit("subject_export", "linkman")] == ["subject_export"]
    assert [a.action for a in _audit("erase", "linkman")] == ["erase"]
    _no_errors(admin)
