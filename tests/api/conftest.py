"""Fixtures of the API tests: personal tokens for the world's users, a client that sends them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_admin import db


def _principal(session: Any, username: str) -> Any:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()
    return load_principal(session.connection(), user)


@pytest.fixture
def make_token(engine: Any) -> Callable[..., str]:
    """``make_token("mgr_a")``: a new token of that user (``expires_days``, ``name`` as the page offers)."""
    from crm_admin.api import tokens
    from crm_admin.core.context import SYSTEM, acting_as

    def factory(username: str, *, expires_days: int | None = 90, name: str = "测试") -> str:
        with acting_as(SYSTEM), db.transaction() as session:
            made = tokens.create_token(session, _principal(session, username), name=name, expires_days=expires_days)
            return made.secret

    return factory


def expire_token(secret: str) -> None:
    from crm_admin.api import tokens
    from crm_admin.api.models import ApiToken

    with db.transaction() as session:
        session.execute(update(ApiToken).where(ApiToken.token_hash == tokens.token_hash(secret)).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


def revoke_token(secret: str) -> None:
    from crm_admin.api import tokens
    from crm_admin.api.models import ApiToken

    with db.transaction() as session:
        session.execute(update(ApiToken).where(ApiToken.token_hash == tokens.token_hash(secret)).values(
            revoked_at=dt.datetime.now(dt.UTC)))


def disable_user(username: str) -> None:
    from crm_admin.accounts.models import SysUser

    with db.transaction() as session:
        session.execute(update(SysUser).where(SysUser.username == username).values(is_active=False))


def bearer(secret: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **extra}


@pytest.fixture
def api(client: Any) -> Any:
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_blocks() -> Any:
    """Each test starts without blocks of calls reserved by an earlier one (ids are reused)."""
    from crm_admin.api import ratelimit

    ratelimit.forget()
    yield
    ratelimit.forget()
