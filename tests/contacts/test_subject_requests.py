"""Requests of a data subject (个人信息主体请求) about a contact: export everything held about them, and
erase their personal data keeping the business records (anonymised). Administrators only, confirmed,
audited, irreversible."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CustomerCare
from crm_admin.care.service import create_manual_care
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import create_linkman
from crm_admin.core import search
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import log_follow_up
from tests.conftest import csrf_token

MOBILE, EMAIL = "13812345678", "zhangsan@example.com"


@pytest.fixture
def subject(make_user: Any, make_customer: Any, principal: Any) -> dict[str, Any]:
    """A contact named in a follow-up and a care record, and a second contact of the same customer."""
    make_user("wang")
    customer = make_customer("甲公司", manager="wang")
    wang = principal("wang")
    with acting_as(SYSTEM), db.transaction() as s:
        contact = create_linkman(s, wang, customer_id=customer.id, name="张三丰", mobile=MOBILE, email=EMAIL,
                                 phone="010-87654321", gender="男", birthday=dt.date(1980, 5, 6), remark="爱喝茶")
        other = create_linkman(s, wang, customer_id=customer.id, name="李四", mobile="13900001111")
        named = log_follow_up(s, wang, customer_id=customer.id, linkman_id=contact.id, method="phone",
                              content=f"给张三丰打电话({MOBILE}),约下周拜访;邮件 {EMAIL}")
        unnamed = log_follow_up(s, wang, customer_id=customer.id, linkman_id=other.id, method="phone",
                                content="李四说张三丰出差了")
        care = create_manual_care(s, wang, customer_id=customer.id, linkman_id=contact.id, care_type="gift",
                                  care_time=None, detail="给张三丰送茶叶", feedback="张三丰很满意")
    return {"customer": customer, "contact": contact, "other": other, "named": named, "unnamed": unnamed,
            "care": care}


def _page(client: Any, pk: int) -> Any:
    return client.get(f"/admin/linkman/subject/{pk}")


def test_only_administrators_may_handle_a_request(subject: dict[str, Any], login_as: Any,
                                                  admin_client: Any) -> None:
    pk = subject["contact"].id
    wang = login_as("wang")
    assert "个人信息主体请求" not in wang.get(f"/admin/linkman/details/{pk}").text
    token = csrf_token(wang)
    assert _page(wang, pk).status_code == 403
    assert wang.post(f"/admin/linkman/subject/{pk}/export", data={"fmt": "json", "csrf_token": token}).status_code == 403
    assert wang.post(f"/admin/linkman/subject/{pk}/erase",
                     data={"confirm_name": "张三丰", "understood": "1", "csrf_token": token}).status_code == 403
    details = admin_client.get(f"/admin/linkman/details/{pk}")
    assert f"/admin/linkman/subject/{pk}" in details.text
    page = _page(admin_client, pk)
    assert page.status_code == 200
    assert "此操作不可恢复" in page.text and "张三丰" in page.text
    assert _page(admin_client, 987654).status_code == 404
    with db.session_factory()() as s:
        assert s.get(Linkman, pk).name == "张三丰"


def test_the_export_holds_everything_about_the_contact(subject: dict[str, Any], admin_client: Any) -> None:
    pk = subject["contact"].id
    token = csrf_token(admin_client)
    response = admin_client.post(f"/admin/linkman/subject/{pk}/export", data={"fmt": "json", "csrf_token": token})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    held = json.loads(response.content)
    assert held["contact"]["name"] == "张三丰" and held["contact"]["mobile"] == MOBILE
    assert held["contact"]["remark"] == "爱喝茶" and held["customer"]["name"] == "甲公司"
    follow_ups = held["records"]["联系记录"]
    assert [r["id"] for r in follow_ups] == [subject["named"].id]  # only the records naming this contact
    assert [r["id"] for r in held["records"]["客户关怀"]] == [subject["care"].id]
    # the audit rows about the contact and about those records (their creation)
    about = {(r["resource"], r["resource_id"]) for r in held["audit"]}
    assert ("linkman", str(pk)) in about and ("follow_up", str(subject["named"].id)) in about
    assert ("follow_up", str(subject["unnamed"].id)) not in about
    with db.session_factory()() as s:
        rows = s.execute(select(AuditLog).where(AuditLog.action == "subject_export")).scalars().all()
    assert [(r.resource, r.resource_id, r.username) for r in rows] == [("linkman", str(pk), "admin")]
    assert MOBILE not in json.dumps(rows[0].changes) + (rows[0].detail or "")


def test_the_export_as_an_excel_workbook(subject: dict[str, Any], admin_client: Any) -> None:
    from openpyxl import load_workbook

    pk = subject["contact"].id
    response = admin_client.post(f"/admin/linkman/subject/{pk}/export",
                                 data={"fmt": "xlsx", "csrf_token": csrf_token(admin_client)})
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    assert {"联系人", "联系记录", "客户关怀", "审计记录"} <= set(book.sheetnames)
    cells = [c for row in book["联系人"].iter_rows(values_only=True) for c in row]
    assert "张三丰" in cells and MOBILE in cells
    bad = admin_client.post(f"/admin/linkman/subject/{pk}/export",
                            data={"fmt": "pdf", "csrf_token": csrf_token(admin_client)})
    assert bad.status_code == 400 and "导出格式" in bad.text


def test_erase_anonymises_the_contact_and_keeps_the_business_records(subject: dict[str, Any],
                                                                    admin_client: Any) -> None:
    pk = subject["contact"].id
    url = f"/admin/linkman/subject/{pk}/erase"
    token = csrf_token(admin_client)
    # no confirmation, a wrong name: refused, nothing changed
    unconfirmed = admin_client.post(url, data={"confirm_name": "张三丰", "csrf_token": token})
    assert unconfirmed.status_code == 400 and "不可恢复" in unconfirmed.text
    wrong = admin_client.post(url, data={"confirm_name": "张三", "understood": "1", "csrf_token": token})
    assert wrong.status_code == 400 and "完整姓名" in wrong.text
    with db.session_factory()() as s:
        assert s.get(Linkman, pk).mobile == MOBILE
    done = admin_client.post(url, data={"confirm_name": "张三丰", "understood": "1", "csrf_token": token},
                             follow_redirects=False)
    assert done.status_code == 303
    page = admin_client.get(done.headers["location"])
    assert "已匿名化" in page.text and "确认匿名化" not in page.text  # no second erase offered
    with db.session_factory()() as s:
        contact = s.get(Linkman, pk)
        assert contact.name == f"已匿名化联系人#{pk}"
        assert (contact.mobile, contact.phone, contact.email, contact.gender, contact.birthday,
                contact.birthday_md, contact.remark) == (None,) * 7
        assert contact.customer_id == subject["customer"].id  # still the customer's contact
        named = s.get(FollowUp, subject["named"].id)
        assert named.content == f"给已匿名化联系人#{pk}打电话([已删除]),约下周拜访;邮件 [已删除]"
        assert named.linkman_id == pk
        care = s.get(CustomerCare, subject["care"].id)
        assert (care.detail, care.feedback) == (f"给已匿名化联系人#{pk}送茶叶", f"已匿名化联系人#{pk}很满意")
        # a record that names someone else is not this contact's: left as it is
        assert s.get(FollowUp, subject["unnamed"].id).content == "李四说张三丰出差了"
        assert s.get(Linkman, subject["other"].id).mobile == "13900001111"
        # found no more by the old name or number
        assert s.execute(select(Linkman.id).where(search.match(s.connection(), Linkman, "张三丰"))).all() == []
        assert s.execute(select(Linkman.id).where(search.match(s.connection(), Linkman, "12345678"))).all() == []
        rows = s.execute(select(AuditLog).where(AuditLog.created_at >= contact.updated_at - dt.timedelta(seconds=5),
                                                AuditLog.resource.in_(("linkman", "follow_up", "customer_care")))
                         .order_by(AuditLog.id)).scalars().all()
    # one audit row for the erase, naming the fields and not their values
    erased = [r for r in rows if r.action == "erase"]
    assert len(erased) == 1 and erased[0].resource_id == str(pk)
    assert set(erased[0].changes["fields"]) == {"name", "gender", "phone", "mobile", "email", "birthday", "remark"}
    assert not [r for r in rows if r.action == "update"]  # no before/after copy of the erased values
    assert not re.search(r"张三丰|13812345678|zhangsan", json.dumps(erased[0].changes, ensure_ascii=False)
                         + (erased[0].detail or ""))
    again = admin_client.post(url, data={"confirm_name": f"已匿名化联系人#{pk}", "understood": "1",
                                         "csrf_token": token})
    assert again.status_code == 400 and "已经匿名化" in again.text
