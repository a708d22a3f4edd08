"""Customer create/edit/delete over HTTP: codes, validation, duplicates, locking, scope."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from crm_admin.customers.codes import make_credit_code
from crm_admin.customers.models import Customer
from tests.customers.conftest import form_token

GOOD_CODE = make_credit_code(region="北京")


def _create(client: Any, **fields: Any) -> Any:
    page = client.get("/admin/customer/create")
    data = {"name": "", "status": "potential", "csrf_token": form_token(page.text), **fields}
    return client.post("/admin/customer/create", data=data, follow_redirects=False)


def _count() -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(Customer)).scalar_one())


def test_manager_creates_customer_with_generated_code(make_user: Any, login_as: Any) -> None:
    make_user("wang")
    c = login_as("wang")
    r = _create(c, name="北京星辰科技有限公司", industry="it", level="A", credit_code=GOOD_CODE,
                phone="010-88886666")
    assert r.status_code == 302, r.text[:2000]
    with db.session_factory()() as s:
        obj = s.execute(select(Customer)).scalar_one()
    assert obj.code.startswith("C") and len(obj.code) == 11
    assert obj.name_key == "北京星辰科技"
    assert obj.manager_id is not None
    assert obj.credit_code == GOOD_CODE


def test_bad_credit_code_is_refused_with_clear_message(make_user: Any, login_as: Any) -> None:
    make_user("wang")
    c = login_as("wang")
    bad = GOOD_CODE[:-1] + ("0" if GOOD_CODE[-1] != "0" else "1")
    r = _create(c, name="甲公司", credit_code=bad)
    assert r.status_code == 400
    assert "校验位不正确" in r.text
    r = _create(c, name="甲公司", credit_code="123")
    assert "18 位" in r.text
    assert _count() == 0


def test_duplicate_name_variants_are_detected_without_leaking(make_user: Any, login_as: Any,
                                                               make_customer: Any) -> None:
    make_user("wang", real_name="王经理")
    make_user("li", real_name="李经理")
    make_customer("上海蓝鲸贸易有限公司", manager="li", phone="13912345678", address="秘密地址")
    c = login_as("wang")
    for variant in ("上海蓝鲸贸易有限责任公司", "上海 蓝鲸贸易", "上海蓝鲸贸易(中国)有限公司",
                    "上海蓝鲸贸易股份有限公司", "上海蓝鲸贸易集团"):
        r = _create(c, name=variant)
        assert r.status_code == 400, variant
        assert "疑似重复" in r.text and "李经理" in r.text
        assert "秘密地址" not in r.text
    r = _create(c, name="完全不同的公司", phone="139 1234 5678")
    assert r.status_code == 400 and "电话相同" in r.text
    assert _count() == 1


def test_credit_code_unique(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    make_customer("甲", manager="wang", credit_code=GOOD_CODE)
    c = login_as("wang")
    r = _create(c, name="乙", credit_code=GOOD_CODE.lower())
    assert r.status_code == 400 and "统一社会信用代码相同" in r.text


def test_manager_cannot_open_other_managers_customer(make_user: Any, login_as: Any,
                                                     make_customer: Any) -> None:
    make_user("wang")
    make_user("li")
    other = make_customer("李的客户", manager="li")
    c = login_as("wang")
    assert c.get(f"/admin/customer/details/{other.id}").status_code == 404
    assert c.get(f"/admin/customer/edit/{other.id}").status_code == 404
    assert c.get(f"/admin/customer/360/{other.id}").status_code == 404
    assert "李的客户" not in c.get("/admin/customer/list").text


def test_stale_edit_is_refused_and_input_kept(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    obj = make_customer("丙公司", manager="wang")
    a, b = login_as("wang"), login_as("wang")
    pa = a.get(f"/admin/customer/edit/{obj.id}").text
    pb = b.get(f"/admin/customer/edit/{obj.id}").text
    base = {"name": "丙公司", "status": "active", "version": "1"}
    r = a.post(f"/admin/customer/edit/{obj.id}", data={**base, "remark": "A 的修改", "csrf_token": form_token(pa)},
               follow_redirects=False)
    assert r.status_code == 302, r.text[:1500]
    r = b.post(f"/admin/customer/edit/{obj.id}", data={**base, "remark": "B 的修改", "csrf_token": form_token(pb)},
               follow_redirects=False)
    assert r.status_code == 400
    assert "已被他人修改" in r.text and "B 的修改" in r.text
    with db.session_factory()() as s:
        assert s.get(Customer, obj.id).remark == "A 的修改"


def test_delete_blocked_by_dependents(admin_client: Any, make_customer: Any) -> None:
    from crm_admin.contacts.models import Linkman
    from crm_admin.core.context import SYSTEM, acting_as

    obj = make_customer("丁公司")
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(Linkman(customer_id=obj.id, name="张三"))
    r = admin_client.delete(f"/admin/customer/delete?pks={obj.id}",
                            headers={"X-CSRF-Token": form_token(admin_client.get("/admin/customer/list").text)})
    from urllib.parse import unquote_plus

    assert "1 个联系人" in unquote_plus(r.text)
    assert _count() == 1


def test_manager_may_not_delete(make_user: Any, login_as: Any, make_customer: Any) -> None:
    make_user("wang")
    obj = make_customer("戊公司", manager="wang")
    c = login_as("wang")
    r = c.delete(f"/admin/customer/delete?pks={obj.id}",
                 headers={"X-CSRF-Token": form_token(c.get("/admin/customer/list").text)})
    assert r.status_code == 403
    assert _count() == 1
