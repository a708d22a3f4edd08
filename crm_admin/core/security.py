"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import os
import re
import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from crm_admin.settings import get_settings


@cache
def _hasher() -> PasswordHasher:
    """argon2id with OWASP's recommended minimum by default (19 MiB, 2 passes, 1 lane; settings
    ``password_hash_*``): about 20 ms of one core per check, so a small server keeps answering while a
    whole sales team signs in at 9 a.m. The library's default (64 MiB, 3 passes, 4 lanes) costs ~150 ms
    of CPU per login. Hashes made with other parameters are re-made at the user's next login."""
    settings = get_settings()
    return PasswordHasher(time_cost=settings.password_hash_passes,
                          memory_cost=settings.password_hash_memory_kib, parallelism=1)


@cache
def _dummy_hash() -> str:
    """Verified against when the username does not exist, so both paths cost the same time."""
    return _hasher().hash("not-a-real-password-0")


MIN_PASSWORD_LENGTH = 8

# At most one hash per core runs at a time, so a burst of logins queues instead of growing memory and
# starving every other request of CPU.
_hash_slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def hash_password(password: str) -> str:
    with _hash_slots:
        return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        with _hash_slots:
            return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def password_problems(password: str, *, username: str = "") -> list[str]:
    """What is wrong with a new password, as messages for the user (empty list: acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    if len(password) > 128:
        problems.append("密码不能超过 128 位")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append("密码须同时包含字母和数字")
    if username and password.strip().lower() == username.strip().lower():
        problems.append("密码不能与用户名相同")
    return problems
