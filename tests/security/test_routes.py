"""Every route of the running app, enumerated from its router (not from a list written by hand), is
checked for every role: anonymous → sign-in; without the route's permission → 403; another manager's row
→ 404; a state-changing method without a CSRF token → 403; and nothing in the database changed.

A route added later is covered without anyone remembering it: a custom route must be declared with
``crm_admin.core.routes.route`` (its permission, and the row its path names), and a path parameter this
test has no sample value for fails the test until one is added here.

The REST API (``/api/v1``, mounted beside the admin site, bearer tokens instead of the session) has its
own enumeration of every route: ``tests/api/test_routes.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.routing import Mount, Route

from crm_admin.core.routes import declared
from tests.company import World, snapshot
from tests.conftest import ADMIN_PASSWORD, csrf_token, login

# SQLAdmin's generic routes of every model view, and the permission action each needs
MODEL_ROUTES = {"list": "list", "details": "view", "create": "create", "edit": "edit", "delete": "delete",
                "export": "export", "import": "import", "ajax_lookup": None,
                "file_download": "view", "file_preview": "view"}
PUBLIC = {"login", "logout", "statics", "crm-static", "index"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# the world's kind of row behind each scoped model view
KIND_OF_TABLE = {"customer": "customer", "linkman": "linkman", "follow_up": "follow_up",
                 "sales_opportunity": "opportunity", "customer_care": "customer_care", "care_plan": "care_plan",
                 "customer_order": "order", "order_item": "order_item", "churn_alert": "churn_alert",
                 "customer_transfer": "transfer"}
KIND_OF_MODEL = {"Customer": "customer", "ChurnAlert": "churn_alert", "CustomerOrder": "order", "Linkman": "linkman"}
# sample values of the custom routes' other path parameters
SAMPLES = {"what": "follow-up", "kind": "customer", "fmt": "xlsx", "job_id": "no-such-job", "qid": "987654",
           "export_type": "csv", "column_name": "name", "pool_id": "987654", "pool_customer_id": "987654",
           "token_id": "987654"}
ROLES = {"admin": "admin", "manager": "mgr_a", "sales_lead": "lead", "readonly": "ro", "nobody": "nobody"}


@dataclass
class Probe:
    label: str
    method: str
    url: str
    # None: a model view action with no permission of its own (ajax look-up); "signed-in": any user;
    # "never": a model view action the view offers to nobody
    permission: tuple[tuple[str, str], ...] | str | None
    other_row_url: str | None  # the same URL naming another manager's row (expects 404)
    custom: bool = False  # a custom page (SQLAdmin's own pages are opened for real by the permission matrix)


def _fill(path: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AssertionError(f"no sample value for path parameter {{{name}}} of {path}: add one to SAMPLES")
        return values[name]

    return "/admin" + re.sub(r"{(\w+)(?::\w+)?}", one, path)


def probes(app: Any, world: World) -> Iterator[Probe]:
    admin = app.state.admin
    views = [v for v in admin.views if hasattr(v, "model")]
    for route in admin.admin.router.routes:
        if isinstance(route, Mount):
            assert route.name in PUBLIC, f"unexpected mounted app {route.path}"
            continue
        assert isinstance(route, Route), route
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        if route.name in PUBLIC:
            continue
        if route.name in MODEL_ROUTES:
            for view in views:
                action = MODEL_ROUTES[route.name]
                kind = KIND_OF_TABLE.get(view.model.__tablename__)
                own = str(world.row("mgr_a", kind)) if kind else _some_row(view.model)
                values = {**SAMPLES, "identity": view.identity, "pk": own}
                url = _fill(route.path, values)
                other = _fill(route.path, {**values, "pk": str(world.row("mgr_b", kind))}) if kind else None
                if route.name == "delete":
                    url, other = f"{url}?pks={own}", (f"{url}?pks={world.row('mgr_b', kind)}" if kind else None)
                if route.name == "ajax_lookup":
                    url = f"{url}?name=customer&term=a"
                flag = {"create": "can_create", "edit": "can_edit", "delete": "can_delete",
                        "export": "can_export", "details": "can_view_details"}.get(route.name)
                permission: Any = ((view.resource, action),) if action else None
                if flag and not getattr(view, flag, True):
                    permission = "never"  # the view does not offer it to anyone
                for method in methods:
                    yield Probe(f"{route.name} {view.identity}", method, url, permission,
                                other if "{pk" in route.path or route.name == "delete" else None)
            continue
        rule = declared(route.endpoint)
        assert rule is not None, f"route {route.path} ({route.name}) has no declared permission: use @route"
        values = dict(SAMPLES)
        other = None
        if rule.row is not None:
            model, param = rule.row
            kind = KIND_OF_MODEL.get(model.__name__)
            if kind is None:  # an unscoped row (a user): its own id
                values[param] = str(world.users["mgr_a"])
            else:
                values[param] = str(world.row("mgr_a", kind))
                other = _fill(route.path, {**values, param: str(world.row("mgr_b", kind))})
        url = _fill(route.path, values)
        for method in methods:
            need = rule.need(method)
            permission = need if isinstance(need, str) else ((need,) if isinstance(need[0], str) else need)
            yield Probe(f"{route.name}", method, url, permission, other, custom=True)  # type: ignore[arg-type]


def _some_row(model: Any) -> str:
    """An existing row of an unscoped model (ids are not reused on MariaDB, so "1" may be long gone)."""
    from sqlalchemy import func, select

    from crm_admin import db

    with db.session_factory()() as session:
        found = session.execute(select(func.min(model.__table__.primary_key.columns[0]))).scalar()
    return str(found) if found is not None else "1"


def _allowed(principal: Any, permission: Any) -> bool:
    if permission == "never":
        return False
    if permission == "signed-in" or permission is None:
        return True
    return any(principal.can(resource, action) for resource, action in permission)


def _is_sign_in(response: Any) -> bool:
    return response.status_code in (302, 303, 307) and "/admin/login" in response.headers.get("location", "")


@pytest.fixture
def clients(world: World, make_user: Any, login_as: Any, make_client: Any) -> dict[str, Any]:
    make_user("nobody", [])  # signed in, no role at all
    out = {role: login_as(user) for role, user in ROLES.items() if role != "admin"}
    out["admin"] = login_as("admin", ADMIN_PASSWORD)
    return out


def _principals(clients: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import select

    from crm_admin import db
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    with db.session_factory()() as session:
        return {role: load_principal(session.connection(), session.execute(
            select(SysUser).where(SysUser.username == user)).scalar_one()) for role, user in ROLES.items()}


def test_every_route_is_declared_and_guarded(app: Any, world: World, clients: dict[str, Any],
                                             make_client: Any) -> None:
    all_probes = list(probes(app, world))
    assert len(all_probes) > 200  # every model view's routes and every custom page
    principals = _principals(clients)
    before = snapshot()
    failures: list[str] = []

    anonymous = make_client()
    anonymous.get("/admin/login")  # an anonymous session with a CSRF token, as a browser has
    anon_token = csrf_token(anonymous) or _login_page_token(anonymous)
    for probe in all_probes:
        data = {"csrf_token": anon_token} if probe.method in STATE_CHANGING else None
        response = anonymous.request(probe.method, probe.url, data=data, follow_redirects=False)
        if not _is_sign_in(response):
            failures.append(f"anonymous {probe.method} {probe.url}: {response.status_code}, not the sign-in page")

    for role, client in clients.items():
        principal = principals[role]
        token = csrf_token(client)
        for probe in all_probes:
            if probe.method in STATE_CHANGING and role in ("manager", "nobody"):
                # without a token: refused before anything runs, whoever asks (the check does not depend
                # on the role; each refusal is audited, so two roles stand for all)
                response = client.request(probe.method, probe.url, follow_redirects=False)
                if response.status_code != 403:
                    failures.append(f"{role} {probe.method} {probe.url} without CSRF token: {response.status_code}")
            if _allowed(principal, probe.permission):
                if probe.method == "GET" and probe.custom:
                    response = client.get(probe.url, follow_redirects=False)
                    if response.status_code >= 500 or response.status_code == 401:
                        failures.append(f"{role} GET {probe.url}: {response.status_code}")
                if probe.other_row_url and role == "manager":
                    response = _send(client, probe.method, probe.other_row_url, token)
                    if response.status_code != 404:
                        failures.append(f"manager {probe.method} {probe.other_row_url} (another manager's row): "
                                        f"{response.status_code}, not 404")
            else:
                # refused writes are sent for real, with a valid token
                response = _send(client, probe.method, probe.url, token)
                if response.status_code != 403:
                    failures.append(f"{role} {probe.method} {probe.url} without {probe.permission}: "
                                    f"{response.status_code}, not 403")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:60])
    assert snapshot() == before


def _send(client: Any, method: str, url: str, token: str) -> Any:
    """A request with a valid CSRF token (a form field, or the header for DELETE, as the pages send it)."""
    return client.request(method, url, follow_redirects=False,
                          data={"csrf_token": token} if method in STATE_CHANGING else None,
                          headers={"X-CSRF-Token": token} if method == "DELETE" else None)


def _login_page_token(client: Any) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', client.get("/admin/login").text)
    return match.group(1) if match else ""


def test_a_custom_route_without_a_declaration_is_caught(world: World) -> None:
    """The enumeration itself fails on an undeclared route (so the check above cannot silently skip one)."""
    from types import SimpleNamespace

    async def undeclared(request: Any) -> Any:  # pragma: no cover - never served
        return None

    router = SimpleNamespace(routes=[Route("/sneaky", endpoint=undeclared, name="view-sneaky")])
    fake = SimpleNamespace(state=SimpleNamespace(admin=SimpleNamespace(views=[], admin=SimpleNamespace(router=router))))
    with pytest.raises(AssertionError, match="no declared permission"):
        list(probes(fake, world))


def test_login_and_logout_work_for_a_user(make_user: Any, make_client: Any) -> None:
    make_user("routes_user")
    client = make_client()
    assert login(client, "routes_user", "Passw0rd!x").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_customer_lifecycle_routes_are_probed(app: Any, world: World) -> None:
    """Pools, reclaim, the recycle bin, revealing a value and a data subject's requests (issue 16) are
    among the enumerated routes, each with its permission; those naming a customer or a contact are also
    probed with another manager's row."""
    found = {p.label: p for p in probes(app, world) if p.custom}
    expected = {
        "view-pools": ("pool", "list"), "view-pool-customers": ("pool", "list"), "view-pool-claim": ("pool", "claim"),
        "view-pool-assign": ("pool", "assign"), "view-pool-customer": ("pool", "view"),
        "view-pool-return": ("pool", "return"), "view-pool-new": ("pool", "create"),
        "view-pool-settings": ("pool", "edit"), "view-reclaim-preview": ("reclaim_rule", "view"),
        "view-reclaim-upcoming": ("customer", "list"), "view-recycle-bin": ("recycle_bin", "list"),
        "view-recycle-bin-restore": ("recycle_bin", "restore"), "view-recycle-bin-purge": ("recycle_bin", "purge"),
        "view-customer-reveal": ("sensitive_data", "view"), "view-linkman-reveal": ("sensitive_data", "view"),
        "view-linkman-subject_export": ("personal_data", "export"),
        "view-linkman-subject_erase": ("personal_data", "delete"),
    }
    missing = sorted(set(expected) - set(found))
    assert not missing, missing
    for label, permission in expected.items():
        assert permission in found[label].permission, (label, found[label].permission)
    for label in ("view-customer-reveal", "view-linkman-reveal", "view-linkman-subject_request",
                  "view-linkman-subject_export", "view-linkman-subject_erase"):
        assert found[label].other_row_url, label  # another manager's row answers 404
