"""Cell texts into values, for importers: dates, numbers that fit their column, yes/no.

A value that cannot be read raises ``RowError`` with a message naming the sheet's column; the row
goes into the error workbook with it. (Dictionary labels: ``crm_admin.dictionary.cells``.)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from crm_admin.core import limits
from crm_admin.core.errors import UserError
from crm_admin.imports.spec import RowError


def cell_text(value: Any) -> Any:
    """A cell's value as the text an importer reads (None stays None)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # phones and codes typed as numbers
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def parse_date_cell(text: str, label: str) -> dt.date | None:
    if not text:
        return None
    candidate = text.strip().replace("/", "-").replace(".", "-").replace("年", "-").replace("月", "-").rstrip("日")
    candidate = candidate.split(" ")[0].split("T")[0]
    try:
        parts = [int(p) for p in candidate.split("-")]
        if len(parts) == 3:
            return dt.date(parts[0], parts[1], parts[2])
    except ValueError:
        pass
    raise RowError(f"{label}“{text}”不是有效日期(应为 2024-05-01 这样的格式)")


def parse_decimal_cell(text: str, model: type, key: str, label: str) -> Decimal | None:
    """A number from a cell (``1,234.5``) that fits ``model.key``'s column; None when blank."""
    try:
        return limits.parse_decimal(text, model, key, label)
    except UserError as exc:
        raise RowError(exc.message.rstrip("。")) from None


def parse_int_cell(text: str, model: type, key: str, label: str) -> int | None:
    """A whole number from a cell that fits ``model.key``'s column; None when blank."""
    try:
        return limits.parse_integer(text, model, key, label)
    except UserError as exc:
        raise RowError(exc.message.rstrip("。")) from None


def parse_bool_cell(text: str, label: str) -> bool | None:
    if not text:
        return None
    value = text.strip().lower()
    if value in ("是", "y", "yes", "true", "1", "√", "✓"):
        return True
    if value in ("否", "n", "no", "false", "0", "×"):
        return False
    raise RowError(f"{label}只能填“是”或“否”")
