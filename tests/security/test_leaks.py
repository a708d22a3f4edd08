"""The PITFALLS leak table: manager A probes manager B's customer by every path SQLAdmin offers.

Every probe must answer 404 (or 403 where A lacks the permission altogether) and change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from tests.conftest import csrf_token
from tests.security.conftest import World, snapshot

# kind → SQLAdmin identity (URL segment)
IDENTITY = {
    "customer": "customer", "linkman": "linkman", "follow_up": "follow-up",
    "opportunity": "sales-opportunity", "customer_care": "customer-care", "care_plan": "care-plan",
    "order": "customer-order", "order_item": "order-item", "churn_alert": "churn-alert",
    "transfer": "customer-transfer",
}


def _headers(client: Any) -> dict[str, str]:
    return {"X-CSRF-Token": csrf_token(client)}


def test_details_of_anothers_row_is_404(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    for kind, identity in IDENTITY.items():
        own = a.get(f"/admin/{identity}/details/{world.row('mgr_a', kind)}")
        assert own.status_code == 200, (kind, own.status_code)
        other = a.get(f"/admin/{identity}/details/{world.row('mgr_b', kind)}")
        assert other.status_code == 404, (kind, other.status_code)
        assert "mgr_b" not in other.text


def test_edit_get_of_anothers_row_is_404(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    for kind in ("customer", "linkman", "follow_up", "opportunity", "customer_care", "care_plan", "order"):
        r = a.get(f"/admin/{IDENTITY[kind]}/edit/{world.row('mgr_b', kind)}")
        assert r.status_code == 404, (kind, r.status_code)
        assert a.get(f"/admin/{IDENTITY[kind]}/edit/{world.row('mgr_a', kind)}").status_code == 200, kind


def test_edit_post_of_anothers_row_is_404_and_changes_nothing(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    token = csrf_token(a)
    before = snapshot()
    for kind in ("customer", "linkman", "follow_up", "opportunity", "customer_care", "care_plan", "order",
                 "churn_alert"):
        r = a.post(f"/admin/{IDENTITY[kind]}/edit/{world.row('mgr_b', kind)}",
                   data={"name": "改掉", "title": "改掉", "content": "改掉", "detail": "改掉", "status": "lost",
                         "csrf_token": token, "save": "Save"},
                   headers={"X-CSRF-Token": token}, follow_redirects=False)
        # 403 where the manager may not edit that kind at all, else 404 as if the row did not exist
        assert r.status_code == 404 or (kind == "churn_alert" and r.status_code == 403), (kind, r.status_code)
    assert snapshot() == before


def _only_mgr_a_customers(r: Any) -> None:
    """``r`` (a list page, an export) shows mgr_a's customer and neither of the other managers'."""
    assert r.status_code == 200
    assert "客户mgr_a有限公司" in r.text
    assert "客户mgr_b有限公司" not in r.text and "客户mgr_c有限公司" not in r.text


def test_list_count_and_search_show_only_own_rows(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    _only_mgr_a_customers(a.get("/admin/customer/list"))
    found = a.get("/admin/customer/list", params={"search": "mgr_b"})
    assert "客户mgr_b有限公司" not in found.text
    for kind in ("linkman", "follow_up", "opportunity", "customer_care", "order"):
        listing = a.get(f"/admin/{IDENTITY[kind]}/list")
        assert listing.status_code == 200
        assert "mgr_b" not in listing.text.replace("mgr_a", ""), kind


def test_count_is_scoped(world: World, login_as: Any, app: Any) -> None:
    import asyncio

    from starlette.requests import Request

    from crm_admin.customers.models import Customer

    a = login_as("mgr_a")
    a.get("/admin/customer/list")
    view = next(v for v in app.state.admin.views if getattr(v, "model", None) is Customer)
    with db.session_factory()() as session:
        from crm_admin.accounts.models import SysUser
        from crm_admin.core.principal import load_principal

        user = session.get(SysUser, world.users["mgr_a"])
        principal = load_principal(session.connection(), user)
    request = Request({"type": "http", "method": "GET", "path": "/admin/customer/list", "query_string": b"",
                       "headers": [], "path_params": {"identity": "customer"}, "state": {"principal": principal}})
    pagination = asyncio.run(view.list(request))
    assert pagination.count == 1
    assert [c.id for c in pagination.rows] == [world.row("mgr_a", "customer")]


def test_export_contains_only_own_rows(world: World, login_as: Any) -> None:
    _only_mgr_a_customers(login_as("mgr_a").get("/admin/customer/export/csv"))


def test_readonly_cannot_export(world: World, login_as: Any) -> None:
    ro = login_as("ro")
    assert ro.get("/admin/customer/export/csv").status_code == 403


def _refused_delete(client: Any, path: str, status: int) -> None:
    """The DELETE of ``path`` is refused with ``status`` and changes nothing."""
    before = snapshot()
    r = client.request("DELETE", path, headers=_headers(client))
    assert r.status_code == status
    assert snapshot() == before


def test_delete_single_of_anothers_row_is_404(world: World, login_as: Any) -> None:
    _refused_delete(login_as("mgr_a"), f"/admin/linkman/delete?pks={world.row('mgr_b', 'linkman')}", 404)


def test_bulk_delete_mixing_own_and_anothers_rows_deletes_nothing(world: World, login_as: Any) -> None:
    pks = f"{world.row('mgr_a', 'care_plan')},{world.row('mgr_b', 'care_plan')}"
    _refused_delete(login_as("mgr_a"), f"/admin/care-plan/delete?pks={pks}", 404)


def test_delete_without_permission_is_403(world: World, login_as: Any) -> None:
    # managers may not delete customers
    _refused_delete(login_as("mgr_a"), f"/admin/customer/delete?pks={world.row('mgr_a', 'customer')}", 403)


def test_delete_with_empty_or_bad_pks_changes_nothing(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    before = snapshot()
    for pks in ("", ",", "abc", "1 or 1=1"):
        r = a.request("DELETE", f"/admin/linkman/delete?pks={pks}", headers=_headers(a))
        assert r.status_code in (400, 404), (pks, r.status_code)
    assert snapshot() == before


def test_ajax_lookup_offers_only_rows_in_scope(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    # a contact picker follows the customer chosen in its form, whose id it sends along
    mine, theirs = str(world.row("mgr_a", "customer")), str(world.row("mgr_b", "customer"))
    for identity, name in (("linkman", "customer"), ("follow-up", "customer"), ("follow-up", "linkman"),
                           ("customer-care", "customer"), ("care-plan", "linkman"),
                           ("sales-opportunity", "customer"), ("customer-order", "customer")):
        r = a.get(f"/admin/{identity}/ajax/lookup", params={"name": name, "term": "mgr", "customer": mine})
        assert r.status_code == 200, (identity, name, r.status_code)
        texts = [item["text"] for item in r.json()["results"]]
        assert texts and all("mgr_a" in t for t in texts), (identity, name, texts)
    for identity in ("follow-up", "customer-care", "care-plan"):
        r = a.get(f"/admin/{identity}/ajax/lookup", params={"name": "linkman", "term": "mgr", "customer": theirs})
        assert r.status_code == 200 and r.json()["results"] == [], identity  # another manager's customer


def test_ajax_lookup_needs_a_form_permission(world: World, login_as: Any) -> None:
    ro = login_as("ro")
    r = ro.get("/admin/linkman/ajax/lookup", params={"name": "customer", "term": "客户"})
    assert r.status_code == 403


def test_submitted_foreign_key_to_anothers_customer_is_refused(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    token = csrf_token(a)
    before = snapshot()
    r = a.post("/admin/linkman/create",
               data={"customer": str(world.row("mgr_b", "customer")), "name": "偷偷加的联系人",
                     "csrf_token": token, "save": "Save"},
               headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 400
    assert "数据范围" in r.text
    assert snapshot() == before
    # the same form with A's own customer is accepted
    r = a.post("/admin/linkman/create",
               data={"customer": str(world.row("mgr_a", "customer")), "name": "正常联系人",
                     "csrf_token": token, "save": "Save"},
               headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 302, r.text[-2000:]


def test_raw_foreign_key_column_is_checked(world: World, app: Any) -> None:
    from starlette.requests import Request

    from crm_admin.accounts.models import SysUser
    from crm_admin.contacts.models import Linkman
    from crm_admin.core.errors import UserError
    from crm_admin.core.principal import load_principal

    view = next(v for v in app.state.admin.views if getattr(v, "model", None) is Linkman)
    with db.session_factory()() as session:
        user = session.get(SysUser, world.users["mgr_a"])
        principal = load_principal(session.connection(), user)
        request = Request({"type": "http", "state": {"principal": principal}})
        with pytest.raises(UserError):
            view.check_foreign_keys(session, {"customer_id": world.row("mgr_b", "customer")}, request)
        with pytest.raises(UserError):
            view.check_foreign_keys(session, {"customer": [str(world.row("mgr_b", "customer"))]}, request)
        view.check_foreign_keys(session, {"customer_id": world.row("mgr_a", "customer")}, request)


def test_filter_side_bar_values_are_scoped(world: World) -> None:
    import asyncio

    from sqladmin.filters import AllUniqueStringValuesFilter, ForeignKeyFilter
    from starlette.requests import Request

    from crm_admin.accounts.models import SysUser
    from crm_admin.contacts.models import Linkman
    from crm_admin.core.principal import load_principal
    from crm_admin.core.views import ScopedFilter
    from crm_admin.customers.models import Customer

    with db.session_factory()() as session:
        principal = load_principal(session.connection(), session.get(SysUser, world.users["mgr_a"]))
    request = Request({"type": "http", "state": {"principal": principal}})

    async def run_query(stmt: Any) -> Any:
        with db.session_factory()() as session:
            return session.execute(stmt).all()

    names = asyncio.run(ScopedFilter(AllUniqueStringValuesFilter(Customer.name)).lookups(request, Customer, run_query))
    assert [v for v, _ in names if v != "__all"] == ["客户mgr_a有限公司"]
    refs = asyncio.run(ScopedFilter(ForeignKeyFilter(Linkman.customer_id, Customer.name)).lookups(
        request, Linkman, run_query))
    assert [label for v, label in refs if v != "__all"] == ["客户mgr_a有限公司"]


def test_file_routes_do_not_open_anothers_row(world: World, login_as: Any) -> None:
    a = login_as("mgr_a")
    for suffix in ("download", "preview"):
        r = a.get(f"/admin/customer/{world.row('mgr_b', 'customer')}/remark/{suffix}/")
        assert r.status_code in (403, 404)


def test_manager_creating_customer_owns_it_and_cannot_name_another_owner(world: World, login_as: Any) -> None:
    from crm_admin.customers.models import Customer

    a = login_as("mgr_a")
    token = csrf_token(a)
    before = snapshot()
    r = a.post("/admin/customer/create",
               data={"code": "C-NEW-1", "name": "别人的新客户", "status": "potential",
                     "manager": str(world.users["mgr_b"]), "csrf_token": token, "save": "Save"},
               headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 400, r.status_code
    assert snapshot() == before
    r = a.post("/admin/customer/create",
               data={"code": "C-NEW-2", "name": "我的新客户", "status": "potential",
                     "csrf_token": token, "save": "Save"},
               headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 302, r.text[-3000:]
    with db.session_factory()() as session:
        owner = session.execute(select(Customer.manager_id).where(Customer.name == "我的新客户")).scalar_one()
    assert owner == world.users["mgr_a"]


def test_manager_cannot_hand_own_customer_to_someone_else_by_editing(world: World, app: Any) -> None:
    from starlette.requests import Request

    from crm_admin.accounts.models import SysUser
    from crm_admin.core.errors import UserError
    from crm_admin.core.principal import load_principal
    from crm_admin.customers.models import Customer

    view = next(v for v in app.state.admin.views if getattr(v, "model", None) is Customer)
    own = world.row("mgr_a", "customer")
    with db.session_factory()() as session:
        principal = load_principal(session.connection(), session.get(SysUser, world.users["mgr_a"]))
    request = Request({"type": "http", "state": {"principal": principal}})
    before = snapshot()
    with pytest.raises(UserError):
        view._save_sync(request, str(own), {"manager": str(world.users["mgr_b"])})
    with pytest.raises(UserError):
        view._save_sync(request, str(own), {"manager_id": world.users["mgr_b"]})
    assert snapshot() == before


def test_lead_with_assign_may_assign_within_team(world: World, app: Any) -> None:
    from starlette.requests import Request

    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal
    from crm_admin.customers.models import Customer

    view = next(v for v in app.state.admin.views if getattr(v, "model", None) is Customer)
    with db.session_factory()() as session:
        principal = load_principal(session.connection(), session.get(SysUser, world.users["lead"]))
    request = Request({"type": "http", "state": {"principal": principal}})
    obj = view._save_sync(request, str(world.row("mgr_a", "customer")), {"manager": str(world.users["mgr_b"])})
    assert obj.manager_id == world.users["mgr_b"]
    from crm_admin.core.errors import UserError

    with pytest.raises(UserError):  # mgr_c is in another department: the row would leave the lead's scope
        view._save_sync(request, str(world.row("mgr_a", "customer")), {"manager": str(world.users["mgr_c"])})


def test_sales_lead_sees_team_not_other_department(world: World, login_as: Any) -> None:
    lead = login_as("lead")
    page = lead.get("/admin/customer/list").text
    assert "客户mgr_a有限公司" in page and "客户mgr_b有限公司" in page  # s1 and its sub-team s1a
    assert "客户mgr_c有限公司" not in page
    assert lead.get(f"/admin/customer/details/{world.row('mgr_c', 'customer')}").status_code == 404
    assert lead.get(f"/admin/linkman/details/{world.row('mgr_b', 'linkman')}").status_code == 200


def test_permission_denied_is_audited(world: World, login_as: Any) -> None:
    from crm_admin.audit.models import AuditLog

    a = login_as("mgr_a")
    assert a.get("/admin/sys-user/list").status_code == 403
    with db.session_factory()() as session:
        row = session.execute(
            select(AuditLog).where(AuditLog.action == "permission_denied").order_by(AuditLog.id.desc())
        ).scalars().first()
    assert row is not None
    assert row.user_id == world.users["mgr_a"] and row.resource == "user" and not row.success


def test_custom_pages_do_not_open_anothers_rows(world: World, login_as: Any) -> None:
    """The custom pages of the other modules, probed with manager B's ids: 404/refusal, nothing changed."""
    a = login_as("mgr_a")
    token = csrf_token(a)
    headers = {"X-CSRF-Token": token}
    before = snapshot()
    b_customer, b_alert = world.row("mgr_b", "customer"), world.row("mgr_b", "churn_alert")
    assert a.get(f"/admin/customer/360/{world.row('mgr_a', 'customer')}").status_code == 200
    assert a.get(f"/admin/customer/360/{b_customer}").status_code == 404
    assert a.get(f"/admin/churn/alerts/{b_alert}").status_code == 404
    for url, data in (
        (f"/admin/customer/360/{b_customer}/follow-up", {"method": "phone", "content": "越权"}),
        (f"/admin/customer/360/{b_customer}/contact", {"name": "越权联系人"}),
        (f"/admin/churn/alerts/{b_alert}/follow", {}),
        (f"/admin/churn/alerts/{b_alert}/close", {"status": "lost", "reason": "price"}),
        ("/admin/care/execute", {"care_id": str(world.row("mgr_b", "customer_care")), "care_type": "visit",
                                 "detail": "越权"}),
        ("/admin/care/feedback", {"care_id": str(world.row("mgr_b", "customer_care")), "feedback": "越权",
                                  "status": "done"}),
        ("/admin/care/manual", {"customer_id": str(b_customer), "care_type": "visit", "detail": "越权"}),
        ("/admin/transfer/submit", {"customer_id": str(b_customer), "new_manager_id": str(world.users["mgr_a"]),
                                    "reason": "越权"}),
        ("/admin/pipeline/move", {"opportunity_id": str(world.row("mgr_b", "opportunity")), "stage": "contract",
                                  "version": "1"}),
    ):
        r = a.post(url, data={**data, "csrf_token": token}, headers=headers, follow_redirects=False)
        assert r.status_code in (302, 303, 400, 403, 404), (url, r.status_code)
    assert snapshot() == before
    for url in ("/admin/care/lookup/customers", "/admin/care/lookup/linkmen"):
        r = a.get(url, params={"term": "mgr", "q": "mgr", "customer_id": str(b_customer)})
        assert "mgr_b" not in r.text, url
    assert "客户mgr_b有限公司" not in a.get("/admin/transfer", params={"customer_id": str(b_customer)}).text
