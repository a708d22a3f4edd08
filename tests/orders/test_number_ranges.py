"""An order line priced at 10^15 (issue 11, hole 8): a clear Chinese message, no SQL, nothing written.

On MariaDB the database refused the INSERT and the form showed ``(pymysql.err.DataError) (1264, "Out
of range value…") [SQL: INSERT INTO order_item …] [parameters: …]``; on SQLite the line was saved.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.core.errors import UserError
from crm_admin.orders.admin import OrderItemAdmin
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.orders.service import create_order
from crm_admin.products.models import Product
from tests.customers.conftest import form_token

LEAKS = ("SQL", "INSERT", "UPDATE ", "pymysql", "sqlite3", "Traceback", "parameters", "DataError",
         "order_item", "1264")


def _product(price: str = "19.99") -> int:
    with db.transaction() as s:
        p = Product(code="P1", name="工业相机", price=Decimal(price), stock=1)
        s.add(p)
        s.flush()
        return p.id


def _counts() -> tuple[int, int, list[Decimal]]:
    with db.session_factory()() as s:
        return (s.execute(select(func.count()).select_from(OrderItem)).scalar_one(),
                s.execute(select(func.count()).select_from(CustomerOrder)).scalar_one(),
                list(s.execute(select(CustomerOrder.amount).order_by(CustomerOrder.id)).scalars()))


def _no_leaks(body: str) -> None:
    for leak in LEAKS:
        assert leak not in body, (leak, body[:2000])


@pytest.fixture
def order_form(request: Any, make_user: Any, make_customer: Any, login_as: Any,
               admin_client: Any) -> tuple[Any, str, int, int]:
    """(client, CSRF token, order id, product id): an order made through the form by the user asked for."""
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    product = _product()
    client = admin_client if request.param == "admin" else login_as("wang")
    token = form_token(client.get("/admin/customer-order/create").text)
    r = client.post("/admin/customer-order/create", data={
        "customer": str(customer.id), "order_date": "2026-11-20", "status": "confirmed", "csrf_token": token,
    }, follow_redirects=False)
    assert r.status_code == 302, r.text[:800]
    with db.session_factory()() as s:
        order_id = s.execute(select(CustomerOrder.id)).scalar_one()
    return client, token, order_id, product


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
def test_a_unit_price_of_ten_to_the_fifteen_is_refused_in_chinese(order_form: Any) -> None:
    client, token, order_id, product = order_form
    before = _counts()
    r = client.post("/admin/order-item/create", data={
        "order": str(order_id), "product": str(product), "quantity": "1", "unit_price": "1000000000000000",
        "csrf_token": token,
    }, follow_redirects=False)
    assert r.status_code == 400, r.text[:800]
    assert "单价超出允许范围(0 ~ 999,999,999,999.99,最多 2 位小数)" in r.text
    assert 'value="1000000000000000"' in r.text  # the form is shown again with what was typed
    _no_leaks(r.text)
    assert _counts() == before


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
@pytest.mark.parametrize(("field", "value", "message"), [
    ("unit_price", "1.005", "单价最多只能有 2 位小数"),
    ("unit_price", "-1", "单价不能为负数"),
    ("unit_price", "NaN", "单价必须是数字"),
    ("unit_price", "1e400", "单价超出允许范围"),
    ("quantity", "0", "数量超出允许范围(1 ~ 2,147,483,647)"),
    ("quantity", "3000000000", "数量超出允许范围(1 ~ 2,147,483,647)"),
    ("quantity", "99999999999999999999999", "数量超出允许范围"),
])
def test_other_numbers_that_do_not_fit_an_order_line(order_form: Any, field: str, value: str,
                                                      message: str) -> None:
    client, token, order_id, product = order_form
    data = {"order": str(order_id), "product": str(product), "quantity": "1", "unit_price": "10",
            "csrf_token": token, field: value}
    before = _counts()
    r = client.post("/admin/order-item/create", data=data, follow_redirects=False)
    assert r.status_code == 400, r.text[:800]
    assert message in r.text
    _no_leaks(r.text)
    assert _counts() == before


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
def test_lines_that_fit_but_whose_total_does_not_are_refused(order_form: Any) -> None:
    """Each line fits DECIMAL(14,2); their sum, the order's amount, would not."""
    client, token, order_id, product = order_form
    line = {"order": str(order_id), "product": str(product), "quantity": "1000",
            "unit_price": "900000000000.00", "csrf_token": token}  # 9 × 10^14: over on its own
    r = client.post("/admin/order-item/create", data=line, follow_redirects=False)
    assert r.status_code == 400 and "订单金额超出允许范围" in r.text, r.text[:800]
    _no_leaks(r.text)
    ok = {**line, "quantity": "1", "unit_price": "600000000000.00"}
    assert client.post("/admin/order-item/create", data=ok, follow_redirects=False).status_code == 302
    before = _counts()
    r = client.post("/admin/order-item/create", data=ok, follow_redirects=False)  # 1.2 × 10^12 in all
    assert r.status_code == 400 and "订单金额超出允许范围" in r.text and "1,200,000,000,000.00" in r.text
    _no_leaks(r.text)
    assert _counts() == before
    assert before[2] == [Decimal("600000000000.00")]


def test_the_service_path_refuses_the_same(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    product = _product()
    with pytest.raises(UserError, match="单价超出允许范围"), db.transaction() as s:
        create_order(s, principal("wang"), customer_id=customer.id, order_date=dt.date(2026, 11, 2),
                     items=[{"product_id": product, "quantity": 1, "unit_price": "1000000000000000"}])
    assert _counts() == (0, 0, [])


def test_any_write_is_checked_before_the_database_sees_it(make_user: Any, make_customer: Any,
                                                          principal: Any) -> None:
    """A path that sets attributes without any validation (here: directly) is still refused at flush."""
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    product = _product()
    with db.transaction() as s:
        order = create_order(s, principal("wang"), customer_id=customer.id, order_date=dt.date(2026, 11, 2),
                             items=[{"product_id": product, "quantity": 1}])
    with pytest.raises(UserError, match="超出允许范围"), db.transaction() as s:
        item = s.execute(select(OrderItem)).scalar_one()
        item.unit_price = Decimal("1000000000000000")
        s.flush()
    with pytest.raises(UserError, match="不能为负数"), db.transaction() as s:
        s.add(OrderItem(order_id=order.id, product_id=product, quantity=1, unit_price=Decimal("-5")))
        s.flush()
    assert _counts() == (1, 1, [Decimal("19.99")])


@pytest.mark.parametrize("order_form", ["admin"], indirect=True)
@pytest.mark.parametrize("error", [
    sa_exc.DataError("INSERT INTO order_item (unit_price) VALUES (%(p)s)", {"p": 1},
                     Exception("(1264, \"Out of range value for column 'unit_price' at row 1\")")),
    sa_exc.ProgrammingError("SELECT secret FROM sys_user", {}, Exception("(1146, 'no such table')")),
    sa_exc.OperationalError("UPDATE customer_order SET amount=%(a)s", {"a": 1}, Exception("(2013, 'Lost')")),
    sa_exc.IntegrityError("INSERT INTO order_item", {}, Exception("Duplicate entry 'x' for key 'uq'")),
    RuntimeError("INSERT INTO order_item VALUES (1) [parameters: (1,)]"),
], ids=["data", "programming", "operational", "integrity", "other"])
def test_no_database_error_reaches_the_form_as_sql(order_form: Any, error: Exception,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a save raises, the form shows a plain message and the form is kept; nothing is written."""
    client, token, order_id, product = order_form

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(OrderItemAdmin, "before_save", fail)
    before = _counts()
    r = client.post("/admin/order-item/create", data={
        "order": str(order_id), "product": str(product), "quantity": "2", "unit_price": "10", "csrf_token": token,
    }, follow_redirects=False)
    assert r.status_code == 400, r.text[:800]
    assert any(word in r.text for word in ("保存失败", "操作失败", "数据库暂时繁忙")), r.text[:2000]
    _no_leaks(r.text)
    assert _counts() == before


@pytest.mark.parametrize("order_form", ["admin"], indirect=True)
def test_a_failed_delete_shows_no_sql_either(order_form: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, token, order_id, product = order_form
    r = client.post("/admin/order-item/create", data={
        "order": str(order_id), "product": str(product), "quantity": "2", "unit_price": "10", "csrf_token": token,
    }, follow_redirects=False)
    assert r.status_code == 302
    with db.session_factory()() as s:
        item_id = s.execute(select(OrderItem.id)).scalar_one()

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise sa_exc.OperationalError("DELETE FROM order_item WHERE id=%(id)s", {"id": item_id},
                                      Exception("(1205, 'Lock wait timeout exceeded')"))

    monkeypatch.setattr(OrderItemAdmin, "before_delete", fail)
    r = client.delete(f"/admin/order-item/delete?pks={item_id}", headers={"X-CSRF-Token": token})
    shown = unquote_plus(r.text)  # the list's URL, with the message SQLAdmin shows on the list
    assert "数据库暂时繁忙" in shown, shown
    _no_leaks(shown)
    _no_leaks(client.get(r.text.strip()).text)
    assert _counts()[0] == 1


@pytest.mark.parametrize("order_form", ["admin"], indirect=True)
def test_a_blank_unit_price_takes_the_products_list_price(order_form: Any) -> None:
    """The form says 留空则按产品标价: a blank price is the product's price, never a ¥0.00 line."""
    client, token, order_id, product = order_form
    r = client.post("/admin/order-item/create", data={
        "order": str(order_id), "product": str(product), "quantity": "2", "unit_price": "", "csrf_token": token,
    }, follow_redirects=False)
    assert r.status_code == 302, r.text[:800]
    with db.session_factory()() as s:
        assert s.execute(select(OrderItem.unit_price)).scalar_one() == Decimal("19.99")
        assert s.execute(select(CustomerOrder.amount)).scalar_one() == Decimal("39.98")
