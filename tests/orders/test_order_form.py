"""The order form: an order created and edited with its lines in one POST, totals in Decimal on the server,
scope on every posted id, optimistic locking, the whole save audited, nothing written on a refusal."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.products.models import Product
from tests.conftest import csrf_token

NEW = "/admin/customer-order/new"
LINE_FIELDS = ("item_id", "product_id", "quantity", "unit_price", "discount")


def edit_url(order_id: int) -> str:
    return f"/admin/customer-order/{order_id}/form"


def products() -> dict[str, int]:
    with db.transaction() as s:
        made = {
            "camera": Product(code="CAM", name="工业相机", price=Decimal("19.99"), stock=5),
            "cable": Product(code="CAB", name="数据线", price=Decimal("0.10"), stock=5),
            "lens": Product(code="LEN", name="镜头", price=Decimal("250.00"), stock=5),
            "old": Product(code="OLD", name="停产型号", price=Decimal("9.00"), stock=0, is_active=False),
        }
        s.add_all(made.values())
        s.flush()
        return {key: p.id for key, p in made.items()}


def post_order(client: Any, url: str, *, customer: int | str, lines: list[dict[str, Any]],
               version: str = "", status: str = "confirmed", order_date: str = "2026-11-20",
               remark: str = "") -> Any:
    token = csrf_token(client)
    data: dict[str, Any] = {"csrf_token": token, "customer": str(customer), "order_date": order_date,
                            "status": status, "remark": remark, "version": version}
    for name in LINE_FIELDS:  # one value per line, in line order, as the form posts them
        data[name] = [str(line.get(name, "")) for line in lines]
    return client.post(url, data=data, follow_redirects=False)


def state() -> tuple[Any, ...]:
    """Orders, lines and audit rows as they stand (to show that a refusal wrote nothing)."""
    with db.session_factory()() as s:
        return (
            s.execute(select(CustomerOrder.id, CustomerOrder.customer_id, CustomerOrder.amount, CustomerOrder.version,
                             CustomerOrder.remark).order_by(CustomerOrder.id)).all(),
            s.execute(select(OrderItem.id, OrderItem.order_id, OrderItem.product_id, OrderItem.quantity,
                             OrderItem.unit_price, OrderItem.discount).order_by(OrderItem.id)).all(),
            s.execute(select(func.count()).select_from(AuditLog)).scalar_one(),
        )


def only_order() -> CustomerOrder:
    with db.session_factory()() as s:
        return s.execute(select(CustomerOrder)).scalar_one()


def lines_of(order_id: int) -> list[OrderItem]:
    with db.session_factory()() as s:
        return list(s.execute(select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.id)).scalars())


def alert(html: str) -> str:
    found = re.search(r'id="order-error">([^<]*)<', html)
    return found.group(1) if found else ""


@pytest.fixture
def wang(make_user: Any, make_customer: Any, login_as: Any) -> dict[str, Any]:
    """Manager wang with a customer of his own, and manager li with one of hers."""
    make_user("wang")
    make_user("li")
    return {"client": login_as("wang"), "customer": make_customer("甲客户", manager="wang").id,
            "other_customer": make_customer("乙客户", manager="li").id, "products": products()}


def test_an_order_is_created_with_its_lines_and_totals_in_decimal(wang: dict[str, Any]) -> None:
    p = wang["products"]
    r = post_order(wang["client"], NEW, customer=wang["customer"], lines=[
        {"product_id": p["camera"], "quantity": "3", "unit_price": "19.99", "discount": "95"},  # 56.9715 → 56.97
        {"product_id": p["cable"], "quantity": "10", "unit_price": "0.10"},  # no discount: 1.00
    ])
    assert r.status_code == 303, alert(r.text) or r.text[:800]
    order = only_order()
    assert r.headers["location"].endswith(f"/admin/customer-order/details/{order.id}?saved=1")
    assert order.amount == Decimal("57.97")
    assert re.fullmatch(r"O\d{6}\d{5}", order.order_no), order.order_no
    lines = lines_of(order.id)
    assert [(i.product_id, i.quantity, i.unit_price, i.discount) for i in lines] == [
        (p["camera"], 3, Decimal("19.99"), Decimal("95.00")), (p["cable"], 10, Decimal("0.10"), Decimal("100.00"))]
    with db.session_factory()() as s:
        audited = s.execute(select(AuditLog.action, AuditLog.resource, AuditLog.changes)
                            .where(AuditLog.resource == "order")).all()
    assert [a.action for a in audited].count("create") == 3  # the order and each line, in its transaction
    assert any("discount" in (a.changes or {}) for a in audited)

    page = wang["client"].get(r.headers["location"]).text
    shown = page[page.index('id="order-lines-shown"'):]
    for text in ("工业相机", "数据线", "¥19.99", "¥56.97", "¥1.00", ">95<", "¥57.97"):
        assert text in shown, text
    assert "订单已保存" in page
    assert "明细 (" not in page and " @ " not in page  # not the old "product_id × qty @ price"


def test_a_line_is_changed_removed_and_added_in_one_save(wang: dict[str, Any]) -> None:
    p = wang["products"]
    client = wang["client"]
    post_order(client, NEW, customer=wang["customer"], lines=[
        {"product_id": p["camera"], "quantity": "1"}, {"product_id": p["cable"], "quantity": "5"}])
    order = only_order()
    first, second = lines_of(order.id)
    form = client.get(edit_url(order.id)).text
    assert f'name="item_id" value="{first.id}"' in form and "工业相机" in form
    audit_before = state()[2]
    r = post_order(client, edit_url(order.id), customer=wang["customer"], version=str(order.version), lines=[
        {"item_id": first.id, "product_id": p["camera"], "quantity": "2", "unit_price": "19.99", "discount": "90"},
        {"product_id": p["lens"], "quantity": "1", "unit_price": "", "discount": "97.5"},  # new, list price
    ])  # the cable line is not posted again: removed
    assert r.status_code == 303, alert(r.text) or r.text[:800]
    after = only_order()
    assert after.version == order.version + 1
    lines = lines_of(order.id)
    assert [(i.id == first.id, i.product_id, i.quantity, i.unit_price, i.discount) for i in lines] == [
        (True, p["camera"], 2, Decimal("19.99"), Decimal("90.00")),
        (False, p["lens"], 1, Decimal("250.00"), Decimal("97.50"))]
    assert after.amount == Decimal("35.98") + Decimal("243.75")  # 2 × 19.99 × 90% + 250.00 × 97.5%
    with db.session_factory()() as s:
        actions = s.execute(select(AuditLog.action, AuditLog.resource_id).where(AuditLog.resource == "order")
                            .order_by(AuditLog.id)).all()
    assert ("delete", str(second.id)) in [(a.action, a.resource_id) for a in actions]
    assert state()[2] > audit_before


def test_a_blank_unit_price_is_the_products_list_price(wang: dict[str, Any]) -> None:
    p = wang["products"]
    r = post_order(wang["client"], NEW, customer=wang["customer"], lines=[
        {"product_id": p["camera"], "quantity": "2", "unit_price": "  "}])
    assert r.status_code == 303, alert(r.text)
    order = only_order()
    assert [i.unit_price for i in lines_of(order.id)] == [Decimal("19.99")]  # never a ¥0.00 line
    assert order.amount == Decimal("39.98")


@pytest.mark.parametrize(("line", "message", "typed"), [
    ({"quantity": "abc"}, "第 1 行明细:数量必须是", 'value="abc"'),
    ({"quantity": "0"}, "第 1 行明细:数量", 'value="0"'),
    ({"unit_price": "1.005"}, "单价最多只能有 2 位小数", 'value="1.005"'),
    ({"unit_price": "-3"}, "单价不能为负数", 'value="-3"'),
    ({"discount": "120"}, "折扣超出允许范围(0 ~ 100,最多 2 位小数)", 'value="120"'),
    ({"discount": "95.555"}, "折扣最多只能有 2 位小数", 'value="95.555"'),
    ({"product_id": ""}, "第 1 行明细:请选择产品", 'value="19.99"'),
    ({"product_id": "old"}, "所选产品不存在或已停用", 'value="19.99"'),
    ({"product_id": "999999"}, "所选产品不存在或已停用", 'value="19.99"'),
])
def test_bad_lines_are_refused_with_the_form_kept(wang: dict[str, Any], line: dict[str, str], message: str,
                                                  typed: str) -> None:
    p = wang["products"]
    values = {"product_id": p["camera"], "quantity": "3", "unit_price": "19.99", "discount": "95", **line}
    if values["product_id"] == "old":
        values["product_id"] = p["old"]
    before = state()
    r = post_order(wang["client"], NEW, customer=wang["customer"], remark="请尽快发货", lines=[values])
    assert r.status_code == 400, r.text[:800]
    assert message in alert(r.text), alert(r.text)
    assert typed in r.text and "请尽快发货" in r.text and "甲客户" in r.text  # what was typed, shown again
    assert "Traceback" not in r.text and "SQL" not in r.text
    assert state() == before


@pytest.mark.parametrize(("header", "message"), [
    ({"remark": "长" * 30_000}, "备注过长"),
    ({"status": "shipped"}, "订单状态无效"),
    ({"order_date": "2026-02-30"}, "下单日期格式不正确"),
    ({"order_date": "2099-01-01"}, "下单日期不合理"),
    ({"customer": ""}, "请选择客户"),
    ({"customer": "abc"}, "请选择客户"),
])
def test_bad_headers_are_refused(wang: dict[str, Any], header: dict[str, str], message: str) -> None:
    p = wang["products"]
    values: dict[str, Any] = {"customer": wang["customer"], **header}
    before = state()
    r = post_order(wang["client"], NEW, lines=[{"product_id": p["camera"], "quantity": "1"}], **values)
    assert r.status_code == 400 and message in alert(r.text), (r.status_code, alert(r.text))
    assert state() == before


def test_an_order_without_lines_is_refused(wang: dict[str, Any]) -> None:
    before = state()
    r = post_order(wang["client"], NEW, customer=wang["customer"], lines=[{"quantity": "1"}])
    assert r.status_code == 400 and "订单至少需要一条明细" in alert(r.text)
    assert state() == before


def test_another_managers_customer_cannot_be_chosen(wang: dict[str, Any]) -> None:
    p = wang["products"]
    before = state()
    r = post_order(wang["client"], NEW, customer=wang["other_customer"],
                   lines=[{"product_id": p["camera"], "quantity": "1"}])
    assert r.status_code == 404 and "所选客户不存在或不在您的数据范围内" in alert(r.text)
    assert "乙客户" not in r.text  # not even its name
    assert state() == before
    found = wang["client"].get("/admin/customer-order/ajax/lookup", params={"name": "customer", "term": "客户"}).json()
    assert [x["text"] for x in found["results"]] == ["甲客户"]


def test_another_managers_order_is_not_found(wang: dict[str, Any], login_as: Any) -> None:
    p = wang["products"]
    li = login_as("li")
    assert post_order(li, NEW, customer=wang["other_customer"],
                      lines=[{"product_id": p["camera"], "quantity": "1"}]).status_code == 303
    theirs = only_order()
    item = lines_of(theirs.id)[0]
    before = state()
    client = wang["client"]
    assert client.get(edit_url(theirs.id)).status_code == 404
    assert client.get(f"/admin/customer-order/edit/{theirs.id}", follow_redirects=False).status_code == 404
    r = post_order(client, edit_url(theirs.id), customer=wang["customer"], version=str(theirs.version),
                   lines=[{"item_id": item.id, "product_id": p["camera"], "quantity": "9"}])
    assert r.status_code == 404
    assert state() == before


def test_an_item_of_another_order_is_refused(wang: dict[str, Any], login_as: Any) -> None:
    p = wang["products"]
    client = wang["client"]
    post_order(client, NEW, customer=wang["customer"], lines=[{"product_id": p["camera"], "quantity": "1"}])
    post_order(client, NEW, customer=wang["customer"], lines=[{"product_id": p["cable"], "quantity": "1"}])
    post_order(login_as("li"), NEW, customer=wang["other_customer"], lines=[{"product_id": p["lens"], "quantity": "1"}])
    with db.session_factory()() as s:
        mine, other_mine, theirs = s.execute(select(CustomerOrder).order_by(CustomerOrder.id)).scalars().all()
    foreign = [lines_of(other_mine.id)[0].id, lines_of(theirs.id)[0].id]
    own_item = lines_of(mine.id)[0].id
    for item_id in [*foreign, own_item]:
        before = state()
        # the foreign id alone, or the own line posted twice (the second would steal the first's row)
        lines = [{"item_id": item_id, "product_id": p["camera"], "quantity": "4"}]
        if item_id == own_item:
            lines.append({"item_id": own_item, "product_id": p["cable"], "quantity": "4"})
        r = post_order(client, edit_url(mine.id), customer=wang["customer"], version=str(mine.version), lines=lines)
        assert r.status_code == 400, (item_id, r.status_code)
        assert "该明细不属于本订单" in alert(r.text)
        assert state() == before
    before = state()  # a line id on the new-order form is refused too
    r = post_order(client, NEW, customer=wang["customer"],
                   lines=[{"item_id": own_item, "product_id": p["camera"], "quantity": "1"}])
    assert r.status_code == 400 and "该明细不属于本订单" in alert(r.text)
    assert state() == before


def _one_camera_order(wang: dict[str, Any]) -> tuple[CustomerOrder, OrderItem]:
    """wang's order of one camera, saved through the form: (the order, its line)."""
    post_order(wang["client"], NEW, customer=wang["customer"],
               lines=[{"product_id": wang["products"]["camera"], "quantity": "1"}])
    order = only_order()
    return order, lines_of(order.id)[0]


def test_a_save_from_an_older_copy_of_the_form_is_refused(wang: dict[str, Any]) -> None:
    p = wang["products"]
    client = wang["client"]
    order, item = _one_camera_order(wang)
    line = {"item_id": item.id, "product_id": p["camera"], "quantity": "2"}
    assert post_order(client, edit_url(order.id), customer=wang["customer"], version=str(order.version),
                      lines=[line]).status_code == 303
    before = state()
    r = post_order(client, edit_url(order.id), customer=wang["customer"], version=str(order.version),
                   lines=[{**line, "quantity": "7"}])
    assert r.status_code == 409 and "已被他人修改" in alert(r.text)
    assert 'value="7"' in r.text
    assert state() == before


def test_an_inactive_product_stays_on_the_line_that_has_it(wang: dict[str, Any]) -> None:
    p = wang["products"]
    client = wang["client"]
    order, item = _one_camera_order(wang)
    with db.transaction() as s:
        s.get(Product, p["camera"]).is_active = False
    r = post_order(client, edit_url(order.id), customer=wang["customer"], version=str(order.version),
                   lines=[{"item_id": item.id, "product_id": p["camera"], "quantity": "3", "unit_price": "19.99"}])
    assert r.status_code == 303, alert(r.text)
    assert only_order().amount == Decimal("59.97")


def test_sqladmin_new_and_edit_lead_to_the_order_form(wang: dict[str, Any]) -> None:
    p = wang["products"]
    client = wang["client"]
    listing = client.get("/admin/customer-order/list").text
    assert re.search(r'href="(http://testserver)?/admin/customer-order/new"', listing)
    r = client.get("/admin/customer-order/create", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(NEW)
    form = client.get(NEW).text
    assert 'id="order-form"' in form and "order-form.js" in form and "<script>" not in form
    post_order(client, NEW, customer=wang["customer"], lines=[{"product_id": p["camera"], "quantity": "1"}])
    order = only_order()
    r = client.get(f"/admin/customer-order/edit/{order.id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(edit_url(order.id))
    assert f'{edit_url(order.id)}"' in client.get(f"/admin/customer-order/details/{order.id}").text
    assert f'{edit_url(order.id)}"' in client.get("/admin/customer-order/list").text


def test_the_product_picker_offers_active_products_with_their_price(wang: dict[str, Any]) -> None:
    found = wang["client"].get("/admin/customer-order/products", params={"term": ""}).json()["results"]
    assert {(x["text"], x["price"]) for x in found} == {
        ("工业相机(CAM)", "19.99"), ("数据线(CAB)", "0.10"), ("镜头(LEN)", "250.00")}
    found = wang["client"].get("/admin/customer-order/products", params={"term": "CAM"}).json()["results"]
    assert [x["id"] for x in found] == [wang["products"]["camera"]]


def test_order_lines_are_read_only_outside_the_order_form(wang: dict[str, Any], admin_client: Any) -> None:
    p = wang["products"]
    post_order(wang["client"], NEW, customer=wang["customer"], lines=[{"product_id": p["camera"], "quantity": "1"}])
    item = lines_of(only_order().id)[0]
    listing = admin_client.get("/admin/order-item/list")
    assert listing.status_code == 200 and "工业相机" in listing.text
    assert admin_client.get("/admin/order-item/create").status_code == 403
    assert admin_client.get(f"/admin/order-item/edit/{item.id}").status_code == 403
