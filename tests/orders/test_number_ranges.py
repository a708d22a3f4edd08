"""An order line priced at 10^15 (issue 11, hole 8): a clear Chinese message, no SQL, nothing written.

Posted through the order form (header and lines in one save), as a user does.

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
from crm_admin.orders import service
from crm_admin.orders.admin import OrderAdmin
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.orders.service import create_order
from crm_admin.products.models import Product
from tests.conftest import csrf_token, without_tokens
from tests.orders.test_order_form import NEW, post_order

# MariaDB's out-of-range error as the driver words it: "(1264, \"Out of range value …" (a bare 1264 may
# be a record id on the page: ids keep growing across tests on MariaDB)
LEAKS = ("SQL", "INSERT", "UPDATE ", "pymysql", "sqlite3", "Traceback", "parameters", "DataError",
         "order_item", "(1264", "Out of range value")


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
    body = without_tokens(body)
    for leak in LEAKS:
        assert leak not in body, (leak, body[:2000])


@pytest.fixture
def wangs(make_user: Any, make_customer: Any) -> tuple[int, int]:
    """The manager wang, a customer of his and a product: (customer id, product id)."""
    make_user("wang")
    customer = make_customer("甲客户", manager="wang")
    return customer.id, _product()


def _wangs_order(principal: Any, customer: int, *items: dict[str, Any]) -> CustomerOrder:
    """wang's order of 2 November 2026 for ``customer``, through the service."""
    with db.transaction() as s:
        return create_order(s, principal("wang"), customer_id=customer, order_date=dt.date(2026, 11, 2),
                            items=list(items))


@pytest.fixture
def order_form(request: Any, login_as: Any, admin_client: Any, wangs: tuple[int, int]) -> tuple[Any, int, int]:
    """(client, customer id, product id) for the order form, used by the user asked for."""
    client = admin_client if request.param == "admin" else login_as("wang")
    return client, *wangs


def _line(product: int, **values: str) -> dict[str, str]:
    return {"product_id": str(product), "quantity": "1", "unit_price": "10", **values}


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
def test_a_unit_price_of_ten_to_the_fifteen_is_refused_in_chinese(order_form: Any) -> None:
    client, customer, product = order_form
    before = _counts()
    r = post_order(client, NEW, customer=customer, lines=[_line(product, unit_price="1000000000000000")])
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
    ("quantity", "20000000", "数量必须是 1 ~ 10,000,000 之间的整数"),
    ("discount", "100.01", "折扣超出允许范围(0 ~ 100,最多 2 位小数)"),
    ("discount", "-5", "折扣不能为负数"),
    ("discount", "1e400", "折扣超出允许范围"),
])
def test_other_numbers_that_do_not_fit_an_order_line(order_form: Any, field: str, value: str,
                                                      message: str) -> None:
    client, customer, product = order_form
    before = _counts()
    r = post_order(client, NEW, customer=customer, lines=[_line(product, **{field: value})])
    assert r.status_code == 400, r.text[:800]
    assert message in r.text
    _no_leaks(r.text)
    assert _counts() == before


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
def test_lines_that_fit_but_whose_total_does_not_are_refused(order_form: Any) -> None:
    """Each line fits DECIMAL(14,2); their sum, the order's amount, would not."""
    client, customer, product = order_form
    big = _line(product, quantity="1000", unit_price="900000000000.00")  # 9 × 10^14: over on its own
    r = post_order(client, NEW, customer=customer, lines=[big])
    assert r.status_code == 400 and "订单金额超出允许范围" in r.text, r.text[:800]
    _no_leaks(r.text)
    ok = _line(product, unit_price="600000000000.00")
    assert post_order(client, NEW, customer=customer, lines=[ok]).status_code == 303
    before = _counts()
    with db.session_factory()() as s:
        order = s.execute(select(CustomerOrder)).scalar_one()
        item = s.execute(select(OrderItem.id)).scalar_one()
    r = post_order(client, f"/admin/customer-order/{order.id}/form", customer=customer,
                   lines=[{**ok, "item_id": str(item)}, ok])  # 1.2 × 10^12 in all
    assert r.status_code == 400 and "订单金额超出允许范围" in r.text and "1,200,000,000,000.00" in r.text
    _no_leaks(r.text)
    assert _counts() == before
    assert before[2] == [Decimal("600000000000.00")]


def test_the_service_path_refuses_the_same(wangs: tuple[int, int], principal: Any) -> None:
    customer, product = wangs
    with pytest.raises(UserError, match="单价超出允许范围"):
        _wangs_order(principal, customer, {"product_id": product, "quantity": 1, "unit_price": "1000000000000000"})
    assert _counts() == (0, 0, [])


def test_any_write_is_checked_before_the_database_sees_it(wangs: tuple[int, int], principal: Any) -> None:
    """A path that sets attributes without any validation (here: directly) is still refused at flush."""
    customer, product = wangs
    order = _wangs_order(principal, customer, {"product_id": product, "quantity": 1})
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
    """Whatever a save raises — here once the order row is already written — the form shows a plain
    message and what was typed; the transaction is rolled back, nothing is written."""
    client, customer, product = order_form

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(service, "_apply_line", fail)
    before = _counts()
    r = post_order(client, NEW, customer=customer, lines=[_line(product, quantity="2")])
    assert r.status_code == 400, r.text[:800]
    assert any(word in r.text for word in ("保存失败", "操作失败", "数据库暂时繁忙")), r.text[:2000]
    assert 'value="2"' in r.text
    _no_leaks(r.text)
    assert _counts() == before


@pytest.mark.parametrize("order_form", ["admin"], indirect=True)
def test_a_failed_delete_shows_no_sql_either(order_form: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, customer, product = order_form
    assert post_order(client, NEW, customer=customer, lines=[_line(product, quantity="2")]).status_code == 303
    with db.session_factory()() as s:
        order_id = s.execute(select(CustomerOrder.id)).scalar_one()

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise sa_exc.OperationalError("DELETE FROM order_item WHERE order_id=%(id)s", {"id": order_id},
                                      Exception("(1205, 'Lock wait timeout exceeded')"))

    monkeypatch.setattr(OrderAdmin, "before_delete", fail)
    r = client.delete(f"/admin/customer-order/delete?pks={order_id}", headers={"X-CSRF-Token": csrf_token(client)})
    shown = unquote_plus(r.text)  # the list's URL, with the message SQLAdmin shows on the list
    assert "数据库暂时繁忙" in shown, shown
    _no_leaks(shown)
    _no_leaks(client.get(r.text.strip()).text)
    assert _counts()[:2] == (1, 1)


@pytest.mark.parametrize("order_form", ["admin", "manager"], indirect=True)
def test_a_blank_unit_price_takes_the_products_list_price(order_form: Any) -> None:
    """The form says 单价留空则按产品标价: a blank price is the product's price, never a ¥0.00 line."""
    client, customer, product = order_form
    r = post_order(client, NEW, customer=customer, lines=[_line(product, quantity="2", unit_price="")])
    assert r.status_code == 303, r.text[:800]
    with db.session_factory()() as s:
        assert s.execute(select(OrderItem.unit_price)).scalar_one() == Decimal("19.99")
        assert s.execute(select(CustomerOrder.amount)).scalar_one() == Decimal("39.98")


def test_an_order_deleted_takes_its_lines_with_it(wangs: tuple[int, int], principal: Any, admin_client: Any) -> None:
    customer, product = wangs
    order = _wangs_order(principal, customer, {"product_id": product, "quantity": 1},
                         {"product_id": product, "quantity": 2})
    r = admin_client.delete(f"/admin/customer-order/delete?pks={order.id}",
                            headers={"X-CSRF-Token": csrf_token(admin_client)})
    assert r.status_code == 200 and "error" not in r.text, r.text
    assert _counts() == (0, 0, [])
