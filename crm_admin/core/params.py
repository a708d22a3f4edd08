"""Values read from a request — query strings, form fields, path segments — one bounded parser per kind.

A number that reaches SQL must fit the column it is compared with or stored in (ids are MySQL ``INT``:
at most 2,147,483,647; SQLite refuses Python integers beyond 64 bits with an exception). A value that
does not parse or does not fit is treated as absent, never passed on: a typed or forged
``?page=99999999999999999999`` gets the last page's neighbourhood, not a server error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from starlette.convertors import Convertor, register_url_convertor

from crm_admin.core.errors import UserError
from crm_admin.core.formatting import company_tz

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
# Pages further than this hold nothing anyone reads (20 rows a page: 20 million rows).
PAGE_MAX = 1_000_000
_MAX_DIGITS = 19


def parse_int(value: Any, *, minimum: int = INT_MIN, maximum: int = INT_MAX) -> int | None:
    """An integer within [minimum, maximum], or None (absent, not a number, out of range)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    digits = text.removeprefix("-").removeprefix("+")
    if not digits or len(digits) > _MAX_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    number = int(text)
    return number if minimum <= number <= maximum else None


def parse_id(value: Any) -> int | None:
    """A row id (a positive ``INT``), or None."""
    return parse_int(value, minimum=1)


def parse_page(value: Any) -> int:
    """A page number: 1 when absent or malformed, at most ``PAGE_MAX``."""
    text = str(value or "").strip()
    if text.isascii() and text.isdigit() and len(text) > len(str(PAGE_MAX)):
        return PAGE_MAX  # a huge page number: as far as pages go
    number = parse_int(text, minimum=1)
    return min(number, PAGE_MAX) if number is not None else 1


class IdConvertor(Convertor[int]):
    """``{name:int}`` in a route path: a positive id that fits an ``INT`` column (at most 10 digits).

    Registered under Starlette's own ``int`` name, so every route — ours and SQLAdmin's — gets it: a
    path with a 20-digit number or a NUL byte simply matches no route (404).
    """

    # 0 … 2147483647 spelled out digit by digit: a route's regex decides whether it matches, and a
    # convertor that raised instead would turn a typed URL into a server error
    regex = ("[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
             "|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7]")

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


def install_path_convertors() -> None:
    """Call before any route is built (the app factory does)."""
    register_url_convertor("int", IdConvertor())


# ----- dates and times typed by a user (in the company's time zone) ------------------------------


def parse_date(value: Any) -> dt.date | None:
    """``2026-11-25`` (a date input; a longer ISO text counts by its date), or None."""
    text = str(value or "").strip()[:10]
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_local_datetime(value: Any) -> dt.datetime | None:
    """``2026-11-25T09:30`` (a datetime-local input) in the company's time zone → aware UTC, or None."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=company_tz())
    return when.astimezone(dt.UTC)


def _read_optional[T](value: Any, parse: Callable[[Any], T | None], field: str, message: str) -> T | None:
    """An optional field of a form: empty is none, anything else must parse (else UserError)."""
    if not str(value or "").strip():
        return None
    parsed = parse(value)
    if parsed is None:
        raise UserError(message, field=field)
    return parsed


def read_date(value: Any, *, field: str, message: str = "日期格式不正确,应为 YYYY-MM-DD。") -> dt.date | None:
    """An optional date field of a form: empty is none, anything else must be a date (UserError)."""
    return _read_optional(value, parse_date, field, message)


def read_local_datetime(value: Any, *, field: str, message: str = "时间格式不正确。") -> dt.datetime | None:
    """An optional date-and-time field of a form: empty is none, anything else must be a time."""
    return _read_optional(value, parse_local_datetime, field, message)
