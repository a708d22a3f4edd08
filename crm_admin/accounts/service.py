"""Account services: creating users, checking credentials, lock-out."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, event, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, LoginGuard, SysDept, SysRole, SysSession, SysUser
from crm_admin.accounts.policy import set_user_roles
from crm_admin.core import audit
from crm_admin.core.context import Actor
from crm_admin.core.errors import Forbidden, UserError
from crm_admin.core.permissions import (
    SCOPE_ORDER,
    bump_policy_version,
    gate,
    role_subject,
    user_subject,
)
from crm_admin.core.principal import Principal
from crm_admin.core.scope import depts_in_scope, sees_everyone
from crm_admin.core.security import hash_password, needs_rehash, password_problems, verify_password
from crm_admin.db import utcnow
from crm_admin.settings import get_settings

LOGIN_FAILED_MESSAGE = "用户名或密码错误。连续多次失败后账号将被暂时锁定。"
# ``{until}`` is the local time the lock ends
LOCKED_MESSAGE = "连续多次登录失败,该账号已被暂时锁定,请于 {until} 后再试;如需立即解锁,请联系系统管理员。"
# Failed attempts further apart than this do not add up to a lock-out.
FAILURE_MEMORY = dt.timedelta(days=1)


@dataclass
class LoginResult:
    user: SysUser | None
    message: str = ""
    locked_until: dt.datetime | None = None
    second_factor: bool = False  # the password was right; the code of the second factor is asked next


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
    """Verify credentials, apply lock-out, write the audit row. The caller commits.

    A name without an account is counted and locked exactly like a real one (``LoginGuard``), and a
    locked account answers the same whatever password is given: neither the message nor the number of
    attempts it takes tells an attacker whether a name exists or a password was right.
    """
    settings = get_settings()
    now = utcnow()
    name = username.strip()[:64]
    user = session.execute(
        select(SysUser).where(SysUser.username == name).with_for_update()
    ).scalar_one_or_none()
    guard: SysUser | LoginGuard = user if user is not None else _guard_of_unknown(session, name, now)
    who: dict[str, Any] = {"resource_id": user.id} if user is not None else {}
    # nobody is signed in yet: the audit log's user column shows the name that was tried
    attempt = replace(actor, username=name) if not actor.username or actor.user_id is None else actor
    if guard.locked_until and guard.locked_until > now:
        verify_password(user.password_hash if user else None, password)  # same cost as a real check
        audit.record(session, "login_failed", resource="user", **who, success=False, actor=attempt,
                     detail=f"账号锁定期间尝试登录(用户名:{name})")
        return LoginResult(None, LOCKED_MESSAGE, locked_until=guard.locked_until)
    if user is None:
        verify_password(None, password)  # same cost as a real check
        ok, detail = False, "用户名不存在"
    else:
        ok = verify_password(user.password_hash, password) and user.is_active
        detail = "密码错误" if user.is_active else "账号已停用"
    if not ok:
        if guard.last_failed_login_at is not None and now - guard.last_failed_login_at > FAILURE_MEMORY:
            guard.failed_logins = 0  # failures long ago are forgotten, for every name alike
        guard.failed_logins = (guard.failed_logins or 0) + 1
        guard.last_failed_login_at = now
        audit.record(session, "login_failed", resource="user", **who, success=False, actor=attempt,
                     detail=f"{detail}(用户名:{name})")
        if guard.failed_logins >= settings.login_max_failures:
            guard.locked_until = now + dt.timedelta(minutes=settings.login_lock_minutes)
            guard.failed_logins = 0
            audit.record(session, "lockout", resource="user", **who, success=False, actor=attempt,
                         detail=f"用户名“{name}”连续 {settings.login_max_failures} 次登录失败,锁定 "
                                f"{settings.login_lock_minutes} 分钟")
            return LoginResult(None, LOCKED_MESSAGE, locked_until=guard.locked_until)
        return LoginResult(None, LOGIN_FAILED_MESSAGE)
    assert user is not None
    if needs_rehash(user.password_hash):
        # the same password under the current hashing parameters: not a password change, so the user's
        # other sessions stay signed in
        session.info.setdefault(_SAME_PASSWORD, set()).add(user.id)
        user.password_hash = hash_password(password)
    if user.totp_enabled_at is not None:
        # half-way: the failure count stays as it is (a known password must not clear the count of
        # wrong codes), and nobody is signed in until the code (accounts/second_factor.py)
        audit.record(session, "login_pending", resource="user", resource_id=user.id, actor=attempt,
                     detail=f"密码正确,等待两步验证(用户名:{name})")
        session.flush()
        return LoginResult(user, second_factor=True)
    complete_login(session, user, actor)
    return LoginResult(user)


def complete_login(session: Session, user: SysUser, actor: Actor, *, detail: str | None = None) -> None:
    """The user is signed in (password, and the second factor when enrolled): counters cleared, the
    time and address kept, the ``login`` audit row. The caller starts the session and commits."""
    user.failed_logins = 0
    user.locked_until = None
    user.last_failed_login_at = None
    user.last_login_at = utcnow()
    user.last_login_ip = actor.ip[:64]
    audit.record(session, "login", resource="user", resource_id=user.id, detail=detail,
                 actor=Actor(user.id, user.username, actor.ip, actor.user_agent, actor.request_id))
    session.flush()  # the session cookie is given the epoch as it will be committed


def _guard_of_unknown(session: Session, name: str, now: dt.datetime) -> LoginGuard:
    """The lock-out counter of a name that has no account, created on its first failure."""
    guard = session.execute(
        select(LoginGuard).where(LoginGuard.username == name).with_for_update()
    ).scalar_one_or_none()
    if guard is not None:
        return guard
    # names nobody has tried for longer than failures are remembered carry nothing worth keeping
    session.execute(delete(LoginGuard).where(LoginGuard.last_failed_login_at < now - FAILURE_MEMORY,
                                             or_(LoginGuard.locked_until.is_(None),
                                                 LoginGuard.locked_until < now)))
    guard = LoginGuard(username=name, failed_logins=0, last_failed_login_at=now)
    try:
        with session.begin_nested():
            session.add(guard)
    except IntegrityError:  # the same name failed at the same moment in another request
        guard = session.execute(
            select(LoginGuard).where(LoginGuard.username == name).with_for_update()
        ).scalar_one()
    return guard


def start_session(session: Session, user: SysUser, actor: Actor) -> str:
    """A new server-side session for ``user``; returns the token the cookie carries."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    lifetime = dt.timedelta(hours=get_settings().session_max_hours)
    session.add(SysSession(token_hash=session_token_hash(token), user_id=user.id, created_at=now,
                           expires_at=now + lifetime, ip=actor.ip[:64], user_agent=actor.user_agent[:255]))
    # the user's sessions that can no longer be used are kept no longer than their lifetime
    session.execute(delete(SysSession).where(SysSession.user_id == user.id, SysSession.expires_at < now))
    return token


def end_session(session: Session, token: str) -> bool:
    """Revoke the session whose cookie carries ``token`` (logout); the user's other sessions stay."""
    result = session.execute(
        update(SysSession).where(SysSession.token_hash == session_token_hash(token),
                                 SysSession.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def session_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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

    if dept_id is not None and session.get(SysDept, dept_id) is None:
        raise UserError("所选部门不存在。")
    check_dept_assignment(session, editor, dept_id)
    user = create_user(session, username=username, password=password, real_name=real_name.strip()[:64],
                       dept_id=dept_id, phone=(phone or None), email=(email or None),
                       must_change_password=True)
    if roles:
        set_user_roles(session, editor, user.id, list(roles))
    return user


def update_user(session: Session, editor: Principal, user: SysUser, *, real_name: str, dept_id: int | None,
                phone: str | None, email: str | None, roles: list[str]) -> None:
    if dept_id is not None and session.get(SysDept, dept_id) is None:
        raise UserError("所选部门不存在。")
    check_manage_user(session, editor, user)
    if dept_id != user.dept_id:
        check_dept_assignment(session, editor, dept_id)
    if len(real_name) > 64 or len(phone or "") > 32 or len(email or "") > 128:
        raise UserError("姓名不超过 64 字,电话不超过 32 字,邮箱不超过 128 字。")
    user.real_name = real_name.strip()
    user.dept_id = dept_id
    user.phone = phone or None
    user.email = email or None
    session.flush()
    set_user_roles(session, editor, user.id, roles)


def check_manage_user(session: Session, editor: Principal, user: SysUser) -> None:
    """Editing, disabling, unlocking or resetting the password of another user is acting on their
    rights: the editor must hold everything that user holds (otherwise a password reset is a takeover)."""
    if user.id == editor.id:
        return
    theirs = gate.grants(session.connection(), user.id)
    if not theirs.permissions <= editor.permissions or (
            SCOPE_ORDER.index(theirs.scope) > SCOPE_ORDER.index(editor.scope)):
        raise Forbidden(f"不能管理权限比您大的用户“{user}”(须由系统管理员操作)。")


def check_dept_assignment(session: Session, editor: Principal, dept_id: int | None) -> None:
    """A user's department decides what their role's department scope covers: an editor may place
    users only in departments within their own data scope."""
    if dept_id is None or sees_everyone(editor, "user", "edit"):
        return
    if dept_id not in {d for d, _name in depts_in_scope(session, editor, resource="user", action="edit")}:
        raise Forbidden("不能把用户调入您数据范围以外的部门(部门决定数据范围)。")


def set_user_active(session: Session, editor: Principal, user: SysUser, active: bool) -> None:
    """Disable or enable an account; a disabled user's session ends on their next request.

    Their customers stay where they are (and can be handed over with a transfer).
    """
    check_manage_user(session, editor, user)
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


def reset_password(session: Session, editor: Principal, user: SysUser, new_password: str) -> None:
    """An administrator sets a new password; the user must change it at their next sign-in."""
    check_manage_user(session, editor, user)
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
        .order_by(CasbinRule.v1)
    ).scalars()]


def roles_of_users(session: Session) -> dict[int, list[str]]:
    """Every user's role codes (as ``user_roles`` gives them), read at once for a list of users."""
    out: dict[int, list[str]] = {}
    rows = session.execute(select(CasbinRule.v0, CasbinRule.v1).where(CasbinRule.ptype == "g")
                           .order_by(CasbinRule.v0, CasbinRule.v1)).tuples()
    for subject, role in rows:
        user_id = subject.removeprefix("u:")
        if user_id.isdigit() and user_subject(int(user_id)) == subject:
            out.setdefault(int(user_id), []).append(role.removeprefix("role:"))
    return out


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
