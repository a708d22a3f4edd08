"""The contact picker of the care forms (care plan, care record) offers only the contacts of the customer
chosen in the same form, within the user's scope; with no customer chosen it offers nothing (the page
asks to choose the customer first), and the save still checks whatever contact id is posted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.care.models import CarePlan, CustomerCare
from tests.care import factories as f
from tests.conftest import csrf_token

FORMS = {"care-plan": CarePlan, "customer-care": CustomerCare}


@pytest.fixture
def people(make_user: Any) -> dict[str, Any]:
    """Two customers of one manager with a contact each (both named 王…), and another manager's."""
    a, b = make_user("pick_a"), make_user("pick_b")
    one, two, theirs = f.customer(a.id, "一号公司"), f.customer(a.id, "二号公司"), f.customer(b.id, "别人的公司")
    return {
        "one": one, "two": two, "theirs": theirs,
        "one_contact": f.linkman(one.id, name="王一"), "two_contact": f.linkman(two.id, name="王二"),
        "their_contact": f.linkman(theirs.id, name="王三"),
    }


def _lookup(client: Any, identity: str, **params: Any) -> list[str]:
    r = client.get(f"/admin/{identity}/ajax/lookup", params={"name": "linkman", "term": "王", **params})
    assert r.status_code == 200, r.text[:300]
    return sorted(item["text"] for item in r.json()["results"])


@pytest.mark.parametrize("identity", sorted(FORMS))
def test_the_contact_look_up_follows_the_chosen_customer(people: dict[str, Any], login_as: Any,
                                                          identity: str) -> None:
    c = login_as("pick_a")
    assert _lookup(c, identity, customer=people["one"].id) == ["王一"]
    assert _lookup(c, identity, customer=people["two"].id) == ["王二"]
    assert _lookup(c, identity) == []  # no customer chosen yet: nothing offered
    assert _lookup(c, identity, customer="abc") == []
    assert _lookup(c, identity, customer=people["theirs"].id) == []  # another manager's customer
    # the form tells the page's script which field the contact picker follows
    form = c.get(f"/admin/{identity}/create").text
    assert 'data-narrow-by="customer"' in form
    assert '"choose_customer_first"' in form


def _post(client: Any, identity: str, customer: Any, linkman: Any) -> Any:
    data = {"customer": str(customer.id), "linkman": str(linkman.id), "care_type": "visit",
            "csrf_token": csrf_token(client)}
    if identity == "care-plan":
        data |= {"interval_days": "30", "next_date": "2030-01-01", "is_active": "y"}
    else:
        data |= {"detail": "问候"}
    return client.post(f"/admin/{identity}/create", data=data, follow_redirects=False)


def _rows(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.mark.parametrize("identity", sorted(FORMS))
def test_the_save_still_refuses_another_customers_contact(people: dict[str, Any], login_as: Any,
                                                          identity: str) -> None:
    model = FORMS[identity]
    c = login_as("pick_a")
    before = _rows(model)
    r = _post(c, identity, people["one"], people["two_contact"])  # both the user's, but not together
    assert r.status_code == 400 and "所选联系人不属于该客户" in r.text
    r = _post(c, identity, people["one"], people["their_contact"])  # outside the scope
    assert r.status_code == 400 and "数据范围" in r.text
    assert _rows(model) == before
    r = _post(c, identity, people["one"], people["one_contact"])  # the control
    assert r.status_code == 302, r.text[:500]
    assert _rows(model) == before + 1
