"""``Idempotency-Key`` on creates: the same key from the same user gets the first answer again.

The key is claimed first, in a transaction of its own (a unique row per user and key), so two copies
of one request sent at once create one row: the second waits for nothing and answers 409 while the
first runs, and the first answer afterwards. A failed create releases the key (the client may send it
again); a successful one keeps its answer for ``KEEP``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from crm_admin.api.models import ApiIdempotency
from crm_admin.api.problems import Problem
from crm_admin.core.principal import Principal
from crm_admin.db import transaction, utcnow

KEEP = dt.timedelta(hours=24)
REUSED = "同一个 Idempotency-Key 已用于另一个请求。"
RUNNING = "使用同一个 Idempotency-Key 的请求正在处理中,请稍后重试。"


def _fingerprint(request: Request, data: dict[str, Any]) -> str:
    raw = json.dumps([request.method, request.url.path, data], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _replay(row: ApiIdempotency) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if row.location:
        headers["Location"] = row.location
    if row.etag:
        headers["ETag"] = row.etag
    return Response(row.response_body or "", status_code=int(row.status_code or 200),
                    media_type="application/json", headers=headers)


def _claim(user_id: int, key: str, fingerprint: str) -> ApiIdempotency | None:
    """None when the key is now ours; the stored row when it was used before."""
    now = utcnow()
    try:
        with transaction() as session:
            # answers older than a day are forgotten (a few at a time, by whoever claims a key)
            old = select(ApiIdempotency.id).where(ApiIdempotency.created_at < now - KEEP).limit(100)
            stale = list(session.execute(old).scalars())
            if stale:
                session.execute(delete(ApiIdempotency).where(ApiIdempotency.id.in_(stale)))
            session.add(ApiIdempotency(user_id=user_id, idem_key=key, request_hash=fingerprint, created_at=now))
            session.flush()
        return None
    except IntegrityError:
        with transaction() as session:
            row = session.execute(select(ApiIdempotency).where(
                ApiIdempotency.user_id == user_id, ApiIdempotency.idem_key == key)).scalar_one_or_none()
        if row is None:  # released meanwhile: try once more
            return _claim(user_id, key, fingerprint)
        return row


def once(request: Request, principal: Principal, key: str | None, data: dict[str, Any],
         run: Callable[[], Response]) -> Response:
    if not key:
        return run()
    key = key.strip()[:128]
    fingerprint = _fingerprint(request, data)
    used = _claim(principal.id, key, fingerprint)
    if used is not None:
        if used.request_hash != fingerprint:
            raise Problem(422, REUSED)
        if used.status_code is None:
            raise Problem(409, RUNNING)
        return _replay(used)
    try:
        response = run()
    except BaseException:
        with transaction() as session:
            session.execute(delete(ApiIdempotency).where(ApiIdempotency.user_id == principal.id,
                                                         ApiIdempotency.idem_key == key))
        raise
    body = bytes(response.body).decode("utf-8")
    with transaction() as session:
        session.execute(update(ApiIdempotency).where(
            ApiIdempotency.user_id == principal.id, ApiIdempotency.idem_key == key).values(
            status_code=response.status_code, response_body=body,
            location=response.headers.get("location"), etag=response.headers.get("etag")))
    return response
