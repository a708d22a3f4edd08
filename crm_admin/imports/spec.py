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


# What a row of an import does (the dry run shows it per row; the apply does it)
CREATE, UPDATE, UNCHANGED, REJECT = "create", "update", "unchanged", "reject"


@dataclass
class Row:
    number: int  # the row number in the sheet (header is row 1)
    raw: dict[str, Any]  # key → cell text as read
    values: dict[str, Any] | None = None  # key → normalised value, when valid (an update: the changed ones)
    error: str | None = None
    action: str = CREATE  # CREATE / UPDATE / UNCHANGED (an existing row matched); REJECT when ``error``
    target: int | None = None  # the existing row matched (its id)
    version: int | None = None  # … and its ``version`` as read
    label: str = ""  # the existing row as people name it ("C2026110001 某某有限公司")
    changes: dict[str, list[str]] | None = None  # an update: column header → [before, after] as shown

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        return "" if value is None else str(value).strip()

    @property
    def outcome(self) -> str:
        return REJECT if self.error else self.action


@dataclass(frozen=True)
class Planned:
    """What the dry run planned for a row of an updating import: checked again by the apply."""

    action: str
    target: int | None
    version: int | None


# Refusals of a row at the apply, when what the dry run showed no longer holds (``runner``)
STALE_MATCH = "预检之后该记录已被他人修改(版本 {before} → {now}),本行未更新。请重新上传文件预检后再导入"
NEW_MATCH = "预检时本行不是更新已有记录,现在却匹配到了已有记录(可能刚被他人新建或修改),本行未导入。请重新上传文件预检后再导入"
LOST_MATCH = "预检时匹配的记录已被删除、改了匹配列或已不在您的数据范围内,本行未导入。请重新上传文件预检后再导入"


@dataclass
class ImportContext:
    principal: Principal
    actor: Actor
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # per pass: in-file duplicate sets…
    planned: dict[int, Planned] | None = None  # the apply of an updating import: the dry run's plan by row

    @property
    def match_by(self) -> str:
        """The option value naming the column matched against existing rows ("" when only creating)."""
        return str(self.options.get("match_by") or "")

    @property
    def update_columns(self) -> list[str]:
        return [str(k) for k in self.options.get("update_columns") or []]

    @property
    def blank_clears(self) -> bool:
        return bool(self.options.get("blank_clears"))


class ImportSpec:
    """What a module provides to import one kind of row."""

    key: str = ""  # URL name: /admin/import/<key>
    resource: str = ""  # permission resource (action "import")
    title: str = ""  # e.g. "客户"
    order: int = 100  # place of its tab on the import page
    columns: list[Column] = []
    # Updating existing rows (optional): option value → the column matched on (e.g. "credit_code" →
    # "credit_code"), the columns an update may change, the columns a blank cell never clears
    match_keys: dict[str, str] = {}
    updatable: tuple[str, ...] = ()
    never_cleared: tuple[str, ...] = ()

    def header_of(self, key: str) -> str:
        return next((c.header for c in self.columns if c.key == key), key)

    def required_columns(self, options: dict[str, Any]) -> list[Column]:
        """The columns the header row must have. Updating: the column matched on and the columns
        picked (a row that creates still needs its required cells, checked row by row)."""
        match_by = str(options.get("match_by") or "")
        if not match_by:
            return [c for c in self.columns if c.required]
        wanted = {self.match_keys.get(match_by, ""), *(options.get("update_columns") or [])}
        return [c for c in self.columns if c.key in wanted]

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
