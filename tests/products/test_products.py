"""Products: admins maintain, managers read; validation; search by name/code/category, price, stock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.products.models import Product
from tests.customers.conftest import form_token


def _add(**fields: Any) -> None:
    with db.transaction() as s:
        s.add(Product(**fields))


def test_admin_creates_and_validates(admin_client: Any) -> None:
    token = form_token(admin_client.get("/admin/product/create").text)
    base = {"code": "p-001", "name": "工业相机", "category": "hardware", "price": "1999.90", "stock": "5",
            "is_active": "y", "csrf_token": token}
    r = admin_client.post("/admin/product/create", data=base, follow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    with db.session_factory()() as s:
        p = s.execute(select(Product)).scalar_one()
    assert p.code == "P-001" and str(p.price) == "1999.90"
    for bad, msg in (({"price": "-1"}, "价格"), ({"stock": "-3"}, "库存"), ({"category": "toys"}, "有效"),
                     ({"code": "P-001"}, "重复")):
        r = admin_client.post("/admin/product/create", data={**base, "code": "P-002", **bad})
        assert r.status_code == 400 and msg in r.text, bad


def test_manager_reads_but_cannot_write(make_user: Any, login_as: Any) -> None:
    _add(code="A1", name="路由器", category="hardware", price="300", stock=10)
    make_user("wang")
    c = login_as("wang")
    assert "路由器" in c.get("/admin/product/list").text
    assert c.get("/admin/product/create").status_code == 403
    assert c.get("/admin/product/edit/1").status_code in (403, 404)


def test_search_filters(admin_client: Any) -> None:
    _add(code="A1", name="路由器", category="hardware", price="300", stock=10)
    _add(code="A2", name="路由器 Pro", category="hardware", price="900", stock=0)
    _add(code="S1", name="运维服务", category="service", price="5000", stock=0, is_active=False)
    names = ("路由器<", "路由器 Pro", "运维服务")

    def found(qs: str) -> set[str]:
        html = admin_client.get(f"/admin/product/list?{qs}").text
        return {n for n in names if n in html.replace("<mark>", "").replace("</mark>", "")}

    assert found("q=路由") == {"路由器<", "路由器 Pro"}
    assert found("q=由器") == {"路由器<", "路由器 Pro"}  # any part of the name
    assert found("q=luyou") == {"路由器<", "路由器 Pro"}  # its pinyin
    assert found("q=lyq") == {"路由器<", "路由器 Pro"}  # its initials
    assert found("q=维服") == {"运维服务"}
    assert found("q=a2") == {"路由器 Pro"}
    assert found("category=service") == {"运维服务"}
    assert found("price_min=500&price_max=1000") == {"路由器 Pro"}
    assert found("stock_min=1") == {"路由器<"}
    assert found("active=0") == {"运维服务"}
