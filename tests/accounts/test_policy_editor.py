"""The roles & policies editor: grid, advanced CSV editor with diff preview, export/import, validation,
no privilege escalation, last-admin guard, audit with before/after, effect in every process."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from tests.conftest import csrf_token


def _post(client: Any, url: str, data: Any, files: Any = None) -> Any:
    token = csrf_token(client)
    if not isinstance(data, dict):  # a list of pairs (repeated checkbox names)
        grouped: dict[str, list[str]] = {}
        for key, value in data:
            grouped.setdefault(key, []).append(value)
        data = {k: v if len(v) > 1 or k == "perm" else v[0] for k, v in grouped.items()}
    data = {**data, "csrf_token": token}
    return client.post(url, data=data, files=files, headers={"X-CSRF-Token": token}, follow_redirects=False)


def _lines() -> set[tuple[str, ...]]:
    from crm_admin.accounts.policy import current_lines

    with db.session_factory()() as session:
        return set(current_lines(session))


def _grid_form(lines: set[tuple[str, ...]]) -> list[tuple[str, str]]:
    """What the grid page submits for the given policy (every non-wildcard p line as a checkbox)."""
    return [("perm", f"{line[1].removeprefix('role:')}|{line[2]}|{line[3]}")
            for line in sorted(lines) if line[0] == "p" and "*" not in line[2:]]


def test_grid_grant_takes_effect_and_is_audited(admin_client: Any, make_user: Any, login_as: Any) -> None:
    from crm_admin.audit.models import AuditLog

    make_user("m1", ["manager"])
    m1 = login_as("m1")
    assert m1.get("/admin/product/create").status_code == 403
    page = admin_client.get("/admin/policy")
    assert page.status_code == 200 and "客户经理" in page.text and "新增" in page.text
    before = _lines()
    form = [*_grid_form(before), ("perm", "manager|product|create")]
    r = _post(admin_client, "/admin/policy", form)
    assert r.status_code == 200, r.text[-1500:]
    assert "已保存" in r.text
    assert _lines() == before | {("p", "role:manager", "product", "create", "self")}
    assert m1.get("/admin/product/create").status_code == 200  # same session, next request
    with db.session_factory()() as session:
        row = session.execute(select(AuditLog).where(AuditLog.action == "policy_change")
                              .order_by(AuditLog.id.desc())).scalars().first()
    assert row is not None
    assert row.changes["added"] == ["p, role:manager, product, create, self"]
    assert "p, role:manager, product, create, self" not in row.changes["before"]
    assert "p, role:manager, product, create, self" in row.changes["after"]


def test_grid_revoke_and_scope_change(admin_client: Any, make_user: Any, login_as: Any) -> None:
    make_user("m2", ["manager"])
    m2 = login_as("m2")
    assert m2.get("/admin/customer/export/csv").status_code == 200
    before = _lines()
    form = [p for p in _grid_form(before) if p[1] != "manager|customer|export"]
    form.append(("scope:manager", "dept"))
    r = _post(admin_client, "/admin/policy", form)
    assert r.status_code == 200
    assert ("p", "role:manager", "customer", "export") not in {line[:4] for line in _lines()}
    assert m2.get("/admin/customer/export/csv").status_code == 403
    from crm_admin.accounts.models import SysRole

    with db.session_factory()() as session:
        assert session.execute(select(SysRole.data_scope).where(SysRole.code == "manager")).scalar() == "dept"


@pytest.mark.parametrize("bad", [
    'p, role:manager, customer, "list"',
    "p, role:manager, customer, list, extra",
    "p, role:manager, custo mer, list",
    "p, role:manager, nosuch, list",
    "p, role:manager, customer, fly",
    "p, role:nosuch, customer, list",
    "x, role:manager, customer, list",
    "g, u:99999, role:manager",
    "g, u:1, role:nosuch",
    "p, role:manager, customer,\tlist",
])
def test_advanced_editor_refuses_invalid_values(admin_client: Any, bad: str) -> None:
    before = _lines()
    text = admin_client.get("/admin/policy/advanced").text
    assert "p, role:admin, *, *, all" in text
    from crm_admin.accounts.policy import format_line

    current = "\n".join(format_line(x) for x in sorted(before))
    r = _post(admin_client, "/admin/policy/advanced", {"text": current + "\n" + bad, "op": "apply"})
    assert r.status_code == 400, (bad, r.status_code)
    assert "alert-danger" in r.text
    assert _lines() == before


def test_advanced_editor_previews_then_applies(admin_client: Any) -> None:
    from crm_admin.accounts.policy import format_line

    before = _lines()
    text = "\n".join(format_line(x) for x in sorted(before) if x != ("p", "role:readonly", "product", "view", "all"))
    text += "\np, role:readonly, job, list"
    r = _post(admin_client, "/admin/policy/advanced", {"text": text, "op": "preview"})
    assert r.status_code == 200
    assert "+ p, role:readonly, job, list, all" in r.text and "- p, role:readonly, product, view, all" in r.text
    assert _lines() == before  # preview saves nothing
    r = _post(admin_client, "/admin/policy/advanced", {"text": text, "op": "apply"})
    assert r.status_code == 200 and "已保存" in r.text
    assert _lines() == (before - {("p", "role:readonly", "product", "view", "all")}) | {("p", "role:readonly", "job", "list", "all")}


def test_export_and_import_round_trip(admin_client: Any) -> None:
    r = admin_client.get("/admin/policy/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    body = r.content.decode("utf-8-sig")
    assert "p, role:admin, *, *, all" in body
    changed = body + "p, role:readonly, dict, list\n"
    r = _post(admin_client, "/admin/policy/advanced", {"text": "", "op": "preview"},
              files={"file": ("policy.csv", changed.encode("utf-8"), "text/csv")})
    assert r.status_code == 200
    assert "+ p, role:readonly, dict, list, all" in r.text


def test_last_admin_and_admin_wildcard_cannot_be_removed(admin_client: Any) -> None:
    from crm_admin.accounts.policy import format_line

    before = _lines()
    without_admin_user = [x for x in before if not (x[0] == "g" and x[2] == "role:admin")]
    without_wildcard = [x for x in before if x != ("p", "role:admin", "*", "*", "all")]
    for lines in (without_admin_user, without_wildcard):
        r = _post(admin_client, "/admin/policy/advanced",
                  {"text": "\n".join(format_line(x) for x in lines), "op": "apply"})
        assert r.status_code == 400
    assert _lines() == before


def test_editor_cannot_grant_what_they_do_not_hold(admin_client: Any, make_user: Any, login_as: Any) -> None:
    from crm_admin.accounts.models import CasbinRule, SysRole
    from crm_admin.accounts.policy import format_line
    from crm_admin.core.permissions import bump_policy_version

    with db.transaction() as session:
        session.add(SysRole(code="policy_editor", name="权限管理员", data_scope="self"))
        for res, act in (("policy", "list"), ("policy", "edit"), ("customer", "list")):
            session.add(CasbinRule(ptype="p", v0="role:policy_editor", v1=res, v2=act))
        session.flush()
        bump_policy_version(session.connection())
    editor = make_user("pe", ["policy_editor"])
    pe = login_as("pe")
    before = _lines()
    base = "\n".join(format_line(x) for x in sorted(before))
    attempts = [
        base + "\np, role:policy_editor, customer, delete",   # grant self a right not held
        base + "\np, role:manager, user, edit",               # grant others a right not held
        base + f"\ng, u:{editor.id}, role:admin",             # join a role holding more
        base + "\np, role:policy_editor, *, *",
    ]
    for text in attempts:
        r = _post(pe, "/admin/policy/advanced", {"text": text, "op": "apply"})
        assert r.status_code == 403, (text[-60:], r.status_code)
    assert _lines() == before
    # a right they hold, but with the read-only role's default scope (all data): wider than theirs
    r = _post(pe, "/admin/policy/advanced", {"text": base + "\np, role:readonly, policy, list", "op": "apply"})
    assert r.status_code == 403 and "数据范围" in r.text
    # within what they hold, scope included, it works
    r = _post(pe, "/admin/policy/advanced", {"text": base + "\np, role:readonly, policy, list, self", "op": "apply"})
    assert r.status_code == 200, r.text[-1000:]
    # and a grid save cannot widen a role's scope beyond theirs
    form = [*_grid_form(_lines()), ("scope:manager", "all")]
    assert _post(pe, "/admin/policy", form).status_code == 403


def test_policy_pages_need_permission(make_user: Any, login_as: Any) -> None:
    make_user("m3", ["manager"])
    m3 = login_as("m3")
    assert m3.get("/admin/policy").status_code == 403
    assert m3.get("/admin/policy/export").status_code == 403
    assert _post(m3, "/admin/policy/advanced", {"text": "", "op": "apply"}).status_code == 403


def test_change_visible_to_a_second_process(make_user: Any) -> None:
    """A second gate on its own engine (another worker) sees the change on its next check."""
    from crm_admin.accounts.policy import apply_policy, current_lines
    from crm_admin.core.permissions import Gate
    from crm_admin.core.principal import Principal
    from tests.conftest import TEST_DB_URL

    user = make_user("m4", ["manager"])
    other_engine = db.make_engine(TEST_DB_URL)
    other_gate = Gate()
    try:
        with other_engine.connect() as conn:
            assert ("product", "create") not in other_gate.grants(conn, user.id).permissions
        admin = Principal(id=1, username="admin", real_name="", dept_id=None, roles=frozenset({"admin"}),
                          scope="all", permissions=frozenset(_all_perms()), visible_user_ids=None)
        with db.transaction() as session:
            after = [*current_lines(session), ("p", "role:manager", "product", "create")]
            apply_policy(session, admin, after)
        with other_engine.connect() as conn:
            assert ("product", "create") in other_gate.grants(conn, user.id).permissions
    finally:
        other_engine.dispose()


def _all_perms() -> set[tuple[str, str]]:
    from crm_admin.core.permissions import ACTIONS, RESOURCES

    return {(r, a) for r in RESOURCES for a in ACTIONS}


def test_change_visible_to_a_subprocess(make_user: Any) -> None:
    import subprocess
    import sys

    from crm_admin.accounts.policy import apply_policy, current_lines
    from crm_admin.core.principal import Principal
    from tests.conftest import TEST_DB_URL

    user = make_user("m5", ["manager"])
    admin = Principal(id=1, username="admin", real_name="", dept_id=None, roles=frozenset({"admin"}),
                      scope="all", permissions=frozenset(_all_perms()), visible_user_ids=None)
    with db.transaction() as session:
        apply_policy(session, admin, [*current_lines(session), ("p", "role:manager", "job", "list")])
    code = (
        "import sys\nfrom crm_admin import db\nfrom crm_admin.core.permissions import gate\n"
        f"eng = db.make_engine({TEST_DB_URL!r})\n"
        f"with eng.connect() as c: print(('job', 'list') in gate.grants(c, {user.id}).permissions)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
