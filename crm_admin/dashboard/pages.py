"""Helpers shared by the workflow pages (dashboard, care workbench, transfer, churn handling).

Custom pages run their database work in a worker thread (the sessions are synchronous), check the
session's CSRF token on every POST, and show a refusal (``UserError``) as a message on the page
instead of an error page.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import anyio
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from crm_admin.settings import get_settings


def tz() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def local_now() -> dt.datetime:
    return dt.datetime.now(tz())


def local_today() -> dt.date:
    return local_now().date()


def to_local(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(tz())


def fmt_dt(value: dt.datetime | None) -> str:
    local = to_local(value)
    return local.strftime("%Y-%m-%d %H:%M") if local else ""


def fmt_date(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def fmt_money(value: Decimal | int | None) -> str:
    return f"{Decimal(value or 0):,.2f}"


def parse_local_datetime(text: str) -> dt.datetime | None:
    """``2026-11-25T09:30`` (an ``<input type=datetime-local>``) in local time → aware UTC."""
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=tz()).astimezone(dt.UTC)
        except ValueError:
            continue
    return None


def parse_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text and text.strip() else None
    except ValueError:
        return None


def parse_int(text: Any) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def csrf_of(request: Request) -> str:
    return str(request.session.get("csrf", ""))


def require_csrf(request: Request, form: FormData) -> None:
    """Refuse a POST whose token does not match the session's (a forged cross-site request)."""
    expected = csrf_of(request)
    given = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
    if not expected or not hmac.compare_digest(expected, given):
        raise HTTPException(status_code=403, detail="请求已过期或来源不明,请刷新页面后重试。")


async def run_sync[T](fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


def base_context(request: Request, title: str, **extra: Any) -> dict[str, Any]:
    return {"title": title, **extra}
