"""Every route of ``/api/v1``, enumerated from the mounted application (not from a list written by
hand), is refused alike without a usable token: none, malformed, unknown, expired, revoked, a disabled
user's, or only a signed-in browser session → 401; a token whose user lacks the route's permission →
403; another manager's row → 404 exactly as a missing one; and nothing in the database changes.

The permission and the kind of row of each route are read from the OpenAPI document's
``x-permission`` / ``x-row-kind`` (written where the route is made), so a new route is covered
without anyone remembering it; a route without them fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Mount

from tests.api.conftest import bearer, disable_user, expire_token, revoke_token
from tests.company import World
from tests.company import snapshot as _snapshot

# bookkeeping of the calls themselves: each call counts against its token's rate, a token's last use
BOOKKEEPING = {"login_throttle", "api_token"}


def snapshot() -> dict[str, Any]:
    return {table: value for table, value in _snapshot().items() if table not in BOOKKEEPING}


SAMPLES = {"pool_id": "987654", "type_code": "industry"}


@dataclass
class ApiProbe:
    method: str
    path: str  # the template, e.g. /customers/{id}
    permission: str  # "resource:action" or "signed-in"
    kind: str  # the kind of row {id} names ("" for none)

    def url(self, row_id: int | str = 987654) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "id":
                return str(row_id)
            assert name in SAMPLES, f"no sample value for {{{name}}} of {self.path}: add one to SAMPLES"
            return SAMPLES[name]

        return "/api/v1" + re.sub(r"{(\w+)}", one, self.path)


def api_routes(app: Any) -> Iterator[ApiProbe]:
    mounts = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"]
    assert len(mounts) == 1, "the API is mounted at /api/v1"
    for route in mounts[0].app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        extra = route.openapi_extra or {}
        assert "x-permission" in extra, f"{route.path}: declare its permission (routes.permission_extra)"
        for method in sorted(route.methods - {"HEAD"}):
            if "{" in route.path and "{id}" in route.path:
                assert extra.get("x-row-kind") is not None or route.path.startswith("/products"), route.path
            yield ApiProbe(method, route.path, extra["x-permission"], extra.get("x-row-kind", ""))


def _call(client: Any, probe: ApiProbe, headers: dict[str, str], row_id: int | str = 987654) -> Any:
    kwargs: dict[str, Any] = {"headers": {**headers, "If-Match": "*"}}
    if probe.method in ("POST", "PATCH", "PUT"):
        kwargs["json"] = {}
    return client.request(probe.method, probe.url(row_id), **kwargs)


def test_every_api_route_refuses_callers_without_a_usable_token(
    app: Any, world: World, make_user: Any, make_token: Any, login_as: Any, client: Any,
) -> None:
    probes = list(api_routes(app))
    assert len(probes) >= 25, [p.path for p in probes]
    make_user("nobody", [])
    expired = make_token("mgr_a")
    expire_token(expired)
    revoked = make_token("mgr_a")
    revoke_token(revoked)
    make_user("gone", ["manager"])
    disabled = make_token("gone")
    disable_user("gone")
    browser = login_as("mgr_a")  # a signed-in page session, with its cookie
    refusals = {
        "none": {},
        "malformed": {"Authorization": "Bearer"},
        "other scheme": {"Authorization": "Basic bWdyX2E6UGFzc3cwcmQheA=="},
        "unknown": bearer("crm_" + "x" * 43),
        "not ours": bearer("not-a-token"),
        "expired": bearer(expired),
        "revoked": bearer(revoked),
        "disabled user": bearer(disabled),
    }
    before = snapshot()
    failures = []
    for probe in probes:
        for label, headers in refusals.items():
            r = _call(client, probe, headers)
            if r.status_code != 401 or r.headers.get("content-type") != "application/problem+json":
                failures.append(f"{probe.method} {probe.path} [{label}] → {r.status_code}")
        r = _call(browser, probe, {"X-CSRF-Token": "irrelevant"})
        if r.status_code != 401:
            failures.append(f"{probe.method} {probe.path} [page session] → {r.status_code}")
    assert not failures, failures
    assert snapshot() == before


def test_every_api_route_needs_its_permission(app: Any, world: World, make_user: Any, make_token: Any,
                                              client: Any) -> None:
    make_user("nobody", [])
    nobody = bearer(make_token("nobody"))
    before = snapshot()
    failures = []
    checked = 0
    for probe in api_routes(app):
        r = _call(client, probe, nobody, world.row("mgr_a", probe.kind) if probe.kind in world.rows["mgr_a"] else 1)
        expected = 403 if probe.permission != "signed-in" else None
        if expected is None:
            if r.status_code in (401, 403):
                failures.append(f"{probe.method} {probe.path} [signed-in route] → {r.status_code}")
            continue
        checked += 1
        if r.status_code != 403:
            failures.append(f"{probe.method} {probe.path} [no permission] → {r.status_code}")
    assert checked >= 20 and not failures, failures
    assert snapshot() == before


def test_another_managers_row_answers_404(app: Any, world: World, make_token: Any, client: Any) -> None:
    from crm_admin.core.principal import Principal  # noqa: F401  (the permission set read below)

    mine = make_token("mgr_a")
    permissions = set(client.get("/api/v1/me", headers=bearer(mine)).json()["permissions"])
    before = snapshot()
    failures = []
    checked = 0
    for probe in api_routes(app):
        if probe.kind not in world.rows["mgr_c"] or probe.permission not in permissions:
            continue
        theirs = _call(client, probe, bearer(mine), world.row("mgr_c", probe.kind))
        missing = _call(client, probe, bearer(mine), 987654)
        checked += 1
        if theirs.status_code != 404 or theirs.json() != {**missing.json(), "instance": theirs.json()["instance"]}:
            failures.append(f"{probe.method} {probe.path} → {theirs.status_code} {theirs.text[:120]}")
    assert checked >= 10 and not failures, (checked, failures)
    assert snapshot() == before
