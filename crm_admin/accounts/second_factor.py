"""Two-factor sign-in: a TOTP authenticator app (RFC 6238, pyotp) per user and one-time recovery codes.

- **Secret at rest**: the base32 secret is stored encrypted with AES-256-GCM (``cryptography``) under a
  key derived by HKDF-SHA256 from the signing key (``CRM_SECRET_KEY``), the user's id as associated
  data (a secret copied onto another user's row does not decrypt). A database dump alone gives no
  usable secret. Changing the signing key makes every enrolled secret unreadable: those users' codes
  are refused until an administrator resets their second factor (they then enrol again).
- **Codes**: 6 digits, 30-second steps, one step either side accepted (clock drift). The step of the
  accepted code is kept (``sys_user.totp_last_step``) and a code of that step or an earlier one is
  refused: a code seen over a shoulder or in a proxy log cannot be used again. The user's row is
  locked (``FOR UPDATE``) while checking, so two requests with the same code cannot both pass.
- **Recovery codes**: ten per enrolment, shown once, kept only as argon2 hashes (the password hasher,
  ``core/security.py``); each signs in once.
- **Wrong codes** count towards the account's lock-out exactly as wrong passwords do
  (``sys_user.failed_logins`` / ``locked_until``, audited as ``login_failed`` and ``lockout``).

Services take a session and never commit; the caller owns the transaction (and the audit rows in it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from functools import cache

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from markupsafe import Markup
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from crm_admin.accounts.models import SysUser, UserRecoveryCode
from crm_admin.accounts.service import FAILURE_MEMORY
from crm_admin.core import audit
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.security import hash_password, verify_password
from crm_admin.db import utcnow
from crm_admin.settings import get_settings

ISSUER = "客户信息管理系统"
STEP_SECONDS = 30
DRIFT_STEPS = 1  # one step before and after the current one
RECOVERY_CODES = 10
_SECRET_VERSION = "v1"
_CODE = re.compile(r"^\d{6}$")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper and typed again

WRONG_CODE_MESSAGE = "验证码错误或已使用过。连续多次失败后账号将被暂时锁定。"
LOCKED_MESSAGE = "连续多次登录失败,该账号已被暂时锁定,请于 {until} 后再试;如需立即解锁,请联系系统管理员。"


# ----- the secret, encrypted at rest --------------------------------------------------------------

@cache
def _key(signing_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"crm-admin/totp-secret/v1").derive(signing_key.encode("utf-8"))


def _cipher() -> AESGCM:
    return AESGCM(_key(get_settings().resolved_secret_key()))


def encrypt_secret(user_id: int, secret: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = _cipher().encrypt(nonce, secret.encode("ascii"), f"sys_user:{user_id}".encode())
    return f"{_SECRET_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def decrypt_secret(user_id: int, stored: str | None) -> str | None:
    """The user's base32 secret; None when there is none or it cannot be read (another signing key)."""
    if not stored or not stored.startswith(f"{_SECRET_VERSION}:"):
        return None
    try:
        raw = base64.urlsafe_b64decode(stored.split(":", 1)[1])
        plain = _cipher().decrypt(raw[:12], raw[12:], f"sys_user:{user_id}".encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode("ascii")


# ----- codes ----------------------------------------------------------------------------------------

def _now() -> float:
    """The clock codes are checked against (tests move it)."""
    return time.time()


def current_step(now: float | None = None) -> int:
    return int((_now() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, *, after: int | None, now: float | None = None) -> int | None:
    """The time step within the drift window whose code is ``code`` and that is later than ``after``
    (the last accepted step); None when there is none."""
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    step = current_step(now)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if after is not None and candidate <= after:
            continue
        # every candidate is compared (in constant time each): the answer's timing tells nothing
        if pyotp.utils.strings_equal(code, totp.generate_otp(candidate)) and found is None:
            found = candidate
    return found


def normalise(code: str) -> str:
    """What the user typed, without spaces and dashes, in lower case (recovery codes are printed in groups)."""
    return re.sub(r"[\s\-]", "", code or "").lower()[:64]


def new_recovery_codes() -> list[str]:
    """Ten codes of 10 characters (about 49 bits each), shown as ``xxxxx-xxxxx``."""
    return ["".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]


def shown(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def qr_svg(uri: str) -> Markup:
    """The provisioning URI as an inline SVG QR code, made here (no image service sees the secret)."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff")
    # segno's own markup: the URI is drawn as modules, never written as text
    return Markup(svg)  # nosec B704


# ----- enrolment ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows before the first code is confirmed."""

    secret: str  # base32, grouped for typing by hand
    uri: str

    @property
    def qr(self) -> Markup:
        return qr_svg(self.uri)

    @property
    def grouped(self) -> str:
        return " ".join(self.secret[i:i + 4] for i in range(0, len(self.secret), 4))


def is_enabled(user: SysUser) -> bool:
    return user.totp_enabled_at is not None


def pending_enrolment(user: SysUser) -> Enrolment | None:
    """The secret being set up (made by ``begin_enrolment``, not confirmed yet), to show again."""
    if is_enabled(user):
        return None
    secret = decrypt_secret(user.id, user.totp_secret)
    if secret is None:
        return None
    return Enrolment(secret, _uri(user, secret))


def _uri(user: SysUser, secret: str) -> str:
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=user.username, issuer_name=ISSUER)


def begin_enrolment(session: Session, user: SysUser) -> Enrolment:
    """A new secret for ``user`` (not in force until a code confirms it). The caller commits."""
    if is_enabled(user):
        raise UserError("两步验证已启用。如需更换设备,请先停用后重新设置。")
    secret = pyotp.random_base32()
    user.totp_secret = encrypt_secret(user.id, secret)
    user.totp_last_step = None
    return Enrolment(secret, _uri(user, secret))


def confirm_enrolment(session: Session, user: SysUser, code: str, actor: Actor | None = None) -> list[str]:
    """The first code from the app turns the second factor on; returns the recovery codes (plain,
    to show once). A wrong code counts towards the lock-out. The caller commits."""
    if is_enabled(user):
        raise UserError("两步验证已启用。")
    secret = decrypt_secret(user.id, user.totp_secret)
    if secret is None:
        raise UserError("请先点击“开始设置”,再用验证器扫描二维码。")
    code = normalise(code)
    step = matching_step(secret, code, after=None) if _CODE.match(code) else None
    if step is None:
        count_wrong_code(session, user, actor, detail="启用两步验证时验证码错误")
        raise UserError("验证码不正确,请确认手机时间准确后输入验证器中当前显示的 6 位数字。")
    user.totp_enabled_at = utcnow()
    user.totp_last_step = step
    codes = _replace_recovery_codes(session, user)
    audit.record(session, "totp_enable", resource="user", resource_id=user.id, actor=actor,
                 detail=f"启用两步验证,生成 {len(codes)} 个恢复码")
    return codes


def regenerate_recovery_codes(session: Session, user: SysUser, code: str,
                              actor: Actor | None = None) -> list[str]:
    """New recovery codes (the old ones stop working), confirmed with a current code."""
    _require_current_code(session, user, code, actor, doing="重新生成恢复码")
    codes = _replace_recovery_codes(session, user)
    audit.record(session, "totp_recovery_codes", resource="user", resource_id=user.id, actor=actor,
                 detail=f"重新生成 {len(codes)} 个恢复码,原恢复码作废")
    return codes


def disable(session: Session, user: SysUser, code: str, actor: Actor | None = None) -> None:
    """The user turns their second factor off, confirmed with a current code."""
    _require_current_code(session, user, code, actor, doing="停用两步验证")
    _clear(session, user)
    audit.record(session, "totp_disable", resource="user", resource_id=user.id, actor=actor,
                 detail="用户停用两步验证")


def admin_reset(session: Session, user: SysUser, *, detail: str = "") -> bool:
    """An administrator removes the user's second factor (lost phone); the user's sessions end, and a
    user whose role requires one enrols again at the next sign-in. The caller checks the editor may
    manage this user. False when there was nothing to reset."""
    had = user.totp_secret is not None or user.totp_enabled_at is not None
    _clear(session, user)
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, "totp_reset", resource="user", resource_id=user.id,
                 detail=(detail or "管理员重置两步验证,用户登录会话已失效") if had else "重置两步验证(该用户未启用)")
    return had


def _clear(session: Session, user: SysUser) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    session.execute(delete(UserRecoveryCode).where(UserRecoveryCode.user_id == user.id))


def _replace_recovery_codes(session: Session, user: SysUser) -> list[str]:
    session.execute(delete(UserRecoveryCode).where(UserRecoveryCode.user_id == user.id))
    codes = new_recovery_codes()
    session.add_all(UserRecoveryCode(user_id=user.id, code_hash=hash_password(c)) for c in codes)
    session.flush()
    return [shown(c) for c in codes]


def _require_current_code(session: Session, user: SysUser, code: str, actor: Actor | None, *,
                          doing: str) -> None:
    if not is_enabled(user):
        raise UserError("两步验证未启用。")
    code = normalise(code)
    secret = decrypt_secret(user.id, user.totp_secret)
    step = matching_step(secret, code, after=user.totp_last_step) if secret and _CODE.match(code) else None
    if step is None or not _claim_step(session, user, step):
        count_wrong_code(session, user, actor, detail=f"{doing}时验证码错误")
        raise UserError(WRONG_CODE_MESSAGE)


def _claim_step(session: Session, user: SysUser, step: int) -> bool:
    """Record ``step`` as the last one used, unless it (or a later one) already is: one conditional
    UPDATE, so that of two requests carrying the same code at once only one passes, on any database
    (the row lock of the caller's ``FOR UPDATE`` is not taken on SQLite)."""
    t = SysUser.__table__.c
    claimed = session.execute(update(SysUser).where(
        t.id == user.id, or_(t.totp_last_step.is_(None), t.totp_last_step < step)).values(totp_last_step=step))
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    set_committed_value(user, "totp_last_step", step)
    return True


def remaining_recovery_codes(session: Session, user_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(UserRecoveryCode).where(
        UserRecoveryCode.user_id == user_id, UserRecoveryCode.used_at.is_(None))).scalar() or 0)


# ----- the second step of signing in ----------------------------------------------------------------

@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    method: str = ""  # "totp" or "recovery"
    message: str = ""
    locked_until: dt.datetime | None = None


def check_sign_in_code(session: Session, user: SysUser, code: str, actor: Actor) -> CodeCheck:
    """The code typed on the second sign-in page, for ``user`` (locked ``FOR UPDATE`` by the caller):
    a current TOTP code not used before, or an unused recovery code (then marked used). A wrong one
    counts towards the lock-out and is audited like a wrong password. The caller commits."""
    now = utcnow()
    if user.locked_until and user.locked_until > now:
        audit.record(session, "login_failed", resource="user", resource_id=user.id, success=False,
                     actor=_named(actor, user), detail=f"账号锁定期间输入验证码(用户名:{user.username})")
        return CodeCheck(False, message=LOCKED_MESSAGE, locked_until=user.locked_until)
    code = normalise(code)
    if _CODE.match(code):
        secret = decrypt_secret(user.id, user.totp_secret)
        step = matching_step(secret, code, after=user.totp_last_step) if secret else None
        if step is not None and _claim_step(session, user, step):
            return CodeCheck(True, "totp")
    elif len(code) == 10:
        for row in session.execute(select(UserRecoveryCode).where(
                UserRecoveryCode.user_id == user.id, UserRecoveryCode.used_at.is_(None))).scalars():
            if verify_password(row.code_hash, code):
                # used once, whatever runs at the same moment: the row changes only while still unused
                claimed = session.execute(update(UserRecoveryCode).where(
                    UserRecoveryCode.id == row.id, UserRecoveryCode.used_at.is_(None)).values(used_at=now))
                if getattr(claimed, "rowcount", 0) == 1:
                    return CodeCheck(True, "recovery")
                break
    until = count_wrong_code(session, user, actor, detail="动态验证码或恢复码错误")
    if until is not None:
        return CodeCheck(False, message=LOCKED_MESSAGE, locked_until=until)
    return CodeCheck(False, message=WRONG_CODE_MESSAGE)


def count_wrong_code(session: Session, user: SysUser, actor: Actor | None, *, detail: str) -> dt.datetime | None:
    """One more failed attempt on ``user``'s account, as a wrong password counts; returns the end of the
    lock when this one locks the account (its sessions then end too)."""
    settings = get_settings()
    now = utcnow()
    if user.last_failed_login_at is not None and now - user.last_failed_login_at > FAILURE_MEMORY:
        user.failed_logins = 0
    user.failed_logins = (user.failed_logins or 0) + 1
    user.last_failed_login_at = now
    who = actor if actor is None or actor.username else _named(actor, user)
    audit.record(session, "login_failed", resource="user", resource_id=user.id, success=False, actor=who,
                 detail=f"{detail}(用户名:{user.username})")
    if user.failed_logins < settings.login_max_failures:
        return None
    user.locked_until = now + dt.timedelta(minutes=settings.login_lock_minutes)
    user.failed_logins = 0
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, "lockout", resource="user", resource_id=user.id, success=False, actor=who,
                 detail=f"用户名“{user.username}”连续 {settings.login_max_failures} 次验证失败,锁定 "
                        f"{settings.login_lock_minutes} 分钟")
    return user.locked_until


def _named(actor: Actor, user: SysUser) -> Actor:
    return Actor(user.id, user.username, actor.ip, actor.user_agent, actor.request_id)


# ----- the pending state between the two steps --------------------------------------------------------

PENDING_KEY = "mfa"
PENDING_SECONDS = 300


def pending_state(user: SysUser, now: int | None = None) -> dict[str, int | str]:
    """What the (signed) session cookie carries between the password and the code: the user, the
    session version their password check saw, and when it expires. A password change, a reset, a
    disable or a lock moves the version and so ends the pending sign-in."""
    now = int(time.time()) if now is None else now
    state: dict[str, int | str] = {"uid": user.id, "epoch": user.session_epoch or 0, "exp": now + PENDING_SECONDS}
    state["mac"] = _state_mac(state)
    return state


def read_pending(value: object, now: int | None = None) -> tuple[int, int] | None:
    """(user id, session version) of a pending sign-in that has not expired; None otherwise."""
    if not isinstance(value, dict):
        return None
    try:
        uid, epoch, exp = int(value["uid"]), int(value["epoch"]), int(value["exp"])
    except (KeyError, TypeError, ValueError):
        return None
    now = int(time.time()) if now is None else now
    if exp < now or exp > now + PENDING_SECONDS:
        return None
    mac = value.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _state_mac({"uid": uid, "epoch": epoch, "exp": exp})):
        return None
    return uid, epoch


def _state_mac(state: dict[str, int | str]) -> str:
    """A MAC of its own on top of the cookie's signature: a pending state can never be mistaken for, or
    made from, another value the session carries."""
    key = hashlib.sha256(b"crm-admin/pending-sign-in/v1" + get_settings().resolved_secret_key().encode()).digest()
    text = f"{state['uid']}:{state['epoch']}:{state['exp']}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()
