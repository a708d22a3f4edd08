"""Table-driven permission matrix through SQLAdmin's real URLs.

Every role (admin, manager, sales_lead, readonly) × every model view × action (list, view, create, edit,
delete, export) × own row / another manager's row / another department's row. The expected answer is
computed from the shipped policy file (not from the gate) and the world's ownership:

- no permission at all on the view → 403 on every URL;
- a row outside the data scope → 404 (before any per-action check), as if it did not exist;
- an action the role lacks → 403; otherwise 200.

Refused writes are sent for real and must change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import csrf_token
from tests.security.conftest import World, snapshot
from tests.security.test_leaks import IDENTITY

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = ("list", "view", "create", "edit", "delete", "export", "import", "transfer", "assign")
GLOBAL_VIEWS = {"product": "product", "churn-rule": "churn_rule", "sys-user": "user", "sys-dept": "dept",
                "sys-role": "role", "dict-item": "dict", "dict-type": "dict", "audit-log": "audit",
                "job-run": "job", "casbin-rule": "policy"}
RESOURCE_OF = {"customer": "customer", "linkman": "linkman", "follow_up": "follow_up",
               "opportunity": "opportunity", "customer_care": "customer_care", "care_plan": "care_plan",
               "order": "order", "order_item": "order", "churn_alert": "churn_alert", "transfer": "transfer"}
# who each role signs in as, and whose rows it may see (by the world's owners)
ACTORS = {
    "admin": ("admin", {"mgr_a", "mgr_b", "mgr_c"}),
    "manager": ("mgr_a", {"mgr_a"}),
    "sales_lead": ("lead", {"mgr_a", "mgr_b"}),  # 销售一部 and its sub-team; not 销售二部
    "readonly": ("ro", {"mgr_a", "mgr_b", "mgr_c"}),
}
ROWS = {"own": "mgr_a", "other_manager": "mgr_b", "other_dept": "mgr_c"}


def shipped_permissions(role: str) -> set[tuple[str, str]]:
    from crm_admin.core.permissions import RESOURCES

    perms: set[tuple[str, str]] = set()
    for raw in (ROOT / "policies" / "default.csv").read_text(encoding="utf-8").splitlines():
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) != 4 or parts[0] != "p" or parts[1] != f"role:{role}":
            continue
        resources = list(RESOURCES) if parts[2] == "*" else [parts[2]]
        actions = list(ACTIONS) if parts[3] == "*" else [parts[3]]
        perms |= {(r, a) for r in resources for a in actions}
    return perms


def _view(app: Any, identity: str) -> Any:
    return next(v for v in app.state.admin.views if getattr(v, "identity", None) == identity
                and hasattr(v, "model"))


def expected(perms: set[tuple[str, str]], view: Any, resource: str, action: str, visible: bool | None) -> int:
    accessible = any(res == resource for res, _ in perms)
    flag = {"view": "can_view_details", "create": "can_create", "edit": "can_edit", "delete": "can_delete",
            "export": "can_export", "list": None}[action]
    if not accessible or (flag and not getattr(view, flag)):
        return 403
    if visible is False:
        return 404
    if action == "list":
        return 200
    return 200 if (resource, "view" if action == "view" else action) in perms else 403


@pytest.mark.parametrize("role", list(ACTORS))
def test_permission_matrix(role: str, world: World, login_as: Any, app: Any) -> None:
    from tests.conftest import ADMIN_PASSWORD

    username, sees = ACTORS[role]
    client = login_as(username, ADMIN_PASSWORD) if username == "admin" else login_as(username)
    token = csrf_token(client)
    headers = {"X-CSRF-Token": token}
    perms = shipped_permissions(role)
    before = snapshot()
    failures: list[str] = []

    def check(label: str, got: int, want: int) -> None:
        if got != want:
            failures.append(f"{role} {label}: got {got}, expected {want}")

    for kind, identity in IDENTITY.items():
        view, resource = _view(app, identity), RESOURCE_OF[kind]
        check(f"{identity} list", client.get(f"/admin/{identity}/list").status_code,
              expected(perms, view, resource, "list", None))
        check(f"{identity} create", client.get(f"/admin/{identity}/create").status_code,
              expected(perms, view, resource, "create", None))
        export = client.get(f"/admin/{identity}/export/csv")
        check(f"{identity} export", export.status_code, expected(perms, view, resource, "export", None))
        for row_kind, owner in ROWS.items():
            pk = world.row(owner, kind)
            visible = owner in sees
            exported = export.status_code == 200
            if kind == "customer" and exported and (f"客户{owner}有限公司" in export.text) != visible:
                failures.append(f"{role} export {row_kind}: visibility wrong")
            check(f"{identity} view {row_kind}", client.get(f"/admin/{identity}/details/{pk}").status_code,
                  expected(perms, view, resource, "view", visible))
            want_edit = expected(perms, view, resource, "edit", visible)
            check(f"{identity} edit GET {row_kind}", client.get(f"/admin/{identity}/edit/{pk}").status_code,
                  want_edit)
            if want_edit != 200:  # refused writes are sent for real
                got = client.post(f"/admin/{identity}/edit/{pk}", data={"csrf_token": token, "name": "x"},
                                  headers=headers, follow_redirects=False).status_code
                check(f"{identity} edit POST {row_kind}", got, want_edit)
            want_delete = expected(perms, view, resource, "delete", visible)
            if want_delete != 200:
                got = client.request("DELETE", f"/admin/{identity}/delete?pks={pk}", headers=headers).status_code
                check(f"{identity} delete {row_kind}", got, want_delete)
    for identity, resource in GLOBAL_VIEWS.items():
        view = _view(app, identity)
        for action, url in (("list", f"/admin/{identity}/list"), ("create", f"/admin/{identity}/create"),
                            ("export", f"/admin/{identity}/export/csv")):
            check(f"{identity} {action}", client.get(url).status_code, expected(perms, view, resource, action, None))
    assert not failures, "\n".join(failures)
    assert snapshot() == before


def test_view_wider_than_edit(world: World, login_as: Any, app: Any) -> None:
    """A sales lead who sees the team's rows but edits and deletes only their own, on every scoped view:
    the team's rows open, but their edit and delete are refused and change nothing; their own are edited."""
    from sqlalchemy import select, update

    from crm_admin import db
    from crm_admin.accounts.models import CasbinRule
    from crm_admin.core.permissions import bump_policy_version
    from crm_admin.products.models import Product
    from tests.company import _make_rows

    with db.transaction() as session:
        session.execute(update(CasbinRule).where(
            CasbinRule.ptype == "p", CasbinRule.v0 == "role:sales_lead",
            CasbinRule.v2.in_(("edit", "delete"))).values(v3="self"))
        bump_policy_version(session.connection())
        from crm_admin.churn.models import ChurnRule

        product = session.execute(select(Product.id)).scalars().first()
        rule = session.execute(select(ChurnRule.id)).scalars().first()
        world.rows["lead"] = _make_rows(session, world.users["lead"], "lead", product, rule)
    lead = login_as("lead")
    token = csrf_token(lead)
    headers = {"X-CSRF-Token": token}
    perms = shipped_permissions("sales_lead")
    before = snapshot()
    failures: list[str] = []
    for kind, identity in IDENTITY.items():
        view, resource = _view(app, identity), RESOURCE_OF[kind]
        team, own = world.row("mgr_a", kind), world.row("lead", kind)
        if (resource, "view") in perms and view.can_view_details:
            got = lead.get(f"/admin/{identity}/details/{team}").status_code
            if got != 200:
                failures.append(f"{identity} view team row: {got}")
        if (resource, "edit") in perms and view.can_edit:
            for method in ("GET", "POST"):
                got = lead.request(method, f"/admin/{identity}/edit/{team}", headers=headers,
                                   data={"csrf_token": token, "name": "x"} if method == "POST" else None,
                                   follow_redirects=False).status_code
                if got not in (403, 404):
                    failures.append(f"{identity} edit {method} team row: {got}")
            got = lead.get(f"/admin/{identity}/edit/{own}").status_code
            if got != 200:
                failures.append(f"{identity} edit GET own row: {got}")
        if (resource, "delete") in perms and view.can_delete:
            got = lead.request("DELETE", f"/admin/{identity}/delete?pks={team}", headers=headers)
            if got.status_code == 200 and "error=" not in got.text:
                failures.append(f"{identity} delete team row: accepted")
    assert not failures, "\n".join(failures)
    assert snapshot() == before
