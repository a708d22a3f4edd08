"""Contacts: validation, one primary per customer, birthday_md, scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import create_linkman
from crm_admin.core.errors import NotFound, UserError
from tests.customers.conftest import form_token


def test_create_validates_and_keeps_one_primary(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    p = principal("wang")
    with db.transaction() as s:
        a = create_linkman(s, p, customer_id=cust.id, name="张三", mobile="139 1234 5678", is_primary=True,
                           birthday=dt.date(1990, 2, 28))
    assert a.mobile == "13912345678" and a.birthday_md == 228
    with db.transaction() as s:
        create_linkman(s, p, customer_id=cust.id, name="李四", is_primary=True, email="li@example.com")
    with db.session_factory()() as s:
        primaries = s.execute(select(Linkman.name).where(Linkman.is_primary.is_(True))).scalars().all()
    assert primaries == ["李四"]


@pytest.mark.parametrize("fields, message", [
    ({"mobile": "12345678901"}, "手机号格式不正确"),
    ({"mobile": "1391234567"}, "手机号格式不正确"),
    ({"email": "not-an-email"}, "邮箱格式不正确"),
    ({"phone": "abc"}, "电话格式不正确"),
    ({"name": "  "}, "姓名不能为空"),
    ({"gender": "x"}, "性别"),
])
def test_bad_inputs_are_refused(make_user: Any, make_customer: Any, principal: Any, fields: dict[str, Any],
                                message: str) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    data = {"name": "王五", **fields}
    with pytest.raises(UserError) as err, db.transaction() as s:
        create_linkman(s, principal("wang"), customer_id=cust.id, **data)
    assert message in err.value.message
    with db.session_factory()() as s:
        assert s.execute(select(Linkman)).first() is None


def test_other_managers_customer_is_not_found(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    make_user("li")
    cust = make_customer("李的客户", manager="li")
    with pytest.raises(NotFound), db.transaction() as s:
        create_linkman(s, principal("wang"), customer_id=cust.id, name="张三")


def test_http_form_keeps_one_primary_and_refuses_foreign_customer(make_user: Any, make_customer: Any,
                                                                  login_as: Any) -> None:
    make_user("wang")
    make_user("li")
    mine = make_customer("甲", manager="wang")
    theirs = make_customer("乙", manager="li")
    c = login_as("wang")
    token = form_token(c.get("/admin/linkman/create").text)
    for name in ("一号", "二号"):
        r = c.post("/admin/linkman/create", data={"customer": str(mine.id), "name": name, "is_primary": "y",
                                                  "mobile": "13800000000", "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 302, r.text[:800]
    r = c.post("/admin/linkman/create", data={"customer": str(theirs.id), "name": "越权", "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 400
    with db.session_factory()() as s:
        rows = s.execute(select(Linkman.name, Linkman.is_primary).order_by(Linkman.id)).all()
    assert [tuple(r) for r in rows] == [("一号", False), ("二号", True)]


def test_upcoming_birthdays_and_sorting_by_birthday(make_user: Any, make_customer: Any, principal: Any,
                                                    login_as: Any) -> None:
    """The contact list answers "whose birthday is coming": next 7 / 30 days, soonest first, only in scope."""
    from crm_admin.core.formatting import local_today

    make_user("wang")
    make_user("li")
    mine, theirs = make_customer("甲", manager="wang"), make_customer("乙", manager="li")
    today = local_today()

    def born(days_from_now: int) -> dt.date:
        day = today + dt.timedelta(days=days_from_now)
        return dt.date(1988, day.month, min(day.day, 28) if day.month == 2 else day.day)

    with db.transaction() as s:
        for name, days in (("二十天后", 20), ("三天后", 3), ("一百天后", 100), ("今天", 0)):
            create_linkman(s, principal("wang"), customer_id=mine.id, name=name, birthday=born(days))
        create_linkman(s, principal("wang"), customer_id=mine.id, name="没有生日")
        create_linkman(s, principal("li"), customer_id=theirs.id, name="别人的三天后", birthday=born(3))

    c = login_as("wang")

    def names(**params: str) -> list[str]:
        page = c.get("/admin/linkman/list", params=params)
        assert page.status_code == 200
        body = page.text.split("<tbody", 1)[-1]
        found = [n for n in ("今天", "三天后", "二十天后", "一百天后", "没有生日", "别人的三天后") if n in body]
        return sorted(found, key=body.index)

    assert names(birthday_within="7") == ["今天", "三天后"]
    assert names(birthday_within="30") == ["今天", "三天后", "二十天后"]
    in_date_order = names(sortBy="birthday", sort="asc")
    assert in_date_order[-1] == "没有生日" and "别人的三天后" not in in_date_order
    assert "生日" in c.get("/admin/linkman/list").text and "未来 7 天内过生日" in c.get("/admin/linkman/list").text
