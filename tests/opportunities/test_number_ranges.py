"""Numbers typed into the custom pages (the 360° page's quick add) must fit their columns
(issue 11, hole 8): a clear Chinese message, nothing written, no SQL — on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.opportunities.models import SalesOpportunity
from tests.customers.conftest import form_token


def _count() -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(SalesOpportunity)).scalar_one())


@pytest.mark.parametrize(("fields", "message"), [
    ({"amount": "1000000000000000"}, "预计成交金额超出允许范围(0 ~ 999,999,999,999.99,最多 2 位小数)"),
    ({"amount": "12.345"}, "预计成交金额最多只能有 2 位小数"),
    ({"amount": "1e400"}, "预计成交金额超出允许范围"),
    ({"amount": "NaN"}, "预计成交金额必须是数字"),
    ({"probability": "99999999999999999999"}, "成交概率必须在 0–100 之间"),
    ({"title": "标" * 129}, "不能超过 128 个字符"),
    ({"next_step": "步" * 256}, "不能超过 255 个字符"),
])
def test_the_360_quick_add_refuses_what_does_not_fit(make_user: Any, login_as: Any, make_customer: Any,
                                                      fields: dict[str, str], message: str) -> None:
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    c = login_as("wang")
    token = form_token(c.get(f"/admin/customer/360/{customer.id}").text)
    data = {"csrf_token": token, "title": "新商机", "stage": "initial", "amount": "100", **fields}
    r = c.post(f"/admin/customer/360/{customer.id}/opportunity", data=data, follow_redirects=False)
    assert r.status_code == 303
    shown = parse_qs(urlparse(r.headers["location"]).query).get("error", [""])[0]
    assert message in shown, shown
    page = c.get(r.headers["location"]).text
    assert message in page and "SQL" not in page and "Traceback" not in page
    assert _count() == 0

