"""What an importer describes: its columns, and how a batch of rows is checked and written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core import limits
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.core.principal import Principal


class RowError(Exception):
    """A row that cannot be imported; the message goes into the error workbook."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    required: bool = False
    example: str = ""
    note: str = ""


@dataclass
class Row:
    number: int  # the row number in the sheet (header is row 1)
    raw: dict[str, Any]  # key → cell text as read
    values: dict[str, Any] | None = None  # key → normalised value, when valid
    error: str | None = None

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        return "" if value is None else str(value).strip()


@dataclass
class ImportContext:
    principal: Principal
    actor: Actor
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # per pass: in-file duplicate sets…


class ImportSpec:
    """What a module provides to import one kind of row."""

    key: str = ""  # URL name: /admin/import/<key>
    resource: str = ""  # permission resource (action "import")
    title: str = ""  # e.g. "客户"
    order: int = 100  # place of its tab on the import page
    columns: list[Column] = []

    def notes(self) -> list[str]:
        """Extra lines for the template's 说明 sheet (dictionary values, rules)."""
        return []

    def begin(self, session: Session, ctx: ImportContext) -> None:
        ctx.state.clear()

    def check(self, session: Session, ctx: ImportContext, rows: list[Row]) -> None:
        """Set ``row.values`` or ``row.error`` for every row of the batch."""
        raise NotImplementedError

    def apply(self, session: Session, ctx: ImportContext, rows: list[Row]) -> int:
        """Write the batch's valid rows; returns how many were written."""
        raise NotImplementedError

    def fit(self, model: type, values: dict[str, Any]) -> None:
        """Every value of a row must fit its column of ``model`` (range, decimals, length), or the row
        is refused with the sheet's own column name; rows go in by INSERT, past the ORM's check."""
        labels = {c.key: c.header for c in self.columns}
        try:
            limits.check_values(model, values, labels)
        except UserError as exc:
            raise RowError(exc.message.rstrip("。")) from None
