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
from tests.recycle_bin.test_recycle_bin import entries, post_bin


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
