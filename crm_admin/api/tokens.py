"""Personal API tokens: made on the user's own page, shown once, stored hashed, revocable.

A token stands for its user: the principal a call acts with is loaded exactly as for a signed-in page
(``core.principal.load_principal``: the same permission gate, the same data scope). A token stops
working when it is revoked, when it expires and when its user is disabled (checked on every call).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.api.models import ApiToken
from crm_admin.core import audit
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.principal import Principal, load_principal
from crm_admin.db import utcnow

PREFIX = "crm_"
SECRET_BYTES = 32  # 256 bits
EXPIRY_DAYS = (30, 90, 180, 365)  # the choices offered; 0: never expires
DEFAULT_EXPIRY_DAYS = 90
# last_used_at is written at most this often per token (a call does not write the row every time)
LAST_USED_EVERY = dt.timedelta(seconds=60)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once


def create_token(session: Session, principal: Principal, *, name: str, expires_days: int | None) -> NewToken:
    """A new token of ``principal``'s own account (audited as ``token_create``; the caller commits)."""
    name = (name or "").strip()
    if not name:
        raise UserError("请填写令牌名称(例如“官网表单”)。", field="name")
    if len(name) > 64:
        raise UserError("令牌名称不能超过 64 个字符。", field="name")
    if expires_days not in (*EXPIRY_DAYS, 0, None):
        raise UserError("有效期无效,请重新选择。", field="expires_days")
    secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    now = utcnow()
    token = ApiToken(user_id=principal.id, name=name, token_hash=token_hash(secret), prefix=secret[:8],
                     expires_at=now + dt.timedelta(days=expires_days) if expires_days else None)
    session.info[audit.INFO_ACTION] = "token_create"
    session.add(token)
    session.flush()
    session.info.pop(audit.INFO_ACTION, None)
    return NewToken(token, secret)


def revoke_token(session: Session, principal: Principal, token_id: int, *, any_user: bool = False) -> ApiToken:
    """Revoke one token: the user's own, or (``any_user``: the admin page) anyone's. Another user's token
    answers as a missing one. Revoking twice changes nothing."""
    stmt = select(ApiToken).where(ApiToken.id == token_id)
    if not any_user:
        stmt = stmt.where(ApiToken.user_id == principal.id)
    token = session.execute(stmt.with_for_update()).scalar_one_or_none()
    if token is None:
        raise NotFound("令牌不存在或不属于您。")
    if token.revoked_at is None:
        session.info[audit.INFO_ACTION] = "token_revoke"
        token.revoked_at = utcnow()
        token.revoked_by = principal.id
        session.flush()
        session.info.pop(audit.INFO_ACTION, None)
    return token


def tokens_of(session: Session, user_id: int | None) -> list[tuple[ApiToken, str]]:
    """Tokens (newest first) with their user's name; ``user_id`` None: everyone's (the admin page)."""
    stmt = select(ApiToken, SysUser.username).join(SysUser, SysUser.id == ApiToken.user_id)
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return [(t, name) for t, name in session.execute(stmt.order_by(ApiToken.id.desc()).limit(1000)).tuples()]


def state_of(token: ApiToken, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if token.revoked_at is not None:
        return "已撤销"
    if token.expires_at is not None and token.expires_at <= now:
        return "已过期"
    return "有效"


@dataclass(frozen=True)
class Caller:
    token_id: int
    user: SysUser
    principal: Principal


def authenticate(session: Session, secret: str) -> Caller | None:
    """The caller a presented secret stands for; None for a wrong, revoked or expired token, a disabled
    user, or one who must first change the password (the caller answers all of them alike)."""
    if not secret.startswith(PREFIX) or len(secret) > 128:
        return None
    now = utcnow()
    row = session.execute(
        select(ApiToken, SysUser).join(SysUser, SysUser.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(secret), ApiToken.revoked_at.is_(None))
    ).tuples().first()
    if row is None:
        return None
    token, user = row
    if (token.expires_at is not None and token.expires_at <= now) or not user.is_active:
        return None
    if user.must_change_password:
        # an administrator reset the password (a suspected leak, a departure): the tokens wait, as the
        # pages do, until the user has set a new one
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        # bookkeeping, not a change of the token: a plain UPDATE, no audit row
        session.execute(update(ApiToken).where(ApiToken.id == token.id).values(
            last_used_at=now, updated_at=ApiToken.updated_at))
    principal = load_principal(session.connection(), user)
    session.expunge(user)
    return Caller(token.id, user, principal)
