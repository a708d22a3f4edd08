"""Authentication hardening: lock-out, per-IP throttling, no username enumeration, idle timeout and
absolute lifetime, cookie flags, CSRF on the users admin."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.conftest import PASSWORD, login


def _audit(action: str) -> list[Any]:
    from crm_admin.audit.models import AuditLog

    with db.session_factory()() as session:
        return list(session.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def _error_text(response: Any) -> str:
    import re

    match = re.search(r'class="alert alert-danger[^"]*"[^>]*>(.*?)<', response.text, re.S)
    return match.group(1).strip() if match else response.text[-400:]


def test_lockout_after_repeated_failures(make_user: Any, make_client: Any) -> None:
    make_user("lock1", ["manager"])
    c = make_client()
    for _ in range(5):
        assert login(c, "lock1", "Wrong12345").status_code == 400
    assert login(c, "lock1", PASSWORD).status_code == 400  # locked: even the right password
    assert len(_audit("lockout")) == 1
    from crm_admin.accounts.models import SysUser

    with db.transaction() as session:
        user = session.execute(select(SysUser).where(SysUser.username == "lock1")).scalar_one()
        user.locked_until = None
    assert login(make_client(), "lock1", PASSWORD).status_code == 302


def test_locked_account_is_told_that_it_is_locked_and_until_when(make_user: Any, make_client: Any) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.formatting import format_datetime

    make_user("lock2", ["manager"])
    c = make_client()
    texts = [_error_text(login(c, "lock2", "Wrong12345")) for _ in range(5)]
    assert all("用户名或密码错误" in t for t in texts[:4])
    with db.session_factory()() as session:
        until = session.execute(select(SysUser.locked_until).where(SysUser.username == "lock2")).scalar_one()
    assert until is not None
    locked = texts[4]
    assert "暂时锁定" in locked and format_datetime(until) in locked
    # the right password while locked: the very same answer as a wrong one, no sign-in
    right = login(c, "lock2", PASSWORD)
    wrong = login(c, "lock2", "Wrong12345")
    assert right.status_code == wrong.status_code == 400
    assert _error_text(right) == _error_text(wrong) == locked


def test_unknown_name_is_counted_and_locked_exactly_like_a_real_one(make_user: Any, make_client: Any) -> None:
    """No oracle: the same attempts on a real and on a made-up name get the same answers, one by one."""
    make_user("realname", ["manager"])
    real = [_error_text(login(make_client(), "realname", "Wrong12345")) for _ in range(6)]
    made_up = [_error_text(login(make_client(), "madeupname", "Wrong12345")) for _ in range(6)]
    real.append(_error_text(login(make_client(), "realname", PASSWORD)))
    made_up.append(_error_text(login(make_client(), "madeupname", PASSWORD)))
    # the lock ends a few seconds apart for the two: compare the answers without the minute
    import re

    def shape(texts: list[str]) -> list[str]:
        return [re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "<time>", t) for t in texts]

    assert shape(real) == shape(made_up)
    assert "暂时锁定" in real[4] and "暂时锁定" in real[6]
    assert len(_audit("lockout")) == 2


def test_failures_a_day_apart_do_not_add_up(make_user: Any, make_client: Any) -> None:
    import datetime as dt

    from crm_admin.accounts.models import LoginGuard, SysUser

    make_user("slow1", ["manager"])
    for name in ("slow1", "slow-unknown"):
        for _ in range(4):
            login(make_client(), name, "Wrong12345")
    with db.transaction() as session:
        long_ago = db.utcnow() - dt.timedelta(days=2)
        session.execute(SysUser.__table__.update().where(SysUser.username == "slow1")
                        .values(last_failed_login_at=long_ago))
        session.execute(LoginGuard.__table__.update().values(last_failed_login_at=long_ago))
    for name in ("slow1", "slow-unknown"):
        assert "用户名或密码错误" in _error_text(login(make_client(), name, "Wrong12345"))
    assert login(make_client(), "slow1", PASSWORD).status_code == 302


def test_locked_message_in_english(make_user: Any, make_client: Any) -> None:
    make_user("lock3", ["manager"])
    c = make_client()
    c.cookies.set("crm_lang", "en")
    for _ in range(5):
        response = login(c, "lock3", "Wrong12345")
    assert "locked until" in _error_text(response)


def test_message_does_not_reveal_whether_username_exists(make_user: Any, make_client: Any) -> None:
    make_user("exists1", ["manager"])
    known = login(make_client(), "exists1", "Wrong12345")
    unknown = login(make_client(), "nobody-here", "Wrong12345")
    assert known.status_code == unknown.status_code == 400
    assert _error_text(known) == _error_text(unknown)


def test_per_ip_throttle(app: Any, make_user: Any, make_client: Any, monkeypatch: Any) -> None:
    from crm_admin.accounts import throttle

    make_user("thr1", ["manager"])
    backend = app.state.admin.authentication_backend
    monkeypatch.setattr(backend.settings, "login_ip_max_per_minute", 3)
    throttle.reset()
    c = make_client()
    for name in ("a1", "a2", "a3"):
        assert login(c, name, "Wrong12345").status_code == 400
    r = login(make_client(), "thr1", PASSWORD)  # same address, different account: still throttled
    assert r.status_code == 429 and "频繁" in r.text
    assert any("频繁" in (row.detail or "") for row in _audit("login_failed"))
    throttle.reset()
    assert login(make_client(), "thr1", PASSWORD).status_code == 302


def test_throttle_window_slides() -> None:
    from crm_admin.accounts import throttle

    throttle.reset()
    assert all(throttle.allow("10.0.0.1", now=100.0 + i, limit=3) for i in range(3))
    assert not throttle.allow("10.0.0.1", now=110.0, limit=3)
    assert throttle.allow("10.0.0.2", now=110.0, limit=3)
    assert throttle.allow("10.0.0.1", now=161.0, limit=3)
    throttle.reset()


def test_idle_timeout_and_absolute_lifetime(make_user: Any, login_as: Any, monkeypatch: Any, app: Any) -> None:
    from crm_admin.accounts import auth

    make_user("sess1", ["manager"])
    settings = app.state.admin.authentication_backend.settings
    real = time.time

    class Clock:
        offset = 0.0

        @staticmethod
        def time() -> float:
            return real() + Clock.offset

    monkeypatch.setattr(auth, "time", Clock)
    c = login_as("sess1")
    assert c.get("/admin/customer/list").status_code == 200
    Clock.offset = settings.session_idle_minutes * 60 + 5
    assert c.get("/admin/customer/list", follow_redirects=False).status_code == 302  # idle too long
    Clock.offset = 0.0
    c = login_as("sess1")
    # active all the time, but past the absolute lifetime
    step = settings.session_idle_minutes * 60 - 60
    elapsed = 0.0
    while elapsed < settings.session_max_hours * 3600 - step:
        elapsed += step
        Clock.offset = elapsed
        assert c.get("/admin/customer/list", follow_redirects=False).status_code == 200
    Clock.offset = settings.session_max_hours * 3600 + 5
    assert c.get("/admin/customer/list", follow_redirects=False).status_code == 302


def test_session_cookie_flags(make_user: Any, make_client: Any) -> None:
    make_user("ck1", ["manager"])
    r = login(make_client(), "ck1", PASSWORD)
    cookie = r.headers.get("set-cookie", "")
    assert cookie.startswith("crm_session=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


def test_cross_site_form_post_is_refused(admin_client: Any) -> None:
    r = admin_client.post("/admin/users/new", data={"username": "csrf1", "password": "Init1234x",
                                                     "confirm_password": "Init1234x"},
                          headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        assert session.execute(select(SysUser).where(SysUser.username == "csrf1")).first() is None


def test_old_parameter_hash_still_logs_in_and_is_remade(make_user: Any, make_client: Any) -> None:
    from argon2 import PasswordHasher

    from crm_admin.accounts.models import SysUser
    from crm_admin.core.security import hash_password, needs_rehash

    make_user("rehash1", ["manager"])
    earlier = make_client()  # signed in before the hashing parameters changed
    assert login(earlier, "rehash1", PASSWORD).status_code == 302
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash(PASSWORD)
    with db.transaction() as session:
        session.execute(select(SysUser).where(SysUser.username == "rehash1")).scalar_one().password_hash = old
        session.flush()
        epoch = session.execute(select(SysUser).where(SysUser.username == "rehash1")).scalar_one().session_epoch
    with db.transaction() as session:  # as an upgrade leaves it: old hash, sessions still valid
        session.execute(select(SysUser).where(SysUser.username == "rehash1")).scalar_one().session_epoch = epoch - 1
    assert needs_rehash(old) and not needs_rehash(hash_password("Another123"))

    later = make_client()
    assert login(later, "rehash1", PASSWORD).status_code == 302  # the hash is re-made here
    assert later.get("/admin/customer/list").status_code == 200
    with db.session_factory()() as session:
        remade = session.execute(select(SysUser.password_hash).where(SysUser.username == "rehash1")).scalar_one()
    assert remade != old and not needs_rehash(remade)
    # the same password re-hashed is not a password change: the earlier session is still signed in
    assert earlier.get("/admin/customer/list", follow_redirects=False).status_code == 200
    assert login(make_client(), "rehash1", PASSWORD).status_code == 302
