"""The follow-up form's contact picker offers only the contacts of the customer chosen in the form
(within scope); the save still checks the posted contact."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from crm_admin.followups.models import FollowUp
from tests.care import factories as f
from tests.conftest import csrf_token


def _lookup(client: Any, **params: Any) -> list[str]:
    r = client.get("/admin/follow-up/ajax/lookup", params={"name": "linkman", "term": "李", **params})
    assert r.status_code == 200, r.text[:300]
    return sorted(item["text"] for item in r.json()["results"])


def test_follow_up_contact_picker_follows_the_chosen_customer(make_user: Any, login_as: Any) -> None:
    a, b = make_user("fu_a"), make_user("fu_b")
    one, two, theirs = f.customer(a.id), f.customer(a.id), f.customer(b.id)
    one_contact = f.linkman(one.id, name="李一")
    two_contact = f.linkman(two.id, name="李二")
    f.linkman(theirs.id, name="李三")
    c = login_as("fu_a")
    assert _lookup(c, customer=one.id) == ["李一"]
    assert _lookup(c) == []
    assert _lookup(c, customer=theirs.id) == []
    assert 'data-narrow-by="customer"' in c.get("/admin/follow-up/create").text

    def save(contact: Any) -> Any:
        return c.post("/admin/follow-up/create", data={
            "customer": str(one.id), "linkman": str(contact.id), "method": "phone", "content": "电话沟通",
            "contacted_at": (dt.date.today() - dt.timedelta(days=1)).isoformat() + "T10:00",
            "csrf_token": csrf_token(c)}, follow_redirects=False)

    r = save(two_contact)  # the user's own contact, but of the other customer
    assert r.status_code == 400 and "所选联系人不属于该客户" in r.text
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(FollowUp)).scalar_one() == 0
    assert save(one_contact).status_code == 302  # the control
