"""Audit log: read-only for everyone, URL filters, analysis page, hash chain verify (CLI), same-transaction
writes (a failed write leaves no row, a successful one always has one), field-level diffs, no secrets."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text

from crm_admin import db
from tests.cli.runner import run_cli
from tests.conftest import csrf_token


def _rows(**where: Any) -> list[Any]:
    from crm_admin.audit.models import AuditLog

    with db.session_factory()() as session:
        stmt = select(AuditLog).order_by(AuditLog.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditLog, key) == value)
        return list(session.execute(stmt).scalars())


def test_audit_log_has_no_write_route_even_for_admin(admin_client: Any) -> None:
    rows = _rows()
    assert rows
    token = csrf_token(admin_client)
    headers = {"X-CSRF-Token": token}
    pk = rows[-1].id
    assert admin_client.get("/admin/audit-log/create").status_code == 403
    assert admin_client.post("/admin/audit-log/create", data={"action": "x", "csrf_token": token},
                             headers=headers).status_code in (403, 405)
    assert admin_client.get(f"/admin/audit-log/edit/{pk}").status_code == 403
    assert admin_client.post(f"/admin/audit-log/edit/{pk}", data={"action": "x", "csrf_token": token},
                             headers=headers).status_code in (403, 405)
    assert admin_client.request("DELETE", f"/admin/audit-log/delete?pks={pk}", headers=headers).status_code in (403, 405)
    assert admin_client.get(f"/admin/audit-log/details/{pk}").status_code == 200
    after = _rows()
    assert [r.id for r in after[: len(rows)]] == [r.id for r in rows]
    assert [(r.changes, r.detail) for r in after[: len(rows)]] == [(r.changes, r.detail) for r in rows]


def test_filters_in_the_url_and_analysis(admin_client: Any, make_client: Any) -> None:
    from tests.conftest import login

    login(make_client(), "admin", "wrong-Passw0rd")
    page = admin_client.get("/admin/audit-log/list", params={"action": "login_failed"})
    assert page.status_code == 200
    assert "登录失败" in page.text
    assert "退出" not in page.text.split("<tbody", 1)[-1]
    none = admin_client.get("/admin/audit-log/list", params={"action": "login_failed", "from": "2001-01-01",
                                                               "to": "2001-01-02"})
    assert none.status_code == 200
    analysis = admin_client.get("/admin/audit/analysis")
    assert analysis.status_code == 200 and "登录失败" in analysis.text and "每日操作数" in analysis.text


def test_manager_cannot_read_audit(make_user: Any, login_as: Any) -> None:
    make_user("am", ["manager"])
    c = login_as("am")
    assert c.get("/admin/audit-log/list").status_code == 403
    assert c.get("/admin/audit/analysis").status_code == 403


@pytest.mark.cli_command("audit verify")
@pytest.mark.cli_command("audit seal")
@pytest.mark.parametrize("tamper", ["edit", "delete"])
def test_chain_verify_detects_tampering(admin_client: Any, tamper: str) -> None:
    # run from a shell, as an operator does: it once crashed there with KeyError: 'audit_log', while a
    # test running it inside its own process (models already imported) passed
    from crm_admin.audit.models import AuditLog
    from crm_admin.core import audit

    # what the test database was seeded with is sealed first: the tail is then only the rows below,
    # seconds old however long the run has taken so far
    assert run_cli("audit", "seal").exit_code == 0
    for i in range(3):
        audit.record_now("export", resource="customer", detail=f"第 {i} 次")
    tail = run_cli("audit", "verify")  # written, not sealed yet: intact, with a recent unsealed tail
    assert tail.exit_code == 0, tail.output
    assert "完整" in tail.output and "未封存的尾部" in tail.output and "秒前" in tail.output
    sealed = run_cli("audit", "seal")  # what the scheduler does every few seconds
    assert sealed.exit_code == 0 and "已封存" in sealed.output, sealed.output
    ok = run_cli("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "完整" in ok.output and "未封存的尾部:无" in ok.output
    victim = _rows(action="export")[1]
    with db.get_engine().begin() as conn:
        if tamper == "edit":
            conn.execute(AuditLog.__table__.update().where(AuditLog.id == victim.id).values(detail="改过了"))
        else:
            conn.execute(AuditLog.__table__.delete().where(AuditLog.id == victim.id))
    broken = run_cli("audit", "verify")
    assert broken.exit_code == 1
    expected = victim.id if tamper == "edit" else _rows(action="export")[1].id
    assert f"id={expected}" in broken.output and "篡改" in broken.output
    with db.get_engine().connect() as conn:
        assert audit.verify_chain(conn).broken_id == expected
    # put the table back in a consistent state for the following tests
    with db.get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))


def test_failed_write_leaves_no_audit_row_and_success_one() -> None:
    from crm_admin.audit.models import AuditLog
    from crm_admin.products.models import Product

    with db.transaction() as session:
        session.add(Product(code="P-A1", name="审计产品"))
    created = _rows(action="create", resource="product")
    assert len(created) == 1 and created[0].changes["code"] == "P-A1"
    count = len(_rows())
    with pytest.raises(Exception), db.transaction() as session:  # noqa: B017 - any DB refusal
        session.add(Product(code="P-A1", name="重复编号"))
        session.flush()
    assert len(_rows()) == count
    with db.session_factory()() as session:
        assert session.execute(select(func.count()).select_from(AuditLog)
                               .where(AuditLog.resource == "product")).scalar() == 1


def test_update_has_field_level_before_after_and_no_password(make_user: Any) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.accounts.service import reset_password
    from crm_admin.products.models import Product

    with db.transaction() as session:
        p = Product(code="P-A2", name="旧名称")
        session.add(p)
    with db.transaction() as session:
        session.get(Product, p.id).name = "新名称"
    update = _rows(action="update", resource="product")[-1]
    assert update.changes == {"name": ["旧名称", "新名称"]}
    user = make_user("auditee", ["manager"])
    with db.transaction() as session:
        from crm_admin.core.principal import load_principal

        admin = session.execute(select(SysUser).where(SysUser.username == "admin")).scalar_one()
        reset_password(session, load_principal(session.connection(), admin), session.get(SysUser, user.id),
                       "Another123")
    with db.session_factory()() as session:
        hash_ = session.get(SysUser, user.id).password_hash
    for row in _rows(resource="user"):
        assert hash_ not in str(row.changes) and "argon2" not in str(row.changes), row.action


def test_list_has_a_filter_form_and_speaks_in_labels(admin_client: Any, make_client: Any) -> None:
    """Failed logins show the name that was tried; actions and resources read as words, not codes."""
    from tests.conftest import login

    login(make_client(), "nobody_here", "wrong-Passw0rd")
    rows = _rows(action="login_failed")
    assert rows and rows[-1].username == "nobody_here" and rows[-1].user_id is None
    page = admin_client.get("/admin/audit-log/list", params={"action": "login_failed", "user": "nobody_here"})
    assert page.status_code == 200 and 'id="audit-filter-form"' in page.text
    body = page.text.split("<tbody", 1)[-1]
    assert "nobody_here" in body and "登录失败" in body and "用户" in body
    assert ">login_failed<" not in body and ">user<" not in body
    # the form keeps what was asked
    assert 'value="nobody_here"' in page.text and '<option value="login_failed" selected' in page.text


def test_analysis_counts_the_companys_days(admin_client: Any) -> None:
    """An action at 23:30 UTC belongs to the next day in Beijing."""
    import datetime as dt

    from crm_admin.audit.admin import _analysis
    from crm_admin.core import audit
    from crm_admin.core.context import Actor, acting_as

    late = dt.datetime(2030, 1, 1, 23, 30, tzinfo=dt.UTC)  # 2030-01-02 07:30 in Beijing
    with acting_as(Actor(user_id=None, username="clock")), db.transaction() as session:
        audit.record(session, "update", resource="customer", detail="深夜操作")
        session.flush()
        session.execute(text("UPDATE audit_log SET occurred_at = :at WHERE detail = '深夜操作'"),
                        {"at": late.replace(tzinfo=None)})
    data = _analysis({"from": "2030-01-01", "to": "2030-01-03", "user": "clock"})
    assert [(str(day), n) for day, n in data["per_day"]] == [("2030-01-02", 1)]


def _auditor(make_user: Any, name: str, *, sensitive_scope: str | None) -> None:
    """A role that may read the audit log, with or without the permission to see personal data."""
    from crm_admin.accounts.models import CasbinRule, SysRole
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.core.permissions import bump_policy_version

    with acting_as(SYSTEM), db.transaction() as s:
        s.add(SysRole(code=f"role_{name}", name=f"审计员{name}", data_scope="all"))
        for action in ("list", "view"):
            s.add(CasbinRule(ptype="p", v0=f"role:role_{name}", v1="audit", v2=action, v3="all", v4="", v5=""))
        if sensitive_scope:
            s.add(CasbinRule(ptype="p", v0=f"role:role_{name}", v1="sensitive_data", v2="view", v3=sensitive_scope,
                             v4="", v5=""))
        bump_policy_version(s.connection())
    make_user(name, roles=(f"role_{name}",))


def test_before_and_after_values_of_personal_data_are_masked_for_who_may_not_see_them(
        admin_client: Any, make_user: Any, login_as: Any) -> None:
    from crm_admin.core import audit
    from crm_admin.core.context import SYSTEM, acting_as

    with acting_as(SYSTEM), db.transaction() as s:
        audit.record(s, "update", resource="linkman", resource_id=7, changes={
            "mobile": ["13900000001", "13911112222"], "email": ["zhang@example.com", "li@example.com"],
            "address": ["广东省深圳市南山区科技园1号", None], "id_number": ["110101199003071234", ""],
            "position": ["经理", "总监"], "merged": {"note": "原电话 13733334444"}},
            detail="联系人电话由 13900000001 改为 13911112222,邮箱 li@example.com,身份证 110101199003071234")
    row = _rows(action="update", resource="linkman")[-1]
    secrets = ("13900000001", "13911112222", "13733334444", "zhang@example.com", "li@example.com",
               "科技园1号", "110101199003071234")

    _auditor(make_user, "aud_plain", sensitive_scope=None)
    _auditor(make_user, "aud_team", sensitive_scope="dept_tree")  # a narrower permission: masked too
    for who in ("aud_plain", "aud_team"):
        page = login_as(who).get(f"/admin/audit-log/details/{row.id}")
        assert page.status_code == 200
        assert not [s for s in secrets if s in page.text], who
        for shown in ("139****0001", "139****2222", "137****4444", "z***@example.com", "l***@example.com",
                      "广东省深圳市****", "110***********1234", "经理", "总监"):
            assert shown in page.text, (who, shown)
    full = admin_client.get(f"/admin/audit-log/details/{row.id}").text
    assert all(s in full for s in secrets)
    # masked on the page only: the row itself (and its seal) is unchanged
    assert _rows(action="update", resource="linkman")[-1].changes == row.changes


def test_masking_recorded_values_keeps_what_is_no_personal_data() -> None:
    from crm_admin.core import masking

    assert masking.mask_free_text("订单 SO-20261201-0001,信用代码 91310000MA1K4LXX3X,金额 13900") == (
        "订单 SO-20261201-0001,信用代码 91310000MA1K4LXX3X,金额 13900")
    assert masking.mask_free_text("电话 010-87654321 / +86 13812345678") == "电话 010-****4321 / +86 138****5678"
    assert masking.mask_recorded({"phone": [None, "13812345678"], "count": 3, "ok": True}) == {
        "phone": [None, "138****5678"], "count": 3, "ok": True}


def test_an_empty_detail_shows_nothing(admin_client: Any) -> None:
    from crm_admin.core import audit
    from crm_admin.core.context import SYSTEM, acting_as

    with acting_as(SYSTEM), db.transaction() as s:
        audit.record(s, "update", resource="customer", resource_id=3, changes=None, detail=None)
    row = _rows(action="update", resource="customer")[-1]
    page = admin_client.get(f"/admin/audit-log/details/{row.id}").text
    assert ">None<" not in page.replace(" ", "").replace("\n", "")
