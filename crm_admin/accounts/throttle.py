"""Per-IP throttling of login attempts (a sliding one-minute window, per process).

Lock-out protects one account; this protects all of them from one address trying many names.
The limit is ``CRM_LOGIN_IP_MAX_PER_MINUTE``. Counts live in the process: with several workers
each enforces the limit on its own share of the requests, which still bounds a guessing run.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from crm_admin.settings import get_settings

WINDOW_SECONDS = 60.0
_MAX_TRACKED = 50_000  # addresses remembered at once; the oldest are dropped beyond that

_lock = threading.Lock()
_hits: dict[str, deque[float]] = {}


def allow(ip: str, *, now: float | None = None, limit: int | None = None) -> bool:
    """Count one login attempt from ``ip``; False when it exceeds the per-minute limit."""
    now = time.monotonic() if now is None else now
    limit = limit if limit is not None else get_settings().login_ip_max_per_minute
    key = ip or "-"
    with _lock:
        hits = _hits.get(key)
        if hits is None:
            if len(_hits) >= _MAX_TRACKED:
                _hits.pop(next(iter(_hits)))
            hits = _hits[key] = deque()
        while hits and now - hits[0] >= WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True


def reset() -> None:
    """Forget every count (tests, or an administrator after a false alarm)."""
    with _lock:
        _hits.clear()
