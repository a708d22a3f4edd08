"""How times, dates, money and yes/no are shown and entered.

Times are stored in UTC (``db.UTCDateTime``) and shown in the company's time zone
(``settings.timezone``, Asia/Shanghai): "2026-11-25 16:30". Money is ``Decimal`` shown with
thousands separators and two decimals: "1,234.56". Use these functions in templates (filters
``local_datetime``, ``local_date``, ``money``, ``yes_no``), exports and custom pages, so every
screen agrees.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlalchemy import ColumnElement, Date, Integer, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from crm_admin.core.i18n import gettext
from crm_admin.settings import get_settings

DATETIME_FORMAT = "%Y-%m-%d %H:%M"
DATE_FORMAT = "%Y-%m-%d"
_CENT = Decimal("0.01")


@lru_cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def company_tz() -> ZoneInfo:
    """The company's time zone (settings.timezone): every date a user sees or that decides
    "today" or "overdue" is taken in it."""

    return _zone(get_settings().timezone)


def local_now() -> dt.datetime:
    return dt.datetime.now(company_tz())


def to_local(value: dt.datetime) -> dt.datetime:
    """An instant in the company's time zone (a naive value is taken as UTC, as stored)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(company_tz())


def local_to_utc(value: dt.datetime) -> dt.datetime:
    """A wall-clock time typed by a user (company time zone) → aware UTC for storage."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=company_tz())
    return value.astimezone(dt.UTC)


def local_today() -> dt.date:
    return local_now().date()


def day_start_utc(day: dt.date) -> dt.datetime:
    """The UTC instant at which ``day`` starts in the company's time zone."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=company_tz()).astimezone(dt.UTC)


def format_datetime(value: dt.datetime | None, *, seconds: bool = False, fmt: str | None = None) -> str:
    if value is None:
        return ""
    return to_local(value).strftime(fmt or DATETIME_FORMAT + (":%S" if seconds else ""))


def format_date(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = to_local(value).date()
    return value.strftime(DATE_FORMAT)


def format_money(value: Decimal | int | str | None) -> str:
    """1234.5 → "1,234.50" (at least two decimals, more if the value carries them)."""
    if value is None or value == "":
        return ""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return str(value)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(_CENT)
    return f"{amount:,f}"


def format_bool(value: bool | None) -> str:
    if value is None:
        return ""
    return gettext("是") if value else gettext("否")


def code_cell(value: Any) -> Markup:
    """A code someone typed (a role code, a dictionary value), shown as a code: ``<code>sales_lead</code>``.

    Screens show words, not codes; where the code itself is what the screen is about (the dictionary,
    the roles) it is set apart so that nobody takes it for a label (escaped: it is user data)."""
    return html('<code class="crm-code">{}</code>', "" if value is None else value)


def _empty(_value: Any) -> str:
    return ""


# CrmModelView's column_type_formatters (list and details): looked up by the value's exact type.
TYPE_FORMATTERS: dict[type, Any] = {
    type(None): _empty,
    bool: format_bool,
    dt.datetime: format_datetime,
    dt.date: format_date,
    Decimal: format_money,
}


# ----- the company's day in SQL -----------------------------------------------------------------

class _LocalDate(FunctionElement[dt.date]):
    """``DATE(utc_column + offset)``: the company's calendar day of a stored UTC time, for grouping."""

    type = Date()
    inherit_cache = True
    name = "local_date"


@compiles(_LocalDate)
def _local_date_default(element: _LocalDate, compiler: Any, **kw: Any) -> str:
    column, minutes = list(element.clauses)
    return f"DATE({compiler.process(column, **kw)} + ({compiler.process(minutes, **kw)}) * INTERVAL '1 minute')"


@compiles(_LocalDate, "sqlite")
def _local_date_sqlite(element: _LocalDate, compiler: Any, **kw: Any) -> str:
    column, minutes = list(element.clauses)
    # whole seconds only ("YYYY-MM-DD HH:MM:SS" of the stored text): SQLite rounds a time to the
    # millisecond, which puts 23:59:59.9996 on the next day; Python (the sealed daily totals) does not
    return f"date(substr({compiler.process(column, **kw)}, 1, 19), ({compiler.process(minutes, **kw)}) || ' minutes')"


@compiles(_LocalDate, "mysql")
@compiles(_LocalDate, "mariadb")
def _local_date_mysql(element: _LocalDate, compiler: Any, **kw: Any) -> str:
    column, minutes = list(element.clauses)
    return f"DATE(DATE_ADD({compiler.process(column, **kw)}, INTERVAL {compiler.process(minutes, **kw)} MINUTE))"


def local_date_sql(column: Any) -> ColumnElement[dt.date]:
    """The company's day of a UTC time column, computed by the database (a fixed offset: the company's
    current one, which for Asia/Shanghai never changes)."""
    offset = local_now().utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    # an integer rendered as a literal: SELECT and GROUP BY then carry the same text, which MySQL's
    # ONLY_FULL_GROUP_BY requires (two bound parameters would be two different expressions)
    return _LocalDate(column, literal_column(str(minutes), Integer()))


def _field(item: Any, name: int | str) -> Any:
    """``item[name]``, or the attribute ``name`` of an object (as a template's ``item[name]`` does)."""
    try:
        return item[name]
    except (TypeError, LookupError):
        if isinstance(name, str):
            return getattr(item, name)
        raise


def html(template: str, *values: Any) -> Markup:
    """``Markup(template).format(*values)`` for a template of plain ``{}`` fields: each value escaped
    (a ``Markup`` value kept as it is), at a fraction of the cost — ``Markup.format`` runs Python's
    pure-Python ``string.Formatter``, which a list page called a few hundred times. ``template`` is
    always a literal of the code, never data."""
    return Markup(template.format(*[escape(v) for v in values]))  # nosec B704: every value is escaped


def select_options(items: Any, selected: Any = None, key: int | str = 0, text: int | str = 1,
                   translate: bool = False) -> Markup:
    """The ``<option>``s of a drop-down: ``item[key]`` is the value, ``item[text]`` the label (through
    ``tr`` when ``translate``); the option whose value reads as ``selected`` is selected. Built in one
    pass here because a picker of every manager in scope has hundreds of options, and rendering them
    one by one in the template took a list page several milliseconds."""
    from jinja2 import Undefined

    from crm_admin.core.i18n import tr

    chosen = None if selected is None or isinstance(selected, Undefined) else str(selected)
    return Markup("".join(  # nosec B704: a literal tag around escaped values
        '<option value="{}"{}>{}</option>'.format(
            escape(value), " selected" if chosen is not None and str(value) == chosen else "",
            escape(tr(label) if translate else label))
        for value, label in ((_field(item, key), _field(item, text)) for item in items)))
