"""One numbering scheme for orders: the demo data and the benchmark generator number their orders as the
application does (O + YYYYMM + the month's running number), on the same counters, so an order made
afterwards continues the month's numbers instead of colliding with them."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.orders.models import CustomerOrder
from crm_admin.orders.service import format_order_no, next_order_no
from tests.demo_data import demo_data  # noqa: F401

NUMBER = re.compile(r"O(\d{6})(\d{5,})")


def _orders() -> list[tuple[str, Any]]:
    with db.session_factory()() as s:
        return [tuple(r) for r in s.execute(select(CustomerOrder.order_no, CustomerOrder.order_date))]


def _check_scheme(orders: list[tuple[str, Any]]) -> dict[str, int]:
    """Every number in the scheme, in its date's month, unique; the last number of each month."""
    last: dict[str, int] = {}
    for order_no, day in orders:
        match = NUMBER.fullmatch(order_no)
        assert match, order_no
        assert match.group(1) == f"{day:%Y%m}", (order_no, day)  # numbered in the month of its date
        last[match.group(1)] = max(last.get(match.group(1), 0), int(match.group(2)))
    numbers = [no for no, _day in orders]
    assert len(set(numbers)) == len(numbers)
    return last


def _next_numbers_continue(last: dict[str, int]) -> None:
    """An order made now in any of those months takes the number after the month's last one."""
    with acting_as(SYSTEM), db.transaction() as s:
        for month, number in last.items():
            assert next_order_no(s, month) == format_order_no(month, number + 1)


def test_the_scheme_is_the_new_orders_one() -> None:
    assert format_order_no("202611", 42) == "O20261100042"
    with acting_as(SYSTEM), db.transaction() as s:
        first, second = next_order_no(s, "203001"), next_order_no(s, "203001")
    assert (first, second) == ("O20300100001", "O20300100002")


def test_demo_orders_are_numbered_as_new_orders(demo_data: Any) -> None:  # noqa: F811
    orders = _orders()
    assert len(orders) > 10
    _next_numbers_continue(_check_scheme(orders))


def test_generated_orders_are_numbered_as_new_orders(engine: Any) -> None:
    import crm_admin.models  # noqa: F401
    from crm_admin.perf.generate import generate

    report = generate(engine, scale=0.0005, seed=7)
    orders = _orders()
    assert len(orders) == report.rows["customer_order"] > 10
    _next_numbers_continue(_check_scheme(orders))
