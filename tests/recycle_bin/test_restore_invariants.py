"""What a restore must not break: a customer has one primary contact at most. A primary contact deleted
and put back after another contact became primary comes back as an ordinary contact (the one chosen
since stays primary), with the restore's audit row saying so."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from tests.company import World
from tests.conftest import csrf_token
from tests.customers.conftest import make_customer  # noqa: F401
from tests.recycle_bin.test_recycle_bin import delete_customer_360, entries, post_bin


def _primaries(customer_id: int) -> list[str]:
    with db.session_factory()() as s:
        return list(s.execute(select(Linkman.name).where(Linkman.customer_id == customer_id,
                                                         Linkman.is_primary.is_(True))).scalars())


def test_a_restored_primary_contact_does_not_make_a_second_primary(world: World, admin_client: Any) -> None:
    cid = world.row("mgr_b", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        first = Linkman(customer_id=cid, name="原主要联系人", mobile="13900000001", is_primary=True)
        second = Linkman(customer_id=cid, name="新主要联系人", mobile="13900000002", is_primary=False)
        s.add_all([first, second])
        s.flush()
        first_id, second_id = first.id, second.id
    assert _primaries(cid) == ["原主要联系人"]
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    assert admin_client.delete(f"/admin/linkman/delete?pks={first_id}", headers=token).status_code == 200
    with acting_as(SYSTEM), db.transaction() as s:
        chosen = s.get(Linkman, second_id)
        assert chosen is not None
        chosen.is_primary = True
    r = post_bin(admin_client, "restore", [e.id for e in entries()])
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]
    assert _primaries(cid) == ["新主要联系人"]
    with db.session_factory()() as s:
        restored = s.get(Linkman, first_id)
        assert restored is not None and restored.is_primary is False


def test_a_contact_is_not_restored_onto_a_new_customer_that_took_its_customers_id(
        world: World, admin_client: Any, make_customer: Any) -> None:  # noqa: F811
    """On SQLite a deleted row's id is given to the next new row (the newest customer deleted, then a new
    one created): a contact kept from the deleted customer must not go back onto the new one."""
    gone = make_customer("将被删除的客户", manager="mgr_c")  # the newest customer
    with acting_as(SYSTEM), db.transaction() as s:
        contact = Linkman(customer_id=gone.id, name="旧客户的联系人", mobile="13900000003")
        s.add(contact)
        s.flush()
        contact_id = contact.id
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    assert admin_client.delete(f"/admin/linkman/delete?pks={contact_id}", headers=token).status_code == 200
    assert delete_customer_360(admin_client, gone.id, "将被删除的客户").status_code == 303
    newcomer = make_customer("新来的客户", manager="mgr_a")
    contact_entry = next(e for e in entries() if e.resource == "linkman")
    r = post_bin(admin_client, "restore", [contact_entry.id])
    assert r.status_code == 303 and "error" in r.headers["location"], r.headers["location"]
    with db.session_factory()() as s:
        assert s.get(Linkman, contact_id) is None
        assert not list(s.execute(select(Linkman.id).where(Linkman.customer_id == newcomer.id)).scalars())
