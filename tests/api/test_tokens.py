"""Personal API tokens on the user's own page and the administrators' page: shown once, stored hashed,
revocable, audited; a revoked token, an expired one and a disabled user's are refused."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.api.conftest import bearer, disable_user, expire_token
from tests.conftest import csrf_token


def _create_on_page(client: Any, name: str = "官网表单") -> str:
    r = client.post("/admin/account/api-tokens",
                    data={"op": "create", "name": name, "expires_days": "30", "csrf_token": csrf_token(client)})
    assert r.status_code == 200, r.text
    match = re.search(r'id="new-token-secret">(crm_[\w-]+)<', r.text)
    assert match, r.text
    return match.group(1)


def test_user_creates_lists_and_revokes_own_token(world: Any, login_as: Any, api: Any) -> None:
    from crm_admin.api.models import ApiToken
    from crm_admin.audit.models import AuditLog

    page = login_as("mgr_a")
    secret = _create_on_page(page)
    assert api.get("/api/v1/me", headers=bearer(secret)).json()["username"] == "mgr_a"
    listed = page.get("/admin/account/api-tokens").text
    assert "官网表单" in listed and secret not in listed  # shown once only
    with db.session_factory()() as session:
        token = session.execute(select(ApiToken)).scalar_one()
        assert token.token_hash != secret and len(token.token_hash) == 64 and secret not in str(token.__dict__)
        created = session.execute(select(AuditLog).where(AuditLog.action == "token_create")).scalar_one()
        assert secret not in str(created.changes) and created.changes["token_hash"] == "***"
    # another user cannot revoke it
    other = login_as("mgr_c")
    r = other.post("/admin/account/api-tokens",
                   data={"op": "revoke", "token_id": str(token.id), "csrf_token": csrf_token(other)})
    assert r.status_code == 404
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    r = page.post("/admin/account/api-tokens",
                  data={"op": "revoke", "token_id": str(token.id), "csrf_token": csrf_token(page)})
    assert r.status_code == 200 and "已撤销" in r.text
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    with db.session_factory()() as session:
        assert session.execute(select(AuditLog).where(AuditLog.action == "token_revoke")).scalar_one()


def test_admin_sees_and_revokes_every_token(world: Any, login_as: Any, admin_client: Any, api: Any) -> None:
    page = login_as("mgr_a")
    secret = _create_on_page(page, "ERP 同步")
    listed = admin_client.get("/admin/api-tokens")
    assert listed.status_code == 200 and "ERP 同步" in listed.text and "mgr_a" in listed.text
    from crm_admin.api.models import ApiToken

    with db.session_factory()() as session:
        token_id = session.execute(select(ApiToken.id)).scalar_one()
    r = admin_client.post(f"/admin/api-tokens/{token_id}/revoke", data={"csrf_token": csrf_token(admin_client)},
                          follow_redirects=False)
    assert r.status_code == 303
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    # a manager may not open the page
    assert page.get("/admin/api-tokens").status_code == 403


def test_expired_token_and_disabled_user_are_refused(world: Any, make_token: Any, api: Any) -> None:
    secret = make_token("mgr_a")
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    expire_token(secret)
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    other = make_token("mgr_c", expires_days=0)
    assert api.get("/api/v1/me", headers=bearer(other)).status_code == 200
    disable_user("mgr_c")
    refused = api.get("/api/v1/me", headers=bearer(other))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


def test_token_name_is_required(world: Any, login_as: Any) -> None:
    page = login_as("mgr_a")
    r = page.post("/admin/account/api-tokens",
                  data={"op": "create", "name": " ", "expires_days": "30", "csrf_token": csrf_token(page)})
    assert r.status_code == 400 and "请填写令牌名称" in r.text


def test_last_use_is_recorded(world: Any, make_token: Any, api: Any) -> None:
    from crm_admin.api.models import ApiToken

    secret = make_token("mgr_a")
    api.get("/api/v1/me", headers=bearer(secret))
    with db.session_factory()() as session:
        assert session.execute(select(ApiToken.last_used_at)).scalar_one() is not None


def test_a_users_tokens_wait_while_the_password_must_be_changed(world: Any, make_token: Any, api: Any) -> None:
    """After an administrator resets the password (a suspected leak), the user's tokens stop as the pages
    do, until the user has chosen a new password."""
    from sqlalchemy import update

    from crm_admin.core.models import SysUser

    secret = make_token("mgr_a")
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    with db.transaction() as session:
        session.execute(update(SysUser).where(SysUser.username == "mgr_a").values(must_change_password=True))
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    with db.transaction() as session:
        session.execute(update(SysUser).where(SysUser.username == "mgr_a").values(must_change_password=False))
    assert api.get("/api/v1/me", headers=bearer(secret)).status_code == 200
