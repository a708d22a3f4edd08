"""Account services: creating users, checking credentials, lock-out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, SysRole, SysUser
from crm_admin.core import audit
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.permissions import bump_policy_version, role_subject, user_subject
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
        user.password_hash = hash_password(password)
    audit.record(session, "login", resource="user", resource_id=user.id,
                 actor=Actor(user.id, user.username, actor.ip, actor.user_agent, actor.request_id))
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
