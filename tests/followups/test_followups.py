"""Follow-ups: dictionary method, last contact moves in the same transaction, due list, scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.core.errors import UserError
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import log_follow_up
from tests.customers.conftest import form_token


def test_logging_updates_last_contact(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    when = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    with db.transaction() as s:
        f = log_follow_up(s, principal("wang"), customer_id=cust.id, method="phone", content="电话沟通需求",
                          contacted_at=when)
        assert f.manager_id is not None
    with db.session_factory()() as s:
        assert s.get(Customer, cust.id).last_contact_at == when
    # an older record does not move it back
    with db.transaction() as s:
        log_follow_up(s, principal("wang"), customer_id=cust.id, method="visit", content="补录",
                      contacted_at=when - dt.timedelta(days=3))
    with db.session_factory()() as s:
        assert s.get(Customer, cust.id).last_contact_at == when


@pytest.mark.parametrize("fields, message", [
    ({"method": "pigeon"}, "不是有效的选项"),
    ({"content": ""}, "内容不能为空"),
    ({"contacted_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=2)}, "不能晚于现在"),
])
def test_bad_follow_ups(make_user: Any, make_customer: Any, principal: Any, fields: dict[str, Any],
                        message: str) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    data = {"method": "phone", "content": "x", **fields}
    with pytest.raises(UserError) as err, db.transaction() as s:
        log_follow_up(s, principal("wang"), customer_id=cust.id, **data)
    assert message in err.value.message
    with db.session_factory()() as s:
        assert s.execute(select(FollowUp)).first() is None
        assert s.get(Customer, cust.id).last_contact_at is None


def test_360_follow_up_and_due_list(make_user: Any, make_customer: Any, login_as: Any) -> None:
    make_user("wang")
    cust = make_customer("甲客户", manager="wang")
    c = login_as("wang")
    page = c.get(f"/admin/customer/360/{cust.id}")
    assert page.status_code == 200
    token = form_token(page.text)
    yesterday = (dt.datetime.now() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = c.post(f"/admin/customer/360/{cust.id}/follow-up",
               data={"csrf_token": token, "method": "wechat", "content": "微信确认报价", "next_follow_up_at": ""},
               follow_redirects=False)
    assert r.status_code == 303
    with db.transaction() as s:
        s.add(FollowUp(customer_id=cust.id, manager_id=s.execute(select(Customer.manager_id)).scalar(),
                       method="phone", content="旧记录",
                       contacted_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
                       next_follow_up_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    page = c.get(f"/admin/customer/360/{cust.id}").text
    assert "微信确认报价" in page and "联系记录已保存" not in page
    # the newer follow-up dealt with the overdue one
    assert "甲客户" not in c.get("/admin/follow-ups/due").text
    r = c.post(f"/admin/customer/360/{cust.id}/follow-up",
               data={"csrf_token": token, "method": "phone", "content": "约下次", "next_follow_up_at": yesterday,
                     "contacted_at": ""}, follow_redirects=False)
    assert r.status_code == 303
    assert "error=" in r.headers["location"]  # next follow-up before this contact: refused


def test_due_list_shows_overdue(make_user: Any, make_customer: Any, login_as: Any, principal: Any) -> None:
    make_user("wang")
    cust = make_customer("乙客户", manager="wang")
    with db.transaction() as s:
        log_follow_up(s, principal("wang"), customer_id=cust.id, method="phone", content="x",
                      contacted_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=5),
                      next_follow_up_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    html = login_as("wang").get("/admin/follow-ups/due").text
    assert "乙客户" in html and "已逾期" in html


def test_due_list_pages_and_dashboard_count_agree(make_user: Any, make_customer: Any, login_as: Any,
                                                  principal: Any) -> None:
    import re

    make_user("wang")
    now = dt.datetime.now(dt.UTC)
    customers = [make_customer(f"待跟进客户{i:02d}", manager="wang") for i in range(53)]
    with db.transaction() as s:
        for i, cust in enumerate(customers):
            log_follow_up(s, principal("wang"), customer_id=cust.id, method="phone", content=f"第{i}次",
                          contacted_at=now - dt.timedelta(days=5), next_follow_up_at=now - dt.timedelta(hours=i + 1))
        # a later contact with the last customer deals with its due follow-up
        log_follow_up(s, principal("wang"), customer_id=cust.id, method="visit", content="已上门",
                      contacted_at=now - dt.timedelta(minutes=5))
    c = login_as("wang")
    first = c.get("/admin/follow-ups/due")
    assert re.search(r'id="due-count">52<', first.text)
    assert first.text.count("/admin/customer/360/") == 50 and 'id="due-pager"' in first.text
    second = c.get("/admin/follow-ups/due?page=2").text
    assert second.count("/admin/customer/360/") == 2
    assert "待跟进客户52" not in first.text + second  # dealt with
    assert c.get("/admin/follow-ups/due?page=abc").status_code == 200
    dashboard = c.get("/admin/").text
    assert re.search(r'id="stat-follow-ups">.*?<div class="h1[^"]*">52</div>', dashboard, re.S)
