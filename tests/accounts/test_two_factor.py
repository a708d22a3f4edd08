"""Two-factor sign-in: enrolment from one's own account page, the code step of signing in (replay,
lock-out, recovery codes), the pending state that opens nothing else, roles that require a second
factor, the administrator's reset, and the secret kept encrypted."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update

from crm_admin import db
from crm_admin.accounts import second_factor
from tests.conftest import ADMIN_PASSWORD, PASSWORD, csrf_token, login

PAGE = "/admin/account/two-factor"


class Clock:
    """The clock the codes are checked against, moved by the tests (a new 30-second step at will)."""

    def __init__(self) -> None:
        self.now = time.time()

    def step(self, steps: int = 1) -> None:
        self.now += steps * second_factor.STEP_SECONDS

    def code(self, secret: str, offset: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.now + offset * second_factor.STEP_SECONDS)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(second_factor, "_now", lambda: c.now)
    return c


def _token(client: Any, path: str = PAGE) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', client.get(path).text)
    return match.group(1) if match else ""


def _post(client: Any, data: dict[str, str], path: str = PAGE) -> Any:
    return client.post(path, data={**data, "csrf_token": _token(client, path)}, follow_redirects=False)


def _audit(action: str, user_id: int | None = None) -> list[Any]:
    from crm_admin.audit.models import AuditLog

    with db.session_factory()() as session:
        stmt = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        if user_id is not None:
            stmt = stmt.where(AuditLog.resource_id == str(user_id))
        return list(session.execute(stmt).scalars())


def _user(username: str) -> Any:
    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        return session.execute(select(SysUser).where(SysUser.username == username)).scalar_one()


def enrol(client: Any, clock: Clock) -> tuple[str, list[str]]:
    """Set up the signed-in user's second factor: (the secret, the recovery codes shown)."""
    page = _post(client, {"op": "start"})
    assert page.status_code == 200, page.text
    assert "<svg" in page.text  # the QR code, drawn on the page itself
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    done = _post(client, {"op": "confirm", "code": clock.code(secret)})
    assert done.status_code == 200, done.text
    codes = re.findall(r'<code class="fs-3">([a-z0-9-]+)</code>', done.text)
    return secret, codes


def sign_in(client: Any, username: str, code: str, password: str = PASSWORD) -> Any:
    first = login(client, username, password)
    assert first.status_code == 302 and first.headers["location"].endswith("/admin/login"), first.text
    return _post(client, {"step": "code", "code": code}, "/admin/login")


@pytest.fixture
def enrolled(make_user: Any, login_as: Any, clock: Clock) -> dict[str, Any]:
    user = make_user("tfa_user", ["manager"])
    client = login_as("tfa_user")
    secret, codes = enrol(client, clock)
    clock.step()  # the enrolment's code is spent: sign-ins use the next step's
    return {"id": user.id, "secret": secret, "codes": codes, "client": client}


def test_enrolment_shows_the_qr_code_and_the_recovery_codes_once(make_user: Any, login_as: Any,
                                                                  clock: Clock) -> None:
    user = make_user("tfa_enrol", ["manager"])
    client = login_as("tfa_enrol")
    page = client.get(PAGE)
    assert page.status_code == 200 and "未启用" in page.text
    started = _post(client, {"op": "start"})
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', started.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    svg = re.search(r"<svg.*?</svg>", started.text, re.S).group(0)  # type: ignore[union-attr]
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "") and "style" not in svg
    # a wrong code: refused, nothing enabled, counted like a wrong password
    wrong = _post(client, {"op": "confirm", "code": clock.code(secret, offset=5)})
    assert wrong.status_code == 400 and "验证码不正确" in wrong.text
    assert _user("tfa_enrol").totp_enabled_at is None and _user("tfa_enrol").failed_logins == 1
    assert _audit("login_failed", user.id)
    done = _post(client, {"op": "confirm", "code": clock.code(secret)})
    codes = re.findall(r'<code class="fs-3">([a-z0-9-]+)</code>', done.text)
    assert done.status_code == 200 and len(codes) == 10 == len(set(codes))
    assert _audit("totp_enable", user.id)
    again = client.get(PAGE)
    assert "已启用" in again.text and "剩余可用恢复码:10" in again.text
    assert not any(c in again.text for c in codes) and secret not in again.text.replace(" ", "")
    # at rest: the secret encrypted, the recovery codes hashed
    from crm_admin.accounts.models import UserRecoveryCode

    stored = _user("tfa_enrol")
    assert stored.totp_secret and secret not in stored.totp_secret and stored.totp_secret.startswith("v1:")
    assert second_factor.decrypt_secret(stored.id, stored.totp_secret) == secret
    with db.session_factory()() as session:
        hashes = session.execute(select(UserRecoveryCode.code_hash).where(
            UserRecoveryCode.user_id == user.id)).scalars().all()
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    # no audit row carries the secret
    from crm_admin.audit.models import AuditLog

    with db.session_factory()() as session:
        texts = [f"{a.changes} {a.detail}" for a in session.execute(select(AuditLog)).scalars()]
    assert not any(secret in t or stored.totp_secret in t for t in texts)


def test_the_secret_is_bound_to_its_user_and_the_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = second_factor.encrypt_secret(7, "JBSWY3DPEHPK3PXP")
    assert second_factor.decrypt_secret(7, sealed) == "JBSWY3DPEHPK3PXP"
    assert second_factor.decrypt_secret(8, sealed) is None  # copied onto another user's row
    assert second_factor.decrypt_secret(7, sealed[:-4] + "AAAA") is None  # tampered
    from crm_admin.settings import get_settings

    monkeypatch.setattr(get_settings(), "secret_key", "another-signing-key-" + "y" * 32)
    assert second_factor.decrypt_secret(7, sealed) is None


def test_sign_in_asks_for_the_code_after_the_password(enrolled: dict[str, Any], make_client: Any,
                                                      clock: Clock) -> None:
    client = make_client()
    first = login(client, "tfa_user", PASSWORD)
    assert first.status_code == 302 and first.headers["location"].endswith("/admin/login")
    # half-way: no session — every page sends back to the sign-in page, which asks for the code
    home = client.get("/admin/", follow_redirects=False)
    assert home.status_code in (302, 303) and "/admin/login" in home.headers["location"]
    page = client.get("/admin/login")
    assert 'id="second-factor-form"' in page.text and 'name="password"' not in page.text
    assert _audit("login_pending", enrolled["id"]) and not _audit("login", enrolled["id"])[1:]
    done = _post(client, {"step": "code", "code": clock.code(enrolled["secret"])}, "/admin/login")
    assert done.status_code == 302 and done.headers["location"].endswith("/admin/"), done.text
    assert client.get("/admin/").status_code == 200
    assert "两步验证通过(动态验证码)" in (_audit("login", enrolled["id"])[-1].detail or "")


def test_a_code_is_accepted_once(enrolled: dict[str, Any], make_client: Any, clock: Clock) -> None:
    code = clock.code(enrolled["secret"])
    assert sign_in(make_client(), "tfa_user", code).status_code == 302
    replay = sign_in(make_client(), "tfa_user", code)
    assert replay.status_code == 400 and "已使用过" in replay.text
    # an earlier step's code (still inside the drift window) is refused too once a later one was used
    clock.step()
    assert sign_in(make_client(), "tfa_user", clock.code(enrolled["secret"], offset=-1)).status_code == 400
    assert sign_in(make_client(), "tfa_user", clock.code(enrolled["secret"])).status_code == 302


def test_codes_one_step_either_side_are_accepted(enrolled: dict[str, Any], make_client: Any,
                                                 clock: Clock) -> None:
    assert sign_in(make_client(), "tfa_user", clock.code(enrolled["secret"], offset=2)).status_code == 400
    assert sign_in(make_client(), "tfa_user", clock.code(enrolled["secret"], offset=1)).status_code == 302


def test_wrong_codes_lock_the_account_like_wrong_passwords(enrolled: dict[str, Any], make_client: Any,
                                                          clock: Clock) -> None:
    from crm_admin.settings import get_settings

    limit = get_settings().login_max_failures
    client = make_client()
    assert login(client, "tfa_user", PASSWORD).status_code == 302
    for _ in range(limit - 1):
        wrong = _post(client, {"step": "code", "code": "000000"}, "/admin/login")
        assert wrong.status_code == 400 and "验证码错误" in wrong.text
    locked = _post(client, {"step": "code", "code": "000001"}, "/admin/login")
    assert locked.status_code == 400 and "暂时锁定" in locked.text
    assert len(_audit("login_failed", enrolled["id"])) >= limit and _audit("lockout", enrolled["id"])
    # locked: the right password and then the right code get nowhere
    again = login(make_client(), "tfa_user", PASSWORD)
    assert again.status_code == 400 and "暂时锁定" in again.text
    # the enrolment page's session ended with the lock
    assert enrolled["client"].get(PAGE, follow_redirects=False).status_code in (302, 303)


def test_a_known_password_does_not_clear_the_count_of_wrong_codes(enrolled: dict[str, Any], make_client: Any,
                                                                  clock: Clock) -> None:
    from crm_admin.settings import get_settings

    limit = get_settings().login_max_failures
    for _ in range(limit - 1):
        assert sign_in(make_client(), "tfa_user", "123456").status_code == 400
    # the password again (right), then one more wrong code: the lock
    last = sign_in(make_client(), "tfa_user", "654321")
    assert "暂时锁定" in last.text
    assert _user("tfa_user").locked_until is not None


def test_a_recovery_code_signs_in_once(enrolled: dict[str, Any], make_client: Any) -> None:
    code = enrolled["codes"][0]
    done = sign_in(make_client(), "tfa_user", code.upper().replace("-", " "))
    assert done.status_code == 302
    assert "恢复码,剩余 9 个" in (_audit("login", enrolled["id"])[-1].detail or "")
    again = sign_in(make_client(), "tfa_user", code)
    assert again.status_code == 400
    assert sign_in(make_client(), "tfa_user", enrolled["codes"][1]).status_code == 302


def test_pending_sign_in_opens_no_other_page(enrolled: dict[str, Any], world: Any, app: Any,
                                            make_client: Any) -> None:
    """With the password done and no code, every route of the app (enumerated from its router) answers
    with the sign-in page, and nothing changes."""
    from tests.company import snapshot
    from tests.security.test_routes import STATE_CHANGING, _is_sign_in, probes

    client = make_client()
    assert login(client, "tfa_user", PASSWORD).status_code == 302
    token = _token(client, "/admin/login")
    before = snapshot()
    failures = []
    all_probes = list(probes(app, world))
    assert len(all_probes) > 200
    for probe in all_probes:
        data = {"csrf_token": token} if probe.method in STATE_CHANGING else None
        response = client.request(probe.method, probe.url, data=data, follow_redirects=False)
        if not _is_sign_in(response):
            failures.append(f"{probe.method} {probe.url}: {response.status_code}")
    assert not failures, failures[:20]
    assert snapshot() == before
    # and the pending state is still there, asking for the code
    assert 'id="second-factor-form"' in client.get("/admin/login").text


def test_signing_out_everywhere_or_a_new_password_ends_a_pending_sign_in(enrolled: dict[str, Any],
                                                                         make_client: Any, clock: Clock) -> None:
    from crm_admin.accounts.models import SysUser

    client = make_client()
    assert login(client, "tfa_user", PASSWORD).status_code == 302
    with db.transaction() as session:
        session.execute(update(SysUser).where(SysUser.id == enrolled["id"])
                        .values(session_epoch=SysUser.session_epoch + 1))
    ended = _post(client, {"step": "code", "code": clock.code(enrolled["secret"])}, "/admin/login")
    assert ended.status_code == 400 and "已失效" in ended.text and 'name="password"' in ended.text
    assert client.get("/admin/", follow_redirects=False).status_code in (302, 303)


def test_the_pending_state_is_signed_and_short_lived(enrolled: dict[str, Any]) -> None:
    user = _user("tfa_user")
    now = int(time.time())
    state = second_factor.pending_state(user, now)
    assert second_factor.read_pending(state, now) == (user.id, user.session_epoch)
    assert second_factor.read_pending(state, now + second_factor.PENDING_SECONDS + 1) is None
    assert second_factor.read_pending({**state, "uid": user.id + 1}, now) is None
    assert second_factor.read_pending({**state, "exp": int(state["exp"]) + 600}, now) is None
    assert second_factor.read_pending("x", now) is None


def test_the_code_step_needs_the_csrf_token_and_a_pending_sign_in(enrolled: dict[str, Any], make_client: Any,
                                                                  clock: Clock) -> None:
    client = make_client()
    assert login(client, "tfa_user", PASSWORD).status_code == 302
    refused = client.post("/admin/login", data={"step": "code", "code": clock.code(enrolled["secret"])},
                          follow_redirects=False)
    assert refused.status_code == 403
    fresh = make_client()  # no password step: a code alone signs nobody in
    answer = _post(fresh, {"step": "code", "code": clock.code(enrolled["secret"])}, "/admin/login")
    assert answer.status_code == 400 and fresh.get("/admin/", follow_redirects=False).status_code in (302, 303)


def test_cancel_returns_to_the_password_form(enrolled: dict[str, Any], make_client: Any) -> None:
    client = make_client()
    assert login(client, "tfa_user", PASSWORD).status_code == 302
    assert _post(client, {"step": "cancel"}, "/admin/login").status_code == 302
    assert 'name="password"' in client.get("/admin/login").text


def test_disabling_needs_a_current_code(enrolled: dict[str, Any], clock: Clock, make_client: Any) -> None:
    client = enrolled["client"]
    wrong = _post(client, {"op": "disable", "code": "000000"})
    assert wrong.status_code == 400 and _user("tfa_user").totp_enabled_at is not None
    assert _user("tfa_user").failed_logins == 1
    done = _post(client, {"op": "disable", "code": clock.code(enrolled["secret"])})
    assert done.status_code == 200 and "已停用" in done.text
    assert _user("tfa_user").totp_secret is None and _audit("totp_disable", enrolled["id"])
    # signing in is the password alone again
    assert login(make_client(), "tfa_user", PASSWORD).headers["location"].endswith("/admin/")


def test_new_recovery_codes_replace_the_old_ones(enrolled: dict[str, Any], clock: Clock, make_client: Any) -> None:
    page = _post(enrolled["client"], {"op": "recovery", "code": clock.code(enrolled["secret"])})
    fresh = re.findall(r'<code class="fs-3">([a-z0-9-]+)</code>', page.text)
    assert page.status_code == 200 and len(fresh) == 10 and not set(fresh) & set(enrolled["codes"])
    assert _audit("totp_recovery_codes", enrolled["id"])
    assert sign_in(make_client(), "tfa_user", enrolled["codes"][0]).status_code == 400
    assert sign_in(make_client(), "tfa_user", fresh[0]).status_code == 302


def _require_for(role: str, required: bool = True) -> None:
    from crm_admin.accounts.models import SysRole
    from crm_admin.core.permissions import bump_policy_version

    with db.transaction() as session:
        session.execute(update(SysRole).where(SysRole.code == role).values(require_totp=required))
        bump_policy_version(session.connection())


def test_a_role_that_requires_it_enrols_before_anything_else(world: Any, app: Any, login_as: Any,
                                                             make_client: Any, clock: Clock) -> None:
    from tests.security.test_routes import probes

    _require_for("manager")
    client = login_as("mgr_a")
    home = client.get("/admin/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"].endswith(PAGE)
    page = client.get(PAGE)
    assert page.status_code == 200 and 'id="two-factor-required"' in page.text
    # every other page of the app leads to the enrolment page (or sign-out), nothing else opens
    opened = []
    for probe in probes(app, world):
        if probe.method != "GET" or probe.url.startswith((PAGE, "/admin/logout")):
            continue
        response = client.get(probe.url, follow_redirects=False)
        if response.status_code != 302 or not response.headers["location"].endswith(PAGE):
            opened.append(f"{probe.url}: {response.status_code}")
    assert not opened, opened[:20]
    secret, _codes = enrol(client, clock)
    assert client.get("/admin/").status_code == 200
    # from now on the code is asked at every sign-in
    clock.step()
    assert sign_in(make_client(), "mgr_a", clock.code(secret)).status_code == 302
    # a role without the requirement: signs in with the password alone
    lead = login_as("lead")
    assert lead.get("/admin/", follow_redirects=False).status_code == 200


def test_an_administrator_requires_it_for_a_role_on_the_role_form(admin_client: Any, make_user: Any,
                                                                    login_as: Any) -> None:
    from crm_admin.accounts.models import SysRole

    make_user("tfa_role", ["sales_lead"])
    with db.session_factory()() as session:
        role_id = session.execute(select(SysRole.id).where(SysRole.code == "sales_lead")).scalar_one()
    page = admin_client.get(f"/admin/sys-role/edit/{role_id}")
    assert page.status_code == 200 and "须两步验证" in page.text and 'name="require_totp"' in page.text
    saved = _post(admin_client, {"code": "sales_lead", "name": "销售主管", "data_scope": "dept_tree",
                                 "is_active": "y", "require_totp": "y", "save": "Save"},
                  f"/admin/sys-role/edit/{role_id}")
    assert saved.status_code == 302, saved.text[-1500:]
    with db.session_factory()() as session:
        assert session.get(SysRole, role_id).require_totp is True
    assert any("require_totp" in (a.changes or {}) for a in _audit("update"))
    # takes effect at once (the policy version moved): the role's users must enrol
    home = login_as("tfa_role").get("/admin/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"].endswith(PAGE)


def test_an_administrator_resets_a_lost_second_factor(enrolled: dict[str, Any], admin_client: Any,
                                                      login_as: Any, make_client: Any, make_user: Any) -> None:
    user_page = f"/admin/users/{enrolled['id']}"
    assert "已启用" in admin_client.get(user_page).text
    # someone without the right to edit users cannot
    make_user("tfa_other", ["manager"])
    other = login_as("tfa_other")
    refused = other.post(user_page, data={"op": "reset_2fa", "csrf_token": csrf_token(other)},
                         follow_redirects=False)
    assert refused.status_code == 403
    assert _user("tfa_user").totp_enabled_at is not None
    done = _post(admin_client, {"op": "reset_2fa"}, user_page)
    assert done.status_code == 200 and "已重置" in done.text
    assert _audit("totp_reset", enrolled["id"])
    stored = _user("tfa_user")
    assert stored.totp_secret is None and stored.totp_enabled_at is None
    from crm_admin.accounts.models import UserRecoveryCode

    with db.session_factory()() as session:
        assert not session.execute(select(UserRecoveryCode).where(
            UserRecoveryCode.user_id == enrolled["id"])).first()
    # the user's session ended; the password alone signs in again
    assert enrolled["client"].get("/admin/", follow_redirects=False).status_code in (302, 303)
    assert login(make_client(), "tfa_user", PASSWORD).headers["location"].endswith("/admin/")
    # an administrator does not reset their own here (that is disabling without a code)
    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        admin_id = session.execute(select(SysUser.id).where(SysUser.username == "admin")).scalar_one()
    own = _post(admin_client, {"op": "reset_2fa"}, f"/admin/users/{admin_id}")
    assert own.status_code == 400


def test_admin_reset_of_a_required_role_sends_the_user_to_enrol_again(enrolled: dict[str, Any],
                                                                      admin_client: Any, login_as: Any) -> None:
    _require_for("manager")
    assert _post(admin_client, {"op": "reset_2fa"}, f"/admin/users/{enrolled['id']}").status_code == 200
    client = login_as("tfa_user")
    home = client.get("/admin/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"].endswith(PAGE)


def test_admin_signs_in_with_a_code_when_the_admin_role_requires_it(admin_client: Any, make_client: Any,
                                                                     clock: Clock) -> None:
    _require_for("admin")
    client = make_client()
    assert login(client, "admin", ADMIN_PASSWORD).status_code == 302
    assert client.get("/admin/", follow_redirects=False).headers["location"].endswith(PAGE)
    secret, _codes = enrol(client, clock)
    clock.step()
    assert sign_in(make_client(), "admin", clock.code(secret), ADMIN_PASSWORD).status_code == 302


def test_the_same_code_sent_twice_at_once_signs_in_once(enrolled: dict[str, Any], clock: Clock) -> None:
    """Two requests with the same code at the same moment (two nodes, two tabs): the user row is locked
    while the code is checked, so exactly one passes."""
    import threading

    from crm_admin.accounts.auth import _check_code_sync
    from crm_admin.core.context import Actor

    user = _user("tfa_user")
    code = clock.code(enrolled["secret"])
    results: list[Any] = []
    start = threading.Barrier(2)

    def attempt() -> None:
        start.wait()
        results.append(_check_code_sync(user.id, user.session_epoch, code, Actor(None, "", "10.0.0.9", "", "")))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    passed = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, second_factor.CodeCheck) and not r.ok]
    assert len(passed) == 1 and len(refused) == 1, results
