"""Merging two customers goes through a preview: the two customers side by side, what moves (per kind of
record, from the customer-records registry), which values the kept customer ends up with. The preview
changes nothing; the confirmation checks everything again (scope, both still there, two different
customers, nothing changed since the preview) and merges in one transaction with its audit row."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select, update

from crm_admin import db
from crm_admin.accounts.models import CasbinRule
from crm_admin.audit.models import AuditLog
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.permissions import bump_policy_version
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from tests.company import snapshot
from tests.customers.conftest import form_token, hidden_fields, merge_preview, merge_through_preview


def _hang(customer_id: int, contacts: int = 1, follow_ups: int = 1) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        for i in range(contacts):
            s.add(Linkman(customer_id=customer_id, name=f"联系人{i}"))
        for _ in range(follow_ups):
            s.add(FollowUp(customer_id=customer_id, method="phone", content="x",
                           contacted_at=dt.datetime.now(dt.UTC)))


def _record_row(html: str, label: str) -> list[str]:
    """The numbers of the preview's row for a kind of record: [kept, moving, after]."""
    table = re.search(r'<table[^>]*id="merge-records".*?</table>', html, re.S)
    assert table is not None
    row = re.search(rf'<tr data-kind="{label}">(.*?)</tr>', table.group(0), re.S)
    assert row is not None, label
    return re.findall(r'<td class="text-end[^"]*">(\d+)</td>', row.group(1))


def _field_row(html: str, key: str) -> str:
    row = re.search(rf'<tr data-field="{key}"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None, key
    return row.group(0)


def _merges() -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == "merge")).scalar_one())


def _exists(customer_id: int) -> bool:
    with db.session_factory()() as s:
        return s.get(Customer, customer_id) is not None


def test_preview_shows_both_customers_what_moves_and_what_is_kept_and_changes_nothing(
        admin_client: Any, make_user: Any, make_customer: Any) -> None:
    make_user("wang")
    keep = make_customer("保留科技有限公司", manager="wang", region="北京")
    drop = make_customer("保留科技公司", manager="wang", region="上海", phone="13911112222", address="长安街 1 号")
    _hang(keep.id, contacts=1, follow_ups=0)
    _hang(drop.id, contacts=2, follow_ups=3)
    before = snapshot()

    page = merge_preview(admin_client, keep.code, drop.code)  # by code, as typed
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "保留科技有限公司" in html and "保留科技公司" in html
    assert _record_row(html, "联系人") == ["1", "2", "3"]
    assert _record_row(html, "联系记录") == ["0", "3", "3"]
    assert _record_row(html, "销售机会") == ["0", "0", "0"]  # every registered kind is listed
    assert re.search(r'id="merge-moving-total">5<', html)
    # the kept customer's value stays; its blanks are filled from the other one, and the page says so
    region = _field_row(html, "region")
    assert "北京" in region and "取自被合并客户" not in region
    phone = _field_row(html, "phone")
    assert "13911112222" in phone and "取自被合并客户" in phone
    assert "取自被合并客户" in _field_row(html, "address")
    assert "取自被合并客户" not in _field_row(html, "name")

    # by id (the picker's value) the same preview; and nothing anywhere has changed
    assert _record_row(merge_preview(admin_client, keep.id, drop.id).text, "联系人") == ["1", "2", "3"]
    assert snapshot() == before
    assert _merges() == 0 and _exists(drop.id)


def test_confirming_the_preview_merges_in_one_go_with_the_audit(
        admin_client: Any, make_user: Any, make_customer: Any) -> None:
    make_user("wang")
    keep = make_customer("甲公司", manager="wang", region="北京")
    drop = make_customer("甲公司(重复)", manager="wang", phone="13911112222")
    _hang(keep.id)
    _hang(drop.id, contacts=2, follow_ups=1)

    r = merge_through_preview(admin_client, keep.id, drop.id)
    assert r.status_code == 303, r.text[:500]
    assert f"/customer/360/{keep.id}" in r.headers["location"]
    assert not _exists(drop.id)
    with db.session_factory()() as s:
        kept = s.get(Customer, keep.id)
        assert kept is not None and kept.phone == "13911112222" and kept.region == "北京"
        assert s.execute(select(func.count()).select_from(Linkman).where(Linkman.customer_id == keep.id)).scalar_one() == 3
        entry = s.execute(select(AuditLog).where(AuditLog.action == "merge")).scalar_one()
    assert entry.changes["moved"]["linkman"] == 2 and entry.changes["moved"]["follow_up"] == 1
    assert entry.changes["filled"] == ["phone"]
    # the 360° page of the kept customer says how many records came over
    assert "转入 3 条关联记录" in admin_client.get(r.headers["location"]).text


@pytest.mark.parametrize("change", ["kept customer edited", "dropped customer edited", "contact added"])
def test_a_stale_preview_is_refused_and_shown_again(
        admin_client: Any, make_customer: Any, change: str) -> None:
    keep = make_customer("乙公司")
    drop = make_customer("乙公司(重复)")
    _hang(drop.id)
    page = merge_preview(admin_client, keep.id, drop.id)
    posted = hidden_fields(page.text, "merge-confirm")

    with acting_as(SYSTEM), db.transaction() as s:
        if change == "contact added":
            s.add(Linkman(customer_id=drop.id, name="预览之后加的联系人"))
        else:
            row = s.get(Customer, keep.id if change == "kept customer edited" else drop.id)
            assert row is not None
            row.remark = "预览之后改过"  # the ORM bumps ``version``
    before = snapshot()

    r = admin_client.post("/admin/customer/merge/confirm", data=posted, follow_redirects=False)
    assert r.status_code == 409
    assert "已有变化" in r.text and 'id="merge-notice"' in r.text
    assert snapshot() == before and _merges() == 0 and _exists(drop.id)
    if change == "contact added":
        assert _record_row(r.text, "联系人") == ["0", "2", "2"]  # the fresh preview counts the new one
    # the preview shown again can be confirmed
    again = admin_client.post("/admin/customer/merge/confirm", data=hidden_fields(r.text, "merge-confirm"),
                              follow_redirects=False)
    assert again.status_code == 303 and not _exists(drop.id)


def test_a_confirmation_without_a_preview_merges_nothing(admin_client: Any, make_customer: Any) -> None:
    keep = make_customer("丙公司")
    drop = make_customer("丙公司(重复)")
    token = form_token(admin_client.get("/admin/customer/merge").text)
    r = admin_client.post("/admin/customer/merge/confirm",
                          data={"keep": str(keep.id), "drop": str(drop.id), "csrf_token": token},
                          follow_redirects=False)
    assert r.status_code == 409 and 'id="merge-confirm"' in r.text  # shown the preview to confirm
    assert _exists(drop.id) and _merges() == 0


def test_the_same_customer_twice_is_refused(admin_client: Any, make_customer: Any) -> None:
    one = make_customer("丁公司")
    before = snapshot()
    for keep, drop in ((one.id, one.id), (one.code, one.id), (one.id, one.code.lower())):
        r = merge_preview(admin_client, keep, drop)
        assert r.status_code == 400, (keep, drop)
        assert "是同一个客户" in r.text
    page = merge_preview(admin_client, one.id, make_customer("戊公司").id)
    posted = {**hidden_fields(page.text, "merge-confirm"), "drop": str(one.id)}
    r = admin_client.post("/admin/customer/merge/confirm", data=posted, follow_redirects=False)
    assert r.status_code == 400 and "是同一个客户" in r.text
    assert _exists(one.id) and _merges() == 0
    assert snapshot()["customer"][0] == before["customer"][0] + 1  # only 戊公司 was added, by the test


def _grant_merge(role: str, scope: str) -> None:
    with db.transaction() as session:
        session.add(CasbinRule(ptype="p", v0=f"role:{role}", v1="customer", v2="merge", v3=scope))
        bump_policy_version(session.connection())


def test_a_customer_outside_the_scope_is_answered_like_one_that_does_not_exist(
        make_user: Any, login_as: Any, make_customer: Any) -> None:
    _grant_merge("manager", "self")  # managers may merge their own customers
    make_user("wang")
    make_user("li")
    mine = make_customer("王的客户", manager="wang")
    also_mine = make_customer("王的另一客户", manager="wang")
    theirs = make_customer("李的客户", manager="li")
    c = login_as("wang")
    before = snapshot()

    by_code = merge_preview(c, mine.code, theirs.code)
    no_code = merge_preview(c, mine.code, "C999999999")
    assert by_code.status_code == no_code.status_code == 404
    assert "找不到要合并掉的客户" in by_code.text
    # word for word the same page, but for the typed code echoed in the language switch's links
    assert by_code.text.replace(theirs.code, "?") == no_code.text.replace("C999999999", "?")
    by_id = merge_preview(c, theirs.id, also_mine.id)
    no_id = merge_preview(c, 2_000_000_000, also_mine.id)
    assert by_id.status_code == no_id.status_code == 404
    assert "找不到要保留的客户" in by_id.text
    assert by_id.text.replace(f"keep={theirs.id}", "?") == no_id.text.replace("keep=2000000000", "?")

    # the picker offers only what the user may merge
    found = c.get("/admin/customer/merge/lookup", params={"term": "王"}).json()["results"]
    assert {r["id"] for r in found} == {str(mine.id), str(also_mine.id)}
    assert c.get("/admin/customer/merge/lookup", params={"term": "李"}).json()["results"] == []
    assert c.get("/admin/customer/merge/lookup", params={"term": theirs.code}).json()["results"] == []

    # a confirmation naming another manager's customer (e.g. a forged form) is refused the same way
    page = merge_preview(c, mine.id, also_mine.id)
    assert page.status_code == 200
    posted = hidden_fields(page.text, "merge-confirm")
    forged = c.post("/admin/customer/merge/confirm", data={**posted, "drop": str(theirs.id)}, follow_redirects=False)
    missing = c.post("/admin/customer/merge/confirm", data={**posted, "drop": "2000000000"}, follow_redirects=False)
    assert forged.status_code == missing.status_code == 404
    assert forged.text == missing.text
    assert snapshot() == before and _merges() == 0

    # the control: the same user merges their own two customers
    assert merge_through_preview(c, mine.id, also_mine.id).status_code == 303
    assert not _exists(also_mine.id) and _exists(theirs.id)


def test_the_customer_moved_out_of_scope_after_the_preview_is_not_merged(
        make_user: Any, login_as: Any, make_customer: Any) -> None:
    _grant_merge("manager", "self")
    make_user("wang")
    li = make_user("li")
    mine = make_customer("王的客户", manager="wang")
    leaving = make_customer("将转走的客户", manager="wang")
    c = login_as("wang")
    page = merge_preview(c, mine.id, leaving.id)
    with db.transaction() as s:  # transferred to li meanwhile
        s.execute(update(Customer).where(Customer.id == leaving.id).values(manager_id=li.id))
    r = c.post("/admin/customer/merge/confirm", data=hidden_fields(page.text, "merge-confirm"),
               follow_redirects=False)
    assert r.status_code == 404 and "找不到要合并掉的客户" in r.text
    assert _exists(leaving.id) and _merges() == 0


def test_merge_page_offers_the_pickers_and_english_texts(admin_client: Any, make_customer: Any) -> None:
    keep = make_customer("己公司")
    page = admin_client.get("/admin/customer/merge", params={"keep": keep.id})
    assert page.status_code == 200
    assert 'data-role="select2-ajax"' in page.text and "/admin/customer/merge/lookup" in page.text
    chosen = re.search(r'id="merge-keep"[^>]*data-json="([^"]*)"', page.text)
    assert chosen is not None  # the kept customer is already chosen
    assert json.loads(unescape(chosen.group(1))) == [{"id": keep.id, "text": f"{keep.code} 己公司"}]
    admin_client.cookies.set("crm_lang", "en")
    english = admin_client.get("/admin/customer/merge/preview", params={"keep": keep.id, "drop": keep.id})
    assert "same customer" in english.text


def test_names_in_the_preview_are_escaped(admin_client: Any, make_customer: Any) -> None:
    keep = make_customer("<b>保留</b>公司")
    drop = make_customer("<script>x</script>公司")
    text = merge_preview(admin_client, keep.id, drop.id).text
    assert "<script>x</script>" not in text and "<b>保留</b>" not in text
    assert "&lt;script&gt;x&lt;/script&gt;公司" in text


def test_a_customer_in_a_public_pool_is_not_merged(admin_client: Any, make_user: Any, make_customer: Any) -> None:
    """A pooled customer has no manager: merging it would take it out of the pool without a claim (past
    its limits and its log) or give a customer's records to nobody. Refused at the preview and again at
    the confirmation, with a message saying what to do; nothing changes."""
    from crm_admin.pools.models import CustomerPool
    from tests.pools import factories as pf

    make_user("wang")
    pool = pf.pool("合并公海")
    kept = make_customer("公海合并甲公司", manager="wang")
    pooled = pf.pooled(pool.id, "公海合并乙公司")
    _hang(pooled.id, contacts=1, follow_ups=1)
    before = snapshot()
    for keep, drop, name in ((kept.id, pooled.id, "公海合并乙公司"), (pooled.id, kept.id, "公海合并乙公司")):
        page = merge_preview(admin_client, keep, drop)
        assert page.status_code in (400, 409), page.status_code
        assert f"客户“{name}”({pooled.code})在公海中,不能合并" in unescape(page.text)
        assert "请先领取或分配给客户经理" in unescape(page.text)
    assert snapshot() == before and _merges() == 0

    # previewed while both were managed; one went to the pool before the confirmation
    other = make_customer("公海合并丙公司", manager="wang")
    page = merge_preview(admin_client, kept.id, other.id)
    assert page.status_code == 200
    with acting_as(SYSTEM), db.transaction() as s:
        s.execute(update(Customer).where(Customer.id == other.id).values(pool_id=pool.id, manager_id=None))
        assert s.get(CustomerPool, pool.id) is not None
    r = admin_client.post("/admin/customer/merge/confirm", data=hidden_fields(page.text, "merge-confirm"),
                          follow_redirects=False)
    assert r.status_code in (400, 409) and "在公海中,不能合并" in unescape(r.text)
    assert _merges() == 0 and _exists(other.id)
