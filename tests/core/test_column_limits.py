"""Every number and text a form takes must fit its column (issue 11, hole 8), table-driven.

The limits come from the columns themselves (``crm_admin/core/limits.py``); these tests walk every
model view of the running app and every mapped model, so a column added later is covered without
editing them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select
from wtforms import DecimalField, HiddenField, IntegerField, StringField

from crm_admin import db
from crm_admin.core import limits
from crm_admin.core.errors import UserError
from crm_admin.core.views import CrmModelView
from tests.conftest import without_tokens
from tests.customers.conftest import form_token

LEAKS = ("SQL", "INSERT", "UPDATE ", "pymysql", "sqlite3", "Traceback", "[parameters", "DataError",
         "Exception")
CJK = re.compile(r"[\u4e00-\u9fff]")


def leaks_in(html: str) -> list[str]:
    text = without_tokens(html)
    return [leak for leak in LEAKS if leak in text]

FEEDBACK = re.compile(r'class="(?:invalid-feedback|alert alert-danger)"[^>]*>([^<]*)<')


def bad_values(limit: limits.Limit) -> list[tuple[str, str]]:
    """(what is wrong, the text typed) for one column."""
    if limit.kind == "string":
        return [("too long", "长" * ((limit.length or 0) + 1))]
    if limit.kind == "text":
        return [("too long", "长" * ((limit.max_bytes or 0) // 3 + 1))]
    assert limit.high is not None and limit.low is not None
    cases = [("over the top", str(limit.high + 1)), ("not a number", "abc"), ("huge", "9" * 40)]
    if limit.kind == "decimal":
        cases += [("too many decimals", "1." + "1" * (limit.places + 1)), ("NaN", "NaN"), ("1e400", "1e400")]
    else:
        cases.append(("not whole", "1.5"))
    if limit.low == 0:
        cases.append(("negative", "-1"))
    else:
        cases.append(("below the bottom", str(limit.low - 1)))
    return cases


def _create_cases(app: Any) -> list[Any]:
    cases = []
    for view in app.state.admin.views:
        if not isinstance(view, CrmModelView) or not view.can_create:
            continue
        if view.own_form_routes:  # its form is a page of its own, with its own tests (tests/orders)
            continue
        form = anyio.run(view.scaffold_form)
        for key, (_column, limit) in limits.model_limits(view.model).items():
            field = getattr(form, key, None)
            if field is None:
                continue
            # a box the user types into (not a drop-down, not a hidden field): the exact message is shown
            plain = issubclass(field.field_class, IntegerField | DecimalField | StringField) and not issubclass(
                field.field_class, HiddenField)
            for what, text in bad_values(limit):
                cases.append(pytest.param(view.identity, key, text, plain,
                                          id=f"{view.identity}.{key}:{what}"))
    return cases


def _rows(model: type) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_every_model_view_refuses_what_does_not_fit(app: Any, admin_client: Any) -> None:
    """Every model view's create form, every limited column, every kind of misfit: the form comes
    back (4xx) with a Chinese message — the exact one naming the field and the range for plain
    inputs — with no SQL or driver text, and no row written."""
    cases = _create_cases(app)
    assert len(cases) > 100  # the walk found the app's forms
    views = {v.identity: v for v in app.state.admin.views}
    tokens: dict[str, str] = {}
    problems: list[str] = []
    for case in cases:
        identity, key, text, plain = case.values
        view = views[identity]
        if identity not in tokens:
            page = admin_client.get(f"/admin/{identity}/create")
            assert page.status_code == 200, (identity, page.status_code)
            tokens[identity] = form_token(page.text)
        before = _rows(view.model)
        r = admin_client.post(f"/admin/{identity}/create", data={key: text, "csrf_token": tokens[identity]},
                              follow_redirects=False)
        shown = FEEDBACK.findall(r.text)
        label = str(view._column_labels.get(key, key))
        limit = limits.model_limits(view.model)[key][1]
        expected = limit.problem(text, label)
        if not 400 <= r.status_code < 500:
            problems.append(f"{case.id}: status {r.status_code}")
        elif not any(CJK.search(m) for m in shown):
            problems.append(f"{case.id}: no Chinese message ({shown})")
        elif plain and expected and not any(expected in m for m in shown) and text not in ("abc", "1.5"):
            problems.append(f"{case.id}: expected {expected!r}, shown {shown}")
        leaked = leaks_in(r.text)
        if leaked:
            problems.append(f"{case.id}: leaks {leaked}")
        if _rows(view.model) != before:
            problems.append(f"{case.id}: a row was written")
    assert not problems, "\n".join(problems)


def _mapped_models() -> list[type]:
    import crm_admin.models  # noqa: F401  (every model registered)

    return sorted((m.class_ for m in db.Base.registry.mappers), key=lambda c: c.__name__)


@pytest.mark.parametrize("model", _mapped_models(), ids=lambda m: m.__name__)
def test_every_column_of_every_model_is_checked_before_a_flush(model: type) -> None:
    """Beyond the forms: any object handed to the ORM with a value that does not fit is refused."""
    for key, (_column, limit) in limits.model_limits(model).items():
        for what, text in bad_values(limit):
            value: Any = text
            if limit.kind == "decimal" and what not in ("not a number",):
                value = Decimal(text)
            elif limit.kind == "integer" and what not in ("not a number", "not whole"):
                value = int(text)
            obj = model()
            setattr(obj, key, value)
            with pytest.raises(UserError) as refused:
                limits.check_object(obj, changed_only=False)
            assert refused.value.field == key and CJK.search(refused.value.message), (model, key, what)


def test_limits_are_read_from_the_columns() -> None:
    from crm_admin.care.models import CarePlan
    from crm_admin.churn.models import ChurnRule
    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.models import Customer
    from crm_admin.opportunities.models import SalesOpportunity
    from crm_admin.orders.models import OrderItem

    def limit(model: type, key: str) -> limits.Limit:
        return limits.model_limits(model)[key][1]

    assert limit(OrderItem, "unit_price").describe() == "0 ~ 999,999,999,999.99,最多 2 位小数"
    assert limit(OrderItem, "quantity").describe() == "1 ~ 2,147,483,647"
    assert limit(ChurnRule, "threshold").describe() == "0 ~ 99,999,999.99,最多 2 位小数"
    assert limit(SalesOpportunity, "probability").describe() == "0 ~ 100"
    assert limit(CarePlan, "interval_days").describe() == "1 ~ 3,650"
    assert limit(Linkman, "birthday_md").describe() == "-32,768 ~ 32,767"
    assert limit(Customer, "name").length == 128
    assert limit(Customer, "remark").max_bytes == 65_535
    assert limit(OrderItem, "unit_price").problem(Decimal("999999999999.99"), "单价") is None
    assert limit(OrderItem, "unit_price").problem(Decimal("1000000000000"), "单价") == (
        "单价超出允许范围(0 ~ 999,999,999,999.99,最多 2 位小数)。")
    assert limit(OrderItem, "unit_price").problem("1.10", "单价") is None  # trailing zeros are fine
    assert "不能超过 128 个字符" in (limit(Customer, "name").problem("名" * 129, "客户名称") or "")
    assert limit(Customer, "name").problem("名" * 128, "客户名称") is None
    assert limit(Customer, "remark").problem("名" * 21_845, "备注") is None  # 65,535 bytes
    assert "过长" in (limit(Customer, "remark").problem("名" * 21_846, "备注") or "")



@pytest.mark.parametrize("query", [
    "price_min=1e400", "price_max=NaN", "price_min=-1e400&price_max=Infinity", "price_max=1e999999999",
    "price_min=1000000000000000", "price_min=abc",
])
def test_a_list_filter_beyond_the_column_finds_what_it_means(admin_client: Any, query: str) -> None:
    """A price filter no column value can reach: the same rows it means (none above the largest price),
    never a 500 (MariaDB cannot compare a column with NaN or 1e400)."""
    from crm_admin.products.models import Product

    with db.transaction() as s:
        s.add(Product(code="P1", name="工业相机", price=Decimal("999999999999.99"), stock=1))
    r = admin_client.get(f"/admin/product/list?{query}")
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert not leaks_in(r.text)
    expected = {"price_min=1e400": False, "price_min=1000000000000000": False}.get(query, True)
    assert ("工业相机" in r.text) is expected, query
