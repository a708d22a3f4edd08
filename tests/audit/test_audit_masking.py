"""The audit log shows personal values as the viewer sees them elsewhere: an audit row's before → after of a
phone, an e-mail or an address is masked for whoever sees that customer (or contact) masked — a pool
that hides its customers' contacts, a viewer without 查看敏感信息 — so the log is not a way around the
mask (or around the audited "show in full")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.accounts.models import CasbinRule
from crm_admin.audit.models import AuditLog
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import Actor, acting_as
from crm_admin.core.permissions import bump_policy_version
from crm_admin.customers.models import Customer
from tests.pools import factories as pf

ADDRESS, ADDRESS_MASKED = "上海市浦东新区张江路479号", "上海市浦东新****"
NEW_ADDRESS, NEW_ADDRESS_MASKED = "上海市黄浦区南京东路1号", "上海市黄浦区****"
MOBILE, MOBILE_MASKED = "15086271170", "150****1170"
NEW_MOBILE, NEW_MOBILE_MASKED = "13986025959", "139****5959"


def _changed(model: type, pk: int, **values: Any) -> int:
    """Change a row through the ORM (its field-level audit row is written) and return that row's id."""
    with acting_as(Actor(None, "tester")), db.transaction() as s:
        row = s.get(model, pk)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
    with db.session_factory()() as s:
        return int(s.execute(select(AuditLog.id).where(AuditLog.resource_id == str(pk), AuditLog.action == "update")
                             .order_by(AuditLog.id.desc())).scalars().first())


def _pooled_with_contact() -> tuple[Customer, int]:
    pool = pf.pool("隐藏公海", mask_contacts=True)
    customer = pf.pooled(pool.id, "九州新能源有限公司", address=ADDRESS)
    with acting_as(Actor(None, "tester")), db.transaction() as s:
        contact = Linkman(customer_id=customer.id, name="赵佳怡", mobile=MOBILE)
        s.add(contact)
        s.flush()
        return customer, int(contact.id)


def test_a_pooled_customers_changes_are_masked_in_the_log(admin_client: Any) -> None:
    customer, contact_id = _pooled_with_contact()
    customer_row = _changed(Customer, customer.id, address=NEW_ADDRESS)
    contact_row = _changed(Linkman, contact_id, mobile=NEW_MOBILE)
    page = admin_client.get(f"/admin/audit-log/details/{customer_row}")
    assert page.status_code == 200
    assert ADDRESS not in page.text and NEW_ADDRESS not in page.text
    assert ADDRESS_MASKED in page.text and NEW_ADDRESS_MASKED in page.text
    page = admin_client.get(f"/admin/audit-log/details/{contact_row}")
    assert page.status_code == 200
    assert MOBILE not in page.text and NEW_MOBILE not in page.text
    assert MOBILE_MASKED in page.text and NEW_MOBILE_MASKED in page.text


def test_a_viewer_without_the_permission_sees_every_change_masked(make_user: Any, login_as: Any,
                                                                  admin_client: Any) -> None:
    with acting_as(Actor(None, "tester")), db.transaction() as s:
        customer = Customer(code="C-1", name="甲公司", name_key="jia", address=ADDRESS)
        s.add(customer)
        s.flush()
        customer_id = int(customer.id)
        # an auditor: may read the log, may not see personal data
        s.add_all([CasbinRule(ptype="p", v0="role:readonly", v1="audit", v2="list"),
                   CasbinRule(ptype="p", v0="role:readonly", v1="audit", v2="view")])
        bump_policy_version(s.connection())
    make_user("auditor", roles=("readonly",))
    row = _changed(Customer, customer_id, address=NEW_ADDRESS)
    auditor = login_as("auditor")
    page = auditor.get(f"/admin/audit-log/details/{row}")
    assert page.status_code == 200
    assert ADDRESS not in page.text and NEW_ADDRESS not in page.text
    assert ADDRESS_MASKED in page.text and NEW_ADDRESS_MASKED in page.text
    # who sees the customer in full sees the change in full
    full = admin_client.get(f"/admin/audit-log/details/{row}")
    assert ADDRESS in full.text and NEW_ADDRESS in full.text
