"""A value shown masked cannot be confirmed by searching for it either.

A viewer who holds 查看敏感信息 may still see some customers masked by a rule: the customers of a public
pool that hides contacts (until claimed), the team's customers when the permission's own scope is
narrower than the list's. Typing the hidden digits of such a phone number into any search box — the pool
page, a list's search, a picker — must not find the record: otherwise eight searches spell the number.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from crm_admin import db
from crm_admin.accounts.models import CasbinRule, SysDept
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.permissions import bump_policy_version
from tests.customers.conftest import make_customer  # noqa: F401
from tests.pools import factories as pf


def _text(response: Any) -> str:
    """The page without the marks a search puts around what it matched."""
    return re.sub(r"</?mark[^>]*>", "", response.text)


PHONE = "021-79862502"  # shown as 021-****2502
MOBILE = "15086271170"  # shown as 150****1170


@pytest.fixture
def pooled() -> dict[str, Any]:
    """A customer in a pool that hides contacts, with a contact, and one in a pool that does not."""
    hidden = pf.pool("隐藏公海", mask_contacts=True)
    shown = pf.pool("公开公海", mask_contacts=False)
    secret = pf.pooled(hidden.id, "九州新能源有限公司", phone=PHONE)
    open_ = pf.pooled(shown.id, "东升电子有限公司", phone="010-77679129")
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(Linkman(customer_id=secret.id, name="赵佳怡", mobile=MOBILE))
    return {"hidden": hidden, "shown": shown, "secret": secret, "open": open_}


def test_pool_page_does_not_find_a_masked_customer_by_its_hidden_digits(pooled: dict[str, Any], make_user: Any,
                                                                      login_as: Any) -> None:
    make_user("mgr_a")
    a = login_as("mgr_a")
    hidden, secret = pooled["hidden"], pooled["secret"]
    page = a.get(f"/admin/pools/{hidden.id}")
    assert page.status_code == 200 and "九州新能源" in _text(page) and "021-****2502" in _text(page)
    for digits in ("7986", "98625", "79862502", "02179862502", "021-79862502"):
        found = a.get(f"/admin/pools/{hidden.id}", params={"q": digits})
        assert found.status_code == 200
        assert "九州新能源" not in _text(found), digits
    # what is shown still finds it: its name, its code
    assert "九州新能源" in _text(a.get(f"/admin/pools/{hidden.id}", params={"q": "九州"}))
    assert "九州新能源" in _text(a.get(f"/admin/pools/{hidden.id}", params={"q": secret.code[-4:]}))
    # a pool that shows contacts is searched by phone as before
    shown = pooled["shown"]
    assert "东升电子" in _text(a.get(f"/admin/pools/{shown.id}", params={"q": "7767"}))


def test_lists_and_pickers_do_not_find_a_masked_row_by_its_hidden_digits(pooled: dict[str, Any],
                                                                        admin_client: Any) -> None:
    # the administrator sees pooled customers masked too (and may reveal them one by one, audited)
    for url, digits, name in (("/admin/customer/list", "7986", "九州新能源"),
                              ("/admin/linkman/list", "8627", "赵佳怡")):
        listing = admin_client.get(url, params={"search": digits})
        assert listing.status_code == 200
        assert name not in _text(listing), url
    assert "九州新能源" in _text(admin_client.get("/admin/customer/list", params={"search": "九州"}))
    assert "东升电子" in _text(admin_client.get("/admin/customer/list", params={"search": "7767"}))
    # a picker (the customer look-up of a form) answers the same
    picked = admin_client.get("/admin/follow-up/ajax/lookup", params={"name": "customer", "term": "7986"})
    assert picked.status_code == 200 and "九州" not in _text(picked)


def test_a_lead_does_not_find_the_teams_masked_customers_by_phone(
        make_user: Any, make_customer: Any, login_as: Any) -> None:  # noqa: F811
    """The permission's own scope narrower than the list's: the team's customers are shown masked to the
    lead, so their phone digits find nothing; the lead's own customers are found by phone."""
    with acting_as(SYSTEM), db.transaction() as s:
        dept = SysDept(name="一部")
        s.add(dept)
        s.flush()
        dept_id = dept.id
        s.execute(CasbinRule.__table__.update()
                  .where(CasbinRule.v0 == "role:sales_lead", CasbinRule.v1 == "sensitive_data").values(v3="self"))
        bump_policy_version(s.connection())
    make_user("lead", roles=("sales_lead",), dept_id=dept_id)
    make_user("wang", dept_id=dept_id)
    make_customer("主管的客户", manager="lead", phone="13911112222")
    make_customer("组员的客户", manager="wang", phone="13933334444")
    lead = login_as("lead")
    listing = lead.get("/admin/customer/list")
    assert "组员的客户" in _text(listing)
    assert "组员的客户" not in _text(lead.get("/admin/customer/list", params={"search": "3333"}))
    assert "主管的客户" in _text(lead.get("/admin/customer/list", params={"search": "1111"}))
