"""Account services: creating users, checking credentials, lock-out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, SysDept, SysRole, SysUser
from crm_admin.core import audit
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.permissions import bump_policy_version, role_subject, user_subject
from crm_admin.core.principal import Principal
from crm_admin.core.security import hash_password, needs_rehash, password_problems, verify_password
from crm_admin.db import utcnow
from crm_admin.settings import get_settings

LOGIN_FAILED_MESSAGE = "用户名或密码错误。连续多次失败后账号将被暂时锁定。"


@dataclass
class LoginResult:
    user: SysUser | None
    message: str = ""


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    real_name: str = "",
    roles: list[str] | tuple[str, ...] = (),
    dept_id: int | None = None,
    must_change_password: bool = True,
    phone: str | None = None,
    email: str | None = None,
) -> SysUser:
    username = username.strip()
    if not username or len(username) > 64:
        raise UserError("用户名不能为空,且不超过 64 个字符。")
    problems = password_problems(password, username=username)
    if problems:
        raise UserError(";".join(problems))
    if session.execute(select(SysUser.id).where(SysUser.username == username)).first():
        raise UserError(f"用户名“{username}”已存在。")
    known = set(session.execute(select(SysRole.code)).scalars())
    unknown = [r for r in roles if r not in known]
    if unknown:
        raise UserError(f"角色不存在:{', '.join(unknown)}")
    user = SysUser(
        username=username,
        password_hash=hash_password(password),
        real_name=real_name,
        dept_id=dept_id,
        phone=phone,
        email=email,
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    for code in roles:
        session.add(CasbinRule(ptype="g", v0=user_subject(user.id), v1=role_subject(code)))
    if roles:
        session.flush()
        bump_policy_version(session.connection())
    return user


def check_login(session: Session, username: str, password: str, actor: Actor) -> LoginResult:
    """Verify credentials, apply lock-out, write the audit row. The caller commits."""
    settings = get_settings()
    now = utcnow()
    user = session.execute(
        select(SysUser).where(SysUser.username == username.strip()).with_for_update()
    ).scalar_one_or_none()
    if user is None:
        verify_password(None, password)  # same cost as a real check
        audit.record(session, "login_failed", resource="user", detail=f"用户名:{username[:64]}",
                     success=False, actor=actor)
        return LoginResult(None, LOGIN_FAILED_MESSAGE)
    if user.locked_until and user.locked_until > now:
        verify_password(user.password_hash, "x")
        audit.record(session, "login_failed", resource="user", resource_id=user.id,
                     detail="账号锁定期间尝试登录", success=False, actor=actor)
        return LoginResult(None, LOGIN_FAILED_MESSAGE)
    if not verify_password(user.password_hash, password) or not user.is_active:
        user.failed_logins = (user.failed_logins or 0) + 1
        detail = "密码错误" if user.is_active else "账号已停用"
        audit.record(session, "login_failed", resource="user", resource_id=user.id,
                     detail=detail, success=False, actor=actor)
        if user.failed_logins >= settings.login_max_failures:
            user.locked_until = now + dt.timedelta(minutes=settings.login_lock_minutes)
            user.failed_logins = 0
            audit.record(session, "lockout", resource="user", resource_id=user.id,
                         detail=f"连续 {settings.login_max_failures} 次登录失败,锁定 "
                                f"{settings.login_lock_minutes} 分钟", success=False, actor=actor)
        return LoginResult(None, LOGIN_FAILED_MESSAGE)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    user.last_login_ip = actor.ip[:64]
    if needs_rehash(user.password_hash):
        # the same password under the current hashing parameters: not a password change, so the user's
        # other sessions stay signed in
        session.info.setdefault(_SAME_PASSWORD, set()).add(user.id)
        user.password_hash = hash_password(password)
    audit.record(session, "login", resource="user", resource_id=user.id,
                 actor=Actor(user.id, user.username, actor.ip, actor.user_agent, actor.request_id))
    session.flush()  # the session cookie is given the epoch as it will be committed
    return LoginResult(user)


def change_password(session: Session, user: SysUser, old: str, new: str, confirm: str) -> None:
    if not verify_password(user.password_hash, old):
        raise UserError("原密码不正确。")
    if new != confirm:
        raise UserError("两次输入的新密码不一致。")
    if verify_password(user.password_hash, new):
        raise UserError("新密码不能与原密码相同。")
    problems = password_problems(new, username=user.username)
    if problems:
        raise UserError(";".join(problems))
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, "password_change", resource="user", resource_id=user.id)


# ----- administration of users (users admin page) ---------------------------------------------


def admin_create_user(
    session: Session,
    editor: Principal,
    *,
    username: str,
    password: str,
    real_name: str = "",
    roles: list[str] | tuple[str, ...] = (),
    dept_id: int | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> SysUser:
    """A new account with an initial password the user must change at first sign-in."""
    from crm_admin.accounts.policy import set_user_roles

    if dept_id is not None and session.get(SysDept, dept_id) is None:
        raise UserError("所选部门不存在。")
    user = create_user(session, username=username, password=password, real_name=real_name.strip()[:64],
                       dept_id=dept_id, phone=(phone or None), email=(email or None),
                       must_change_password=True)
    if roles:
        set_user_roles(session, editor, user.id, list(roles))
    return user


def update_user(session: Session, editor: Principal, user: SysUser, *, real_name: str, dept_id: int | None,
                phone: str | None, email: str | None, roles: list[str]) -> None:
    from crm_admin.accounts.policy import set_user_roles

    if dept_id is not None and session.get(SysDept, dept_id) is None:
        raise UserError("所选部门不存在。")
    if len(real_name) > 64 or len(phone or "") > 32 or len(email or "") > 128:
        raise UserError("姓名不超过 64 字,电话不超过 32 字,邮箱不超过 128 字。")
    user.real_name = real_name.strip()
    user.dept_id = dept_id
    user.phone = phone or None
    user.email = email or None
    session.flush()
    set_user_roles(session, editor, user.id, roles)


def set_user_active(session: Session, editor: Principal, user: SysUser, active: bool) -> None:
    """Disable or enable an account; a disabled user's session ends on their next request.

    Their customers stay where they are (and can be handed over with a transfer).
    """
    if not active and user.id == editor.id:
        raise UserError("不能停用您自己的账号。")
    if not active and _is_last_admin(session, user.id):
        raise UserError("不能停用最后一位系统管理员。")
    if user.is_active == active:
        return
    user.is_active = active
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, "user_enable" if active else "user_disable", resource="user", resource_id=user.id,
                 changes={"is_active": [not active, active]})


def reset_password(session: Session, user: SysUser, new_password: str) -> None:
    """An administrator sets a new password; the user must change it at their next sign-in."""
    problems = password_problems(new_password, username=user.username)
    if problems:
        raise UserError(";".join(problems))
    user.password_hash = hash_password(new_password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, "password_reset", resource="user", resource_id=user.id,
                 detail="管理员重置密码,用户下次登录须修改")


def _is_last_admin(session: Session, user_id: int) -> bool:
    admin_ids = set(
        int(v0[2:]) for v0 in session.execute(
            select(CasbinRule.v0).where(CasbinRule.ptype == "g", CasbinRule.v1 == "role:admin")
        ).scalars() if v0.startswith("u:")
    )
    if user_id not in admin_ids:
        return False
    active = session.execute(
        select(SysUser.id).where(SysUser.id.in_(admin_ids - {user_id}), SysUser.is_active.is_(True))
    ).first()
    return active is None


def user_roles(session: Session, user_id: int) -> list[str]:
    return [v1.removeprefix("role:") for v1 in session.execute(
        select(CasbinRule.v1).where(CasbinRule.ptype == "g", CasbinRule.v0 == user_subject(user_id))
    ).scalars()]


_SAME_PASSWORD = "crm_same_password_rehashed"  # session.info: users whose hash was only re-made


@event.listens_for(Session, "before_flush")
def _bump_epoch_on_security_change(session: Session, _ctx: Any, _instances: Any) -> None:
    """Status, password or department changed by any path: the user's sessions end on their next request."""
    for obj in list(session.dirty):
        if not isinstance(obj, SysUser):
            continue
        state = inspect(obj)
        if state.attrs.session_epoch.history.has_changes():
            continue  # the service already moved it (and may have handed the new value to the session)
        changed = {key for key in ("is_active", "password_hash", "dept_id") if state.attrs[key].history.has_changes()}
        if changed == {"password_hash"} and obj.id in session.info.get(_SAME_PASSWORD, ()):
            continue
        if changed:
            obj.session_epoch = (obj.session_epoch or 0) + 1
