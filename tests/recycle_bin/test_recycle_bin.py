"""The recycle bin (回收站): a deleted customer (with everything hanging off it), contact, opportunity or
order is kept, disappears from every list, search and export, and comes back exactly as it was (ids,
Decimal amounts, timestamps, search index) — or is purged, by hand or by the daily job. Scope, audit and
refusals (nothing changed) on every path."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update

from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.audit.models import AuditLog
from crm_admin.care.models import CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.opportunities.service import move_stage
from crm_admin.orders.models import OrderItem
from crm_admin.recycle_bin.models import RecycleEntry
from crm_admin.scheduler import service as scheduler
from tests.company import World
from tests.conftest import csrf_token
from tests.customers.conftest import form_token, principal_for

BIN = "/admin/recycle-bin"
# bookkeeping that a request may write whatever it does
SKIPPED = {"audit_log", "audit_daily", "audit_daily_user", "audit_daily_user_total", "recycle_bin", "sys_meta",
           "sys_session", "job_run", "job_lease", "login_guard", "login_throttle", "sys_user"}


def every_row() -> dict[str, list[dict[str, Any]]]:
    """Every business table's rows, exactly as stored (ids, Decimals, times), in id order."""
    import crm_admin.models  # noqa: F401
    from crm_admin.db import Base

    out = {}
    with db.session_factory()() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in SKIPPED:
                continue
            order = [c for c in table.primary_key.columns]
            out[table.name] = [dict(r) for r in s.execute(select(table).order_by(*order)).mappings()]
    return out


def entries() -> list[RecycleEntry]:
    with db.session_factory()() as s:
        return list(s.execute(select(RecycleEntry).order_by(RecycleEntry.id)).scalars())


def audit_rows(action: str) -> list[AuditLog]:
    with db.session_factory()() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars())


def delete_customer_360(client: Any, cid: int, name: str) -> Any:
    page = client.get(f"/admin/customer/360/{cid}")
    return client.post(f"/admin/customer/360/{cid}/delete", data={
        "csrf_token": form_token(page.text), "confirm_name": name, "cascade": "1"}, follow_redirects=False)


def post_bin(client: Any, action: str, ids: list[int], *, confirmed: bool = True, **extra: Any) -> Any:
    data: dict[str, Any] = {"csrf_token": csrf_token(client), "ids": [str(i) for i in ids], **extra}
    if confirmed:
        data["confirmed"] = "1"
    return client.post(f"{BIN}/{action}", data=data, follow_redirects=False)


def richer_world(world: World) -> None:
    """Exact values worth checking: odd amounts, stage history (cascading rows), a plan's task, a
    follow-up on the opportunity — every dependency the restore must put back in order."""
    with db.transaction() as s:
        move_stage(s, principal_for("admin"), opportunity_id=world.row("mgr_a", "opportunity"), stage="proposal")
        s.get(CustomerCare, world.row("mgr_a", "customer_care")).plan_id = world.row("mgr_a", "care_plan")
        s.get(FollowUp, world.row("mgr_a", "follow_up")).opportunity_id = world.row("mgr_a", "opportunity")
        s.get(SalesOpportunity, world.row("mgr_a", "opportunity")).amount = Decimal("12345678.91")
        s.get(OrderItem, world.row("mgr_a", "order_item")).unit_price = Decimal("0.07")
        customer = s.get(Customer, world.row("mgr_a", "customer"))
        customer.credit_code = "91350100M000100Y43"
        customer.last_contact_at = dt.datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=dt.UTC)
        for n in range(30):
            s.add(FollowUp(customer_id=customer.id, manager_id=world.users["mgr_a"], method="phone",
                           content=f"第 {n} 次联系", contacted_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                           + dt.timedelta(minutes=n, microseconds=n)))


def test_a_deleted_customer_leaves_every_page_and_comes_back_exactly_as_it_was(
        world: World, admin_client: Any) -> None:
    richer_world(world)
    cid = world.row("mgr_a", "customer")
    name = "客户mgr_a有限公司"
    assert name in admin_client.get("/admin/customer/list").text
    found = f"/customer/360/{cid}\""  # the search marks the part found inside the name: look for its link
    assert found in admin_client.get("/admin/customer/list", params={"search": "mgr_a"}).text
    before = every_row()

    r = delete_customer_360(admin_client, cid, name)
    assert r.status_code == 303, r.text[:300]
    [entry] = entries()
    assert (entry.resource, entry.record_id, entry.customer_id) == ("customer", cid, cid)
    assert entry.manager_id == world.users["mgr_a"] and entry.deleted_by_name == "admin"
    assert entry.expires_at - entry.deleted_at == dt.timedelta(days=30)
    assert "1 个联系人" in entry.summary and "31 条联系记录" in entry.summary
    # nowhere to be seen: lists, search, the 360° page, export, counts
    assert name not in admin_client.get("/admin/customer/list").text
    assert found not in admin_client.get("/admin/customer/list", params={"search": "mgr_a"}).text
    assert "联系人mgr_a" not in admin_client.get("/admin/linkman/list").text
    assert admin_client.get(f"/admin/customer/360/{cid}").status_code == 404
    assert name not in admin_client.get("/admin/customer/export/csv").text
    assert "SO-mgr_a" not in admin_client.get("/admin/customer-order/export/csv").text
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(FollowUp).where(FollowUp.customer_id == cid)).scalar() == 0
        assert s.execute(select(func.count()).select_from(Customer)).scalar() == 2
    # the bin shows it
    page = admin_client.get(BIN)
    assert page.status_code == 200 and name in page.text and "admin" in page.text
    assert name not in admin_client.get(BIN, params={"resource": "order"}).text

    # restore: a confirmation page first, then the restore itself
    confirm = post_bin(admin_client, "restore", [entry.id], confirmed=False)
    assert confirm.status_code == 200 and name in confirm.text and 'name="confirmed" value="1"' in confirm.text
    assert entries() and every_row() != before
    r = post_bin(admin_client, "restore", [entry.id])
    assert r.status_code == 303 and "message" in r.headers["location"], r.headers["location"]
    assert entries() == []
    after = every_row()
    for table, rows in before.items():
        assert after[table] == rows, table  # ids, Decimals, microseconds, search index rows included
    assert found in admin_client.get("/admin/customer/list", params={"search": "mgr_a"}).text
    assert admin_client.get(f"/admin/customer/360/{cid}").status_code == 200
    [restored] = audit_rows("restore")
    assert (restored.resource, restored.resource_id, restored.username) == ("customer", str(cid), "admin")
    assert restored.changes["rows"]["follow_up"] == 31


def test_contacts_opportunities_and_orders_go_to_the_bin_and_back(world: World, admin_client: Any) -> None:
    cid = world.row("mgr_b", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        lone = Linkman(customer_id=cid, name="单独联系人", mobile="13900000000")
        s.add(lone)
        s.flush()
        lone_id = lone.id
    before = every_row()
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    for identity, pk in (("linkman", lone_id), ("sales-opportunity", world.row("mgr_b", "opportunity")),
                         ("customer-order", world.row("mgr_b", "order"))):
        r = admin_client.delete(f"/admin/{identity}/delete?pks={pk}", headers=token)
        assert r.status_code == 200, (identity, r.text[:300])
    kept = entries()
    assert [(e.resource, e.customer_id, e.manager_id) for e in kept] == [
        ("linkman", cid, world.users["mgr_b"]), ("opportunity", cid, world.users["mgr_b"]),
        ("order", cid, world.users["mgr_b"])]
    assert "单独联系人" not in admin_client.get("/admin/linkman/list").text
    assert "SO-mgr_b" not in admin_client.get("/admin/customer-order/list").text
    # the order went with its lines
    order_entry = kept[2]
    assert {t["table"] for t in order_entry.payload["tables"]} == {"customer_order", "order_item"}
    # batch restore, all three at once
    r = post_bin(admin_client, "restore", [e.id for e in kept])
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]
    assert every_row() == before
    assert len(audit_rows("restore")) == 3


def test_a_manager_sees_and_restores_only_their_own_entries(world: World, login_as: Any) -> None:
    a, c = login_as("mgr_a"), login_as("mgr_c")
    with acting_as(SYSTEM), db.transaction() as s:
        lone = Linkman(customer_id=world.row("mgr_a", "customer"), name="甲的联系人")
        s.add(lone)
        s.flush()
        lone_id = lone.id
    r = a.delete(f"/admin/linkman/delete?pks={lone_id}", headers={"X-CSRF-Token": csrf_token(a)})
    assert r.status_code == 200, r.text[:300]
    [entry] = entries()
    assert entry.deleted_by_name == "mgr_a"
    # another manager: not listed, and posting the id changes nothing
    assert "甲的联系人" in a.get(BIN).text
    assert "甲的联系人" not in c.get(BIN).text
    before = every_row()
    for confirmed in (False, True):
        r = post_bin(c, "restore", [entry.id], confirmed=confirmed)
        assert r.status_code == 303 and "error" in r.headers["location"], r.headers["location"]
    assert "甲的联系人" not in c.get(r.headers["location"]).text
    assert every_row() == before and len(entries()) == 1
    # nobody but an administrator purges by default
    assert post_bin(a, "purge", [entry.id]).status_code == 403
    assert post_bin(c, "purge", [entry.id]).status_code == 403
    # the team's lead sees it; the read-only user has no bin at all
    assert "甲的联系人" in login_as("lead").get(BIN).text
    ro = login_as("ro")
    assert ro.get(BIN).status_code == 403
    assert post_bin(ro, "restore", [entry.id]).status_code == 403
    # a batch naming one's own entry and another's: refused as a whole
    with acting_as(SYSTEM), db.transaction() as s:
        other = Linkman(customer_id=world.row("mgr_c", "customer"), name="丙的联系人")
        s.add(other)
        s.flush()
        other_id = other.id
    assert c.delete(f"/admin/linkman/delete?pks={other_id}", headers={"X-CSRF-Token": csrf_token(c)}).status_code == 200
    ids = [e.id for e in entries()]
    before = every_row()
    r = post_bin(a, "restore", ids)
    assert "error" in r.headers["location"] and every_row() == before and len(entries()) == 2
    # the owner restores their own
    r = post_bin(a, "restore", [entry.id])
    assert r.status_code == 303 and "message" in r.headers["location"], r.headers["location"]
    with db.session_factory()() as s:
        assert s.get(Linkman, lone_id) is not None


def test_restore_refuses_what_cannot_go_back_and_changes_nothing(world: World, admin_client: Any) -> None:
    cid = world.row("mgr_a", "customer")
    assert delete_customer_360(admin_client, cid, "客户mgr_a有限公司").status_code == 303
    [entry] = entries()
    # the customer code was given to a new customer meanwhile
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(Customer(code="C-mgr_a", name="新客户"))
    before = every_row()
    r = post_bin(admin_client, "restore", [entry.id])
    assert r.status_code == 303 and "error" in r.headers["location"]
    shown = admin_client.get(r.headers["location"]).text
    assert "C-mgr_a" in shown and "已被其他记录使用" in shown, re.findall(r'alert-danger[^>]*>([^<]*)', shown)
    assert every_row() == before and len(entries()) == 1 and audit_rows("restore") == []
    # the code is free again, but the manager has been disabled
    with db.transaction() as s:
        s.execute(update(Customer).where(Customer.code == "C-mgr_a").values(code="C-other"))
        s.execute(update(SysUser).where(SysUser.id == world.users["mgr_a"]).values(is_active=False))
    r = post_bin(admin_client, "restore", [entry.id])
    assert "已停用" in admin_client.get(r.headers["location"]).text
    assert len(entries()) == 1
    with db.transaction() as s:
        s.execute(update(SysUser).where(SysUser.id == world.users["mgr_a"]).values(is_active=True))
    assert "message" in post_bin(admin_client, "restore", [entry.id]).headers["location"]


def test_a_record_whose_customer_is_gone_is_not_restored(world: World, admin_client: Any) -> None:
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    order_id = world.row("mgr_a", "order")
    assert admin_client.delete(f"/admin/customer-order/delete?pks={order_id}", headers=token).status_code == 200
    assert delete_customer_360(admin_client, world.row("mgr_a", "customer"), "客户mgr_a有限公司").status_code == 303
    order_entry, customer_entry = entries()
    assert post_bin(admin_client, "purge", [customer_entry.id]).status_code == 303
    before = every_row()
    r = post_bin(admin_client, "restore", [order_entry.id])
    assert "所属客户已不存在" in admin_client.get(r.headers["location"]).text
    assert every_row() == before and [e.id for e in entries()] == [order_entry.id]
    [purged] = audit_rows("purge")
    assert (purged.resource, purged.resource_id) == ("customer", str(world.row("mgr_a", "customer")))


def test_restoring_a_customer_and_its_contact_together_puts_the_customer_back_first(
        world: World, admin_client: Any) -> None:
    cid = world.row("mgr_c", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        lone = Linkman(customer_id=cid, name="先删的联系人")
        s.add(lone)
        s.flush()
        lone_id = lone.id
    before = every_row()
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    assert admin_client.delete(f"/admin/linkman/delete?pks={lone_id}", headers=token).status_code == 200
    assert delete_customer_360(admin_client, cid, "客户mgr_c有限公司").status_code == 303
    r = post_bin(admin_client, "restore", [e.id for e in entries()])
    assert "message" in r.headers["location"], admin_client.get(r.headers["location"]).text[-2000:]
    assert every_row() == before


def test_a_contact_restored_after_its_customer_changed_hands_carries_the_new_manager(
        world: World, admin_client: Any) -> None:
    cid = world.row("mgr_a", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        lone = Linkman(customer_id=cid, name="转手前的联系人")
        s.add(lone)
        s.flush()
        lone_id = lone.id
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    assert admin_client.delete(f"/admin/linkman/delete?pks={lone_id}", headers=token).status_code == 200
    with db.transaction() as s:
        s.get(Customer, cid).manager_id = world.users["mgr_b"]
    [entry] = entries()
    assert "message" in post_bin(admin_client, "restore", [entry.id]).headers["location"]
    with db.session_factory()() as s:
        assert s.get(Linkman, lone_id).customer_manager_id == world.users["mgr_b"]


def test_the_daily_job_purges_expired_entries_once(world: World, admin_client: Any) -> None:
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    pks = ",".join(str(world.row(owner, "order")) for owner in ("mgr_a", "mgr_b"))  # the list's bulk delete
    assert admin_client.delete(f"/admin/customer-order/delete?pks={pks}", headers=token).status_code == 200
    old, fresh = entries()
    assert {old.label, fresh.label} == {"SO-mgr_a", "SO-mgr_b"}
    with db.transaction() as s:
        s.execute(update(RecycleEntry).where(RecycleEntry.id == old.id)
                  .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    result = scheduler.run_job("recycle_purge", trigger="manual")
    assert (result.status, result.created) == ("success", 1), result
    assert [e.id for e in entries()] == [fresh.id]
    [purged] = audit_rows("purge")
    assert purged.resource == "order" and purged.changes["expired"] is True
    again = scheduler.run_job("recycle_purge", trigger="manual")
    assert (again.status, again.created) == ("success", 0)
    # the scheduler page runs it too (catch-up and the daily trigger go through the same run)
    assert "recycle_purge" in scheduler.jobs()


def test_the_bin_page_is_in_the_menu_and_purge_asks_first(world: World, admin_client: Any,
                                                            login_as: Any) -> None:
    token = {"X-CSRF-Token": csrf_token(admin_client)}
    assert admin_client.delete(f"/admin/customer-order/delete?pks={world.row('mgr_a', 'order')}",
                               headers=token).status_code == 200
    [entry] = entries()
    home = admin_client.get(BIN)
    assert f'href="http://testserver{BIN}"' in home.text or f'href="{BIN}"' in home.text
    confirm = post_bin(admin_client, "purge", [], confirmed=False, one=str(entry.id))
    assert confirm.status_code == 200 and "SO-mgr_a" in confirm.text and "无法恢复" in confirm.text
    assert len(entries()) == 1
    r = post_bin(admin_client, "purge", [entry.id])
    assert r.status_code == 303 and entries() == []
    # nothing chosen, or nonsense ids: a message, nothing done
    r = post_bin(admin_client, "restore", [])
    assert "error" in r.headers["location"]
    r = admin_client.post(f"{BIN}/restore", data={"csrf_token": csrf_token(admin_client), "ids": ["x"],
                                                   "confirmed": "1"}, follow_redirects=False)
    assert "error" in r.headers["location"]
    # the managers' menu shows the bin, the read-only user's does not
    assert "回收站" in login_as("mgr_a").get("/admin/").text
    assert "回收站" not in login_as("ro").get("/admin/").text


def test_a_contact_is_not_restored_onto_a_customer_now_outside_the_restorers_scope(
        world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    with acting_as(SYSTEM), db.transaction() as s:
        lone = Linkman(customer_id=world.row("mgr_a", "customer"), name="转出前删除的联系人")
        s.add(lone)
        s.flush()
        lone_id = lone.id
    assert a.delete(f"/admin/linkman/delete?pks={lone_id}", headers={"X-CSRF-Token": csrf_token(a)}).status_code == 200
    with db.transaction() as s:  # the customer goes to another team meanwhile
        s.get(Customer, world.row("mgr_a", "customer")).manager_id = world.users["mgr_c"]
    [entry] = entries()
    before = every_row()
    r = post_bin(a, "restore", [entry.id])
    assert "不在您的数据范围内" in a.get(r.headers["location"]).text
    assert every_row() == before and len(entries()) == 1


def test_a_merge_does_not_put_the_merged_customer_in_the_bin(world: World, admin_client: Any) -> None:
    from tests.customers.conftest import merge_through_preview

    r = merge_through_preview(admin_client, world.row("mgr_a", "customer"), world.row("mgr_b", "customer"))
    assert r.status_code == 303, r.text[:300]
    assert entries() == []


def test_an_entry_deleted_by_no_user_says_system_in_chinese(world: World, admin_client: Any) -> None:
    """A deletion made by a job or the command line (no user) reads 系统, never the actor's code name."""
    from crm_admin.customers.service import delete_customer

    cid = world.row("mgr_b", "customer")
    with acting_as(SYSTEM), db.transaction() as s:
        found = s.get(Customer, cid)
        assert found is not None
        delete_customer(s, found, cascade=True)
    [entry] = entries()
    assert entry.deleted_by is None
    row = re.search(rf'<tr data-entry="{entry.id}">(.*?)</tr>', admin_client.get(BIN).text, re.S)
    assert row is not None and "系统" in row.group(1) and "system" not in row.group(1)
