"""Form fuzzing: every create and edit form of every model view, and every custom POST route, gets bad
values — too long, out of range, the wrong type, NUL and control characters, 4-byte characters,
nonexistent and other managers' ids, duplicated fields, more than 1,000 fields. Never a server error,
never SQL or a traceback in the answer, and a refused request changes nothing.

The values are drawn from a seeded random generator (``CRM_FUZZ_SEED`` to vary it, ``CRM_FUZZ_ROUNDS``
for more values per field); the forms and routes are enumerated from the running app.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select
from starlette.routing import Route
from wtforms import (
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    FloatField,
    IntegerField,
    SelectField,
)

from crm_admin import db
from crm_admin.core.routes import declared
from tests.company import World
from tests.conftest import ADMIN_PASSWORD, csrf_token

SEED = int(os.environ.get("CRM_FUZZ_SEED", "20261203"))
ROUNDS = int(os.environ.get("CRM_FUZZ_ROUNDS", "3"))
LEAKS = ("Traceback", "[SQL:", "INSERT INTO", "UPDATE ", "DELETE FROM", "pymysql.", "sqlite3.", "sqlalchemy.",
         "(Background on this error", "IntegrityError", "OperationalError", "DataError", "ProgrammingError")
TEMPLATES = Path(__file__).resolve().parents[2] / "crm_admin"
KIND_OF_TABLE = {"customer": "customer", "linkman": "linkman", "follow_up": "follow_up",
                 "sales_opportunity": "opportunity", "customer_care": "customer_care", "care_plan": "care_plan",
                 "customer_order": "order", "order_item": "order_item", "churn_alert": "churn_alert",
                 "customer_transfer": "transfer"}


def bad_values(world: World) -> list[str]:
    other = world.row("mgr_b", "customer")
    return [
        "x" * 5000,  # far longer than any column
        "测" * 300,  # long in characters, longer in bytes
        "99999999999999999999999", "-99999999999999999999", "1e309", "NaN", "-0", "0x1F", "1,000", "１２",
        "", " ", "\x00", "a\x00b", "\x01\x02\x1b[31m", "\u202e\u200b", "😀🀄𝕏", "𠀀𪚥",  # 4-byte characters
        "<script>alert(1)</script>", "' OR 1=1 --", "'; DROP TABLE customer; --", "%", "_", "\\",
        "2026-02-30", "9999-12-31T23:59", "0000-00-00", "13/45/2026", "2026-12-03T25:61",
        "true", "on", "None", "null", "[]", "{}", "999999", "-1", "0", str(other), "2147483648",
    ]


def _sample(rng: random.Random, values: list[str], count: int) -> list[str]:
    return rng.sample(values, min(count, len(values)))


def _plausible(field: Any, world: World) -> str:
    """A value the field would accept, so that a mutated post gets past the other fields."""
    if isinstance(field, SelectField):
        choices = [c[0] for c in (field.choices or []) if str(c[0])]
        return str(choices[0]) if choices else ""
    if isinstance(field, BooleanField):
        return "y"
    if isinstance(field, IntegerField):
        return "1"
    if isinstance(field, DecimalField | FloatField):
        return "1.00"
    if isinstance(field, DateTimeField):
        return dt.datetime.now().strftime("%Y-%m-%dT%H:%M")
    if isinstance(field, DateField):
        return dt.date.today().isoformat()
    if "Ajax" in type(field).__name__ or "QuerySelect" in type(field).__name__:
        return _own_row(field.name, world)
    return "模糊测试"


def _own_row(name: str, world: World) -> str:
    kind = {"customer": "customer", "linkman": "linkman", "order": "order", "opportunity": "opportunity"}.get(name)
    return str(world.row("mgr_a", kind)) if kind else "1"


def _form_fields(view: Any) -> list[Any]:
    async def scaffold() -> Any:
        return await view.scaffold_form()

    form_class = anyio.run(scaffold)
    return [f for f in form_class() if f.name not in ("csrf_token", "version")]


def _leak(text: str) -> str | None:
    return next((marker for marker in LEAKS if marker in text), None)


def _counts(tables: list[str]) -> dict[str, int]:
    from crm_admin.db import Base

    with db.session_factory()() as session:
        return {name: int(session.execute(select(func.count()).select_from(Base.metadata.tables[name])).scalar_one())
                for name in tables}


def _check(failures: list[str], label: str, response: Any) -> None:
    if response.status_code >= 500:
        failures.append(f"{label}: {response.status_code}")
    leak = _leak(response.text)
    if leak:
        failures.append(f"{label}: the answer shows {leak!r}")


@pytest.fixture
def fuzz_clients(world: World, login_as: Any) -> dict[str, Any]:
    return {"admin": login_as("admin", ADMIN_PASSWORD), "manager": login_as("mgr_a")}


def test_model_forms_survive_bad_values(app: Any, world: World, fuzz_clients: dict[str, Any]) -> None:
    import crm_admin.models  # noqa: F401

    rng = random.Random(SEED)
    values = bad_values(world)
    failures: list[str] = []
    # a view with a form page of its own (the order form) only redirects from SQLAdmin's create/edit URLs:
    # its form is a custom POST route, fuzzed by test_custom_posts_survive_bad_values
    views = [v for v in app.state.admin.views if hasattr(v, "model") and (v.can_create or v.can_edit)
             and not getattr(v, "own_form_routes", None)]
    tables = sorted({v.model.__tablename__ for v in views})
    before = _counts(tables)
    accepted: set[str] = set()
    for view in views:
        fields = _form_fields(view)
        base = {f.name: _plausible(f, world) for f in fields}
        kind = KIND_OF_TABLE.get(view.model.__tablename__)
        targets = []
        if view.can_create:
            targets.append(f"/admin/{view.identity}/create")
        if view.can_edit and kind:
            targets.append(f"/admin/{view.identity}/edit/{world.row('mgr_a', kind)}")
        for role, client in fuzz_clients.items():
            token = csrf_token(client)
            for url in targets:
                for field in fields:
                    for value in _sample(rng, values, ROUNDS):
                        data = {**base, field.name: value, "csrf_token": token}
                        response = client.post(url, data=data, follow_redirects=False)
                        _check(failures, f"{role} {url} {field.name}={value[:30]!r}", response)
                        if response.status_code in (302, 303) and url.endswith("/create"):
                            accepted.add(view.model.__tablename__)
                # every field bad at once, a field given twice, and more fields than any form has
                junk = {f.name: rng.choice(values) for f in fields}
                pairs = [*junk.items(), *((f.name, rng.choice(values)) for f in fields), ("csrf_token", token)]
                _check(failures, f"{role} {url} all bad, duplicated", client.post(url, data=pairs,
                                                                                  follow_redirects=False))
                crowd = "&".join([f"csrf_token={token}", *(f"junk{i}=1" for i in range(1001))])
                response = client.post(url, content=crowd, follow_redirects=False,
                                       headers={"content-type": "application/x-www-form-urlencoded"})
                _check(failures, f"{role} {url} 1,001 fields", response)
                if response.status_code not in (400, 403):  # refused; 403 when the form is not the role's
                    failures.append(f"{role} {url} 1,001 fields: {response.status_code}, not 400")
    after = _counts(tables)
    for table in tables:
        if table not in accepted and after[table] != before[table]:
            failures.append(f"{table}: {before[table]} → {after[table]} rows although every create was refused")
    assert not failures, f"{len(failures)} problems (seed {SEED}):\n" + "\n".join(failures[:60])


def _form_field_names() -> set[str]:
    """Every field name any of our forms posts (the custom routes read theirs by these names)."""
    names: set[str] = set()
    for path in TEMPLATES.rglob("*.html"):
        names |= set(re.findall(r'name="([a-z_][a-z0-9_]*)"', path.read_text(encoding="utf-8")))
    return names - {"csrf_token"}


def _custom_posts(app: Any, world: World) -> Iterator[str]:
    from tests.security.test_routes import SAMPLES, _fill

    for route in app.state.admin.admin.router.routes:
        if not isinstance(route, Route) or "POST" not in (route.methods or set()):
            continue
        rule = declared(route.endpoint)
        if rule is None:
            continue
        values = dict(SAMPLES)
        if rule.row is not None:
            model, param = rule.row
            values[param] = str(world.row("mgr_a", "customer") if model.__name__ == "Customer"
                                else world.row("mgr_a", "churn_alert") if model.__name__ == "ChurnAlert"
                                else world.row("mgr_a", "order") if model.__name__ == "CustomerOrder"
                                else world.users["mgr_b"])
        yield _fill(route.path, values)


def test_custom_posts_survive_bad_values(app: Any, world: World, fuzz_clients: dict[str, Any]) -> None:
    rng = random.Random(SEED + 1)
    values = bad_values(world)
    names = sorted(_form_field_names())
    failures: list[str] = []
    urls = sorted(set(_custom_posts(app, world)))
    assert len(urls) >= 15
    for role, client in fuzz_clients.items():
        token = csrf_token(client)
        for url in urls:
            if url.endswith(("/logout",)):
                continue
            for _ in range(ROUNDS * 2):
                data = [("csrf_token", token), *((name, rng.choice(values)) for name in names)]
                data += [(name, rng.choice(values)) for name in rng.sample(names, 5)]  # duplicated fields
                response = client.post(url, data=data, follow_redirects=False)
                _check(failures, f"{role} POST {url}", response)
            crowd = "&".join([f"csrf_token={token}", *(f"junk{i}=1" for i in range(1001))])
            response = client.post(url, content=crowd, follow_redirects=False,
                                   headers={"content-type": "application/x-www-form-urlencoded"})
            _check(failures, f"{role} POST {url} 1,001 fields", response)
    assert not failures, f"{len(failures)} problems (seed {SEED}):\n" + "\n".join(failures[:60])
