"""Inputs from the edges — huge numbers, NUL bytes, very large forms, other people's ids — get a clear
answer in Chinese and never a server error (issue: ten list pages and the transfer history answered
500 to ``?page=99999999999999999999``, a NUL byte in an id path answered 500, deleting someone else's
saved query answered 500, transferring ~1,000 customers answered Starlette's English "Too many fields")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, insert, select

from crm_admin import db
from tests.conftest import csrf_token

HUGE = "99999999999999999999"


def _model_views(app: Any) -> list[Any]:
    return [v for v in app.state.admin.views if hasattr(v, "model")]


def test_huge_page_numbers_on_every_list(admin_client: Any, app: Any) -> None:
    failures = []
    for view in _model_views(app):
        for query in (f"page={HUGE}", f"pageSize={HUGE}", "page=-3", "page=abc", f"page={HUGE}&pageSize=-1"):
            response = admin_client.get(f"/admin/{view.identity}/list?{query}")
            if response.status_code >= 500:
                failures.append(f"{view.identity} ?{query}: {response.status_code}")
    for url in ("/admin/transfer/history", "/admin/follow-ups/due", "/admin/care/workbench",
                "/admin/churn/alerts", "/admin/audit-log/list"):
        for key in ("page", "today_page", "overdue_page", "upcoming_page"):
            response = admin_client.get(f"{url}?{key}={HUGE}")
            if response.status_code >= 500:
                failures.append(f"{url} ?{key}: {response.status_code}")
    assert not failures, failures


def test_huge_and_nul_ids_in_paths_and_filters(admin_client: Any, app: Any) -> None:
    failures = []
    for view in _model_views(app):
        for pk in (HUGE, "%00", "1%002", "-1", "2147483648"):
            for kind in ("details", "edit"):
                response = admin_client.get(f"/admin/{view.identity}/{kind}/{pk}")
                if response.status_code not in (400, 403, 404):
                    failures.append(f"{view.identity}/{kind}/{pk}: {response.status_code}")
    for url in (f"/admin/customer/360/{HUGE}", f"/admin/churn/alerts/{HUGE}", f"/admin/users/{HUGE}",
                "/admin/customer/360/%00", f"/admin/customer/list?manager={HUGE}", f"/admin/pipeline?manager={HUGE}",
                f"/admin/pipeline?dept={HUGE}", f"/admin/transfer?manager_id={HUGE}",
                f"/admin/transfer/history?customer_id={HUGE}", f"/admin/care/workbench?manager_id={HUGE}"):
        response = admin_client.get(url)
        if response.status_code >= 500:
            failures.append(f"{url}: {response.status_code}")
    assert not failures, failures


def test_saved_query_of_someone_else_or_of_nobody_is_404(make_user: Any, login_as: Any) -> None:
    from crm_admin.customers.models import SavedQuery

    owner = make_user("sq_owner")
    make_user("sq_other")
    with db.transaction() as session:
        row = SavedQuery(user_id=owner.id, resource="customer", name="我的查询", query_string="level=A")
        session.add(row)
        session.flush()
        qid = row.id
    other = login_as("sq_other")
    token = csrf_token(other)
    for target in (qid, 987654):
        response = other.post(f"/admin/customer/saved-queries/{target}/delete", data={"csrf_token": token},
                              follow_redirects=False)
        assert response.status_code == 404, response.status_code
    with db.session_factory()() as session:
        assert session.get(SavedQuery, qid) is not None


def test_transfer_of_more_than_a_thousand_customers_at_once(make_user: Any, login_as: Any) -> None:
    from crm_admin.customers.models import Customer
    from crm_admin.transfers.models import CustomerTransfer

    old = make_user("bulk_old")
    new = make_user("bulk_new")
    now = db.utcnow()
    with db.transaction() as session:
        session.execute(insert(Customer), [
            {"code": f"BULK{i:05d}", "name": f"批量转移客户{i:05d}", "name_key": f"批量转移客户{i:05d}",
             "manager_id": old.id, "status": "potential", "version": 1, "created_at": now, "updated_at": now}
            for i in range(1200)])
        ids = list(session.execute(select(Customer.id).where(Customer.manager_id == old.id)).scalars())
    client = login_as("bulk_old")
    data: list[tuple[str, str]] = [("csrf_token", csrf_token(client)), ("new_manager_id", str(new.id)),
                                   ("reason", "整体交接")]
    for cid in ids:
        data += [("customer_id", str(cid)), (f"version_{cid}", "1")]
    body = "&".join(f"{k}={v}" for k, v in data)
    response = client.post("/admin/transfer/submit", content=body,
                           headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert response.status_code == 303, response.text[-800:]
    with db.session_factory()() as session:
        assert session.execute(select(func.count()).select_from(Customer)
                               .where(Customer.manager_id == new.id)).scalar() == 1200
        assert session.execute(select(func.count()).select_from(CustomerTransfer)).scalar() == 1200


def test_too_many_fields_elsewhere_is_told_in_chinese(admin_client: Any) -> None:
    token = csrf_token(admin_client)
    body = f"csrf_token={token}&name=x&" + "&".join(f"f{i}=1" for i in range(1500))
    response = admin_client.post("/admin/customer/create", content=body,
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "提交的内容项过多" in response.text and "Too many" not in response.text


@pytest.mark.parametrize("number, valid", [
    ("1380013800", False), ("138001380000", False), ("+86 1380013800", False), ("0138001380", False),
    ("13800138000", True), ("+86 138 0013 8000", True), ("010-88886666", True), ("0755-8888666", True),
    ("(010)88886666", True), ("88886666", True), ("010-88886666 转 123", True), ("400-800-8888", True),
    ("+86 10 88886666", True), ("+1 415 555 0100", True),
])
def test_phone_numbers(number: str, valid: bool, admin_client: Any) -> None:
    from crm_admin.customers.models import Customer

    response = admin_client.post("/admin/customer/create", data={
        "csrf_token": csrf_token(admin_client), "name": f"电话测试{abs(hash(number))}有限公司", "status": "potential",
        "phone": number}, follow_redirects=False)
    assert (response.status_code == 302) is valid, (number, response.status_code)
    if not valid:
        assert "电话格式不正确" in response.text
        with db.session_factory()() as session:
            assert session.execute(select(Customer.id).where(Customer.phone == number)).first() is None
