"""Calls per token and sliding minute, counted for the whole cluster with the sign-in throttle's
machinery (``accounts/throttle.py``: its ``login_throttle`` rows and sliding-window arithmetic, or
Redis when ``CRM_REDIS_URL`` is set).

Counting every call in the database would cost every call a write and a commit. Instead a process
reserves a block of calls at once (``block_size``: a fiftieth of the limit) by adding the block to the
token's row of the minute, and serves the block from memory. The database never admits more than the
limit (a block is reserved only while it fits), so the limit holds across processes and nodes; calls
reserved and not used by the end of the minute are simply lost, which errs on the safe side. A limit of
50 or less reserves one call at a time, i.e. counts exactly.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from crm_admin import retry
from crm_admin.accounts import throttle
from crm_admin.accounts.models import LoginThrottle
from crm_admin.db import transaction
from crm_admin.settings import get_settings

_lock = threading.Lock()


@dataclass
class _Block:
    minute: int
    left: int


_blocks: dict[str, _Block] = {}


def block_size(limit: int) -> int:
    return max(1, limit // 50)


def key_of(token_id: int) -> str:
    return f"api-token:{token_id}"


def allow(token_id: int, *, limit: int, now: float | None = None) -> bool:
    """Count one call of the token; False when it is over the limit of the sliding minute."""
    key = key_of(token_id)
    if get_settings().redis_url:
        return throttle.allow(key, limit=limit, now=now)  # one INCR per call: cheap there
    window = throttle.Window.at(time.time() if now is None else now)
    with _lock:
        block = _blocks.get(key)
        if block is not None and block.minute == window.minute and block.left > 0:
            block.left -= 1
            return True
    granted = _reserve(key, window, limit, block_size(limit))
    if granted <= 0:
        return False
    with _lock:
        _blocks[key] = _Block(window.minute, granted - 1)
        if len(_blocks) > 10_000:  # tokens of minutes gone by
            for old in [k for k, b in _blocks.items() if b.minute < window.minute]:
                del _blocks[old]
    return True


def _reserve(key: str, window: throttle.Window, limit: int, wanted: int) -> int:
    """Add up to ``wanted`` calls to the key's row of the minute, as many as the window admits."""
    t = LoginThrottle.__table__.c
    for _attempt in range(3):
        try:
            with retry.uncounted(), transaction() as session:
                counts = dict(session.execute(
                    select(t.minute, t.attempts).where(t.ip == key, t.minute.in_((window.minute - 1, window.minute)))
                ).tuples().all())
                allowed = window.admitted_this_minute(int(counts.get(window.minute - 1, 0)), limit)
                current = counts.get(window.minute)
                grant = min(wanted, allowed - int(current or 0))
                if grant <= 0:
                    return 0
                if current is None:
                    session.add(LoginThrottle(ip=key, minute=window.minute, attempts=grant))
                    session.flush()
                    inserted = True
                else:
                    done = session.execute(update(LoginThrottle).where(
                        t.ip == key, t.minute == window.minute, t.attempts <= allowed - grant)
                        .values(attempts=t.attempts + grant))
                    if getattr(done, "rowcount", 0) != 1:
                        continue  # another process took calls meanwhile: read again
                    inserted = False
            if inserted:
                _sweep(window.minute)
            return grant
        except (IntegrityError, DBAPIError):  # the same token's first call of the minute, at once elsewhere
            continue
    return 0


def _sweep(minute: int) -> None:
    try:
        with retry.uncounted(), transaction() as session:
            throttle.sweep(session, minute)
    except DBAPIError:
        pass  # another process swept the same rows: the next sweep does it


def retry_after(now: float | None = None) -> int:
    """Seconds until the current minute's count stops weighing fully (the window slides)."""
    now = time.time() if now is None else now
    return max(1, math.ceil(throttle.WINDOW_SECONDS - now % throttle.WINDOW_SECONDS))


def forget() -> None:
    with _lock:
        _blocks.clear()
