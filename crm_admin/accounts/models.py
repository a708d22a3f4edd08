"""Accounts: sign-in sessions and lock-out counters.

Departments, users, roles, policy rows and shared counters are defined in ``crm_admin.core.models``
(the permission gate and the data scope read them) and re-exported here for the module's own code.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.core.models import DATA_SCOPES, CasbinRule, SysDept, SysMeta, SysRole, SysUser
from crm_admin.db import Base, Timestamped

__all__ = ["DATA_SCOPES", "CasbinRule", "LoginGuard", "LoginThrottle", "SysDept", "SysMeta", "SysRole", "SysSession", "SysUser",
           "UserRecoveryCode"]


class SysSession(Base):
    """A signed-in browser session, so that signing out ends it on every process and node.

    The cookie (signed, not encrypted) carries a random token; only its SHA-256 is stored, so the table
    cannot be used to take over a session. A session counts while its row exists, is not revoked and
    has not expired; the user's other sessions are unaffected by one session's logout.
    """

    __tablename__ = "sys_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"), index=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")


class LoginGuard(Base):
    """Failed sign-ins of a user name that has no account.

    Lock-out must look the same whether or not the name exists (otherwise the answer tells an attacker
    which names are real), so unknown names are counted and locked here exactly as ``sys_user`` counts
    and locks real accounts.
    """

    __tablename__ = "login_guard"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    last_failed_login_at: Mapped[dt.datetime] = mapped_column(index=True)


class LoginThrottle(Base):
    """Sign-in attempts per client address and minute, shared by every process and node
    (``accounts/throttle.py``; used when no Redis is configured, or while it is unreachable).

    One row per (address, minute): a guessing run from one address writes at most the per-minute
    limit into its row and then only reads, and different addresses never touch the same row, so no
    row is updated by every sign-in (which on a Galera cluster would fail commits on the other nodes).
    Rows older than the previous minute are no longer read and are swept as new ones arrive.
    """

    __tablename__ = "login_throttle"

    ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class UserRecoveryCode(Timestamped, Base):
    """A one-time recovery code of a user's second factor (``accounts/second_factor.py``).

    Shown once when made; only its argon2 hash is kept (the password hasher). A code signs in once:
    ``used_at`` is set in the same transaction as the sign-in. Making new codes or resetting the
    second factor removes the user's old ones.
    """

    __tablename__ = "user_recovery_code"

    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[dt.datetime | None]
