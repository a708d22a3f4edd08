"""Merge (admins, audited, every record moved), cascade delete by explicit choice, 360° page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.codes import make_credit_code
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import SalesOpportunity
from tests.customers.conftest import form_token, merge_through_preview


def _hang(customer_id: int) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(Linkman(customer_id=customer_id, name="联系人"))
        s.add(FollowUp(customer_id=customer_id, method="phone", content="x", contacted_at=dt.datetime.now(dt.UTC)))
        s.add(SalesOpportunity(customer_id=customer_id, title="机会", stage="initial"))


def test_admin_merges_two_customers(admin_client: Any, make_customer: Any, make_user: Any) -> None:
    make_user("wang")
    code = make_credit_code()
    keep = make_customer("保留公司", manager="wang")
    drop = make_customer("重复公司", manager="wang", credit_code=code, phone="13911112222")
    _hang(keep.id)
    _hang(drop.id)
    r = merge_through_preview(admin_client, keep.code, drop.id)
    assert r.status_code == 303, r.text[:500]
    with db.session_factory()() as s:
        assert s.get(Customer, drop.id) is None
        kept = s.get(Customer, keep.id)
        assert kept.credit_code == code and kept.phone == "13911112222"
        for model in (Linkman, FollowUp, SalesOpportunity):
            assert s.execute(select(func.count()).select_from(model).where(model.customer_id == keep.id)).scalar_one() == 2
        entry = s.execute(select(AuditLog).where(AuditLog.action == "merge")).scalar_one()
        assert entry.changes["moved"]["linkman"] == 1


def test_manager_cannot_merge(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    a = make_customer("甲", manager="wang")
    b = make_customer("乙", manager="wang")
    c = login_as("wang")
    assert c.get("/admin/customer/merge").status_code == 403
    assert c.get("/admin/customer/merge/preview", params={"keep": a.id, "drop": b.id}).status_code == 403
    assert c.get("/admin/customer/merge/lookup", params={"term": "甲"}).status_code == 403
    r = c.post("/admin/customer/merge/confirm", data={"keep": str(a.id), "drop": str(b.id),
                                                      "csrf_token": form_token(c.get("/admin/customer/list").text)})
    assert r.status_code == 403
    with db.session_factory()() as s:
        assert s.get(Customer, b.id) is not None


def test_cascade_delete_only_by_explicit_choice(admin_client: Any, make_customer: Any) -> None:
    cust = make_customer("要删的公司")
    _hang(cust.id)
    page = admin_client.get(f"/admin/customer/360/{cust.id}")
    assert "1 个联系人" in page.text
    token = form_token(page.text)
    r = admin_client.post(f"/admin/customer/360/{cust.id}/delete", data={"csrf_token": token,
                                                                      "confirm_name": "要删的公司"},
                          follow_redirects=False)
    assert "error=" in r.headers["location"]
    with db.session_factory()() as s:
        assert s.get(Customer, cust.id) is not None
    r = admin_client.post(f"/admin/customer/360/{cust.id}/delete", data={"csrf_token": token, "cascade": "1",
                                                                      "confirm_name": "要删的公司"},
                          follow_redirects=False)
    assert r.status_code == 303 and "customer/list" in r.headers["location"]
    with db.session_factory()() as s:
        assert s.get(Customer, cust.id) is None
        assert s.execute(select(func.count()).select_from(Linkman)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "delete", AuditLog.resource == "linkman")).scalar_one() == 1


def test_360_page_shows_profile_contacts_and_timeline(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    cust = make_customer("时间线公司", manager="wang", level="A")
    _hang(cust.id)
    c = login_as("wang")
    html = c.get(f"/admin/customer/360/{cust.id}").text
    for text in ("时间线公司", "A 级(重点客户)", "联系人", "联系记录", "销售机会", "记录联系", "转移客户"):
        assert text in html, text
    token = form_token(html)
    r = c.post(f"/admin/customer/360/{cust.id}/contact", data={"csrf_token": token, "name": "新联系人",
                                                            "mobile": "13800001111", "is_primary": "1"},
               follow_redirects=False)
    assert r.status_code == 303 and "error" not in r.headers["location"]
    r = c.post(f"/admin/customer/360/{cust.id}/opportunity", data={"csrf_token": token, "title": "新商机",
                                                                "stage": "initial", "amount": "-5"},
               follow_redirects=False)
    assert "error=" in r.headers["location"]
    # the manager has no delete permission: the delete action answers 403
    r = c.post(f"/admin/customer/360/{cust.id}/delete", data={"csrf_token": token, "confirm_name": "时间线公司",
                                                           "cascade": "1"})
    assert r.status_code == 403
