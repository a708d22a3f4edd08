"""Orders: amount computed from items in Decimal, last order time, scope, 360 totals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.core.errors import NotFound, UserError
from crm_admin.customers.models import Customer
from crm_admin.orders.models import CustomerOrder
from crm_admin.orders.service import create_order
from crm_admin.products.models import Product
from tests.customers.conftest import form_token


def _products() -> list[int]:
    with db.transaction() as s:
        a = Product(code="A", name="甲产品", price=Decimal("0.10"), stock=1)
        b = Product(code="B", name="乙产品", price=Decimal("19.99"), stock=1)
        s.add_all([a, b])
        s.flush()
        return [a.id, b.id]


def test_amount_is_computed_in_decimal(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    a, b = _products()
    with db.transaction() as s:
        order = create_order(s, principal("wang"), customer_id=cust.id, order_date=dt.date(2026, 11, 2),
                             items=[{"product_id": a, "quantity": 3}, {"product_id": b, "quantity": 2,
                                                                       "unit_price": "18.00"}])
    assert order.amount == Decimal("36.30")  # 0.10 * 3 + 18.00 * 2, exactly
    assert order.order_no.startswith("O")
    with db.session_factory()() as s:
        assert s.get(Customer, cust.id).last_order_at is not None


def test_bad_orders(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    make_user("li")
    cust = make_customer("甲", manager="wang")
    a, _b = _products()
    p = principal("wang")
    for items in ([], [{"product_id": a, "quantity": 0}], [{"product_id": a, "quantity": 1, "unit_price": "-1"}],
                  [{"product_id": 999999, "quantity": 1}]):
        with pytest.raises(UserError), db.transaction() as s:
            create_order(s, p, customer_id=cust.id, items=items)
    with pytest.raises(NotFound), db.transaction() as s:
        create_order(s, principal("li"), customer_id=cust.id, items=[{"product_id": a, "quantity": 1}])
    with db.session_factory()() as s:
        assert s.execute(select(CustomerOrder)).first() is None


def test_http_order_with_items_and_360_totals(make_user: Any, make_customer: Any, login_as: Any) -> None:
    """An order made in the order form (header and lines in one post): a typed amount is ignored, the
    amount is the lines' total, and the customer's 360° page counts it."""
    make_user("wang")
    cust = make_customer("甲客户", manager="wang")
    a, b = _products()
    c = login_as("wang")
    token = form_token(c.get("/admin/customer-order/new").text)
    r = c.post("/admin/customer-order/new", data={
        "customer": str(cust.id), "order_date": "2026-11-20", "status": "confirmed", "amount": "99999",
        "csrf_token": token, "item_id": ["", ""], "product_id": [str(a), str(b)], "quantity": ["10", "1"],
        "unit_price": ["", ""], "discount": ["", ""],
    }, follow_redirects=False)
    assert r.status_code == 303, r.text[:800]
    with db.session_factory()() as s:
        order = s.execute(select(CustomerOrder)).scalar_one()
    assert order.amount == Decimal("20.99")
    page = c.get(f"/admin/customer/360/{cust.id}").text
    assert order.order_no in page and "20.99" in page
