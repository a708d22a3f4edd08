"""Rows as the API shows them: fields, types (their JSON Schema through pydantic), ETags, keyset pages."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from sqlalchemy import ColumnElement, Select, and_, inspect, or_
from sqlalchemy.orm import Session

from crm_admin.api.problems import Problem
from crm_admin.core import masking
from crm_admin.core.principal import Principal

BAD_CURSOR = "分页游标无效,请从第一页重新开始。"
MAX_LIMIT = 200
DEFAULT_LIMIT = 50

Filter = Callable[[str, Principal], ColumnElement[bool] | None]


@dataclass(frozen=True)
class Spec:
    """One collection of the API, over one model and the admin view that saves it."""

    path: str  # URL segment: "customers"
    model: type
    resource: str  # the permission resource: "customer"
    title: str  # Chinese name, for the OpenAPI document
    fields: tuple[str, ...]  # what a row shows
    writable: tuple[str, ...] = ()  # what a create/update may set (empty: read-only)
    required: tuple[str, ...] = ()  # what a create must give
    filters: Mapping[str, Filter] = field(default_factory=dict)
    deletable: bool = False
    kind: str = ""  # the kind of row (tests: whose row is whose)

    @property
    def versioned(self) -> bool:
        return "version" in inspect(self.model).columns  # type: ignore[union-attr]


def python_type(model: type, name: str) -> Any:
    column: Any = inspect(model).columns[name]  # type: ignore[union-attr]
    kind: Any = str
    for sql_type in (column.type, getattr(column.type, "impl_instance", None)):  # a TypeDecorator's own type
        try:
            found = sql_type.python_type if sql_type is not None else object
        except NotImplementedError:
            continue
        if found is not object:
            kind = found
            break
    return kind, bool(column.nullable)


def out_type(model: type, name: str) -> Any:
    kind, nullable = python_type(model, name)
    if kind is Decimal:
        kind = str  # money: a decimal string ("1234.50"), never a float
    return kind | None if nullable else kind


def output_model(spec: Spec) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (out_type(spec.model, name), ...) for name in spec.fields}
    return create_model(f"{_camel(spec.path)}Out", **fields)


def input_model(spec: Spec, *, partial: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name in spec.writable:
        kind, _nullable = python_type(spec.model, name)
        if partial or name not in spec.required:
            fields[name] = (kind | None, None)
        else:
            fields[name] = (kind, ...)
    suffix = "Patch" if partial else "Create"
    return create_model(f"{_camel(spec.path)}{suffix}", __config__=ConfigDict(extra="forbid"), **fields)


def page_model(spec: Spec, item: type[BaseModel]) -> type[BaseModel]:
    return create_model(f"{_camel(spec.path)}Page", items=(list[item], ...),  # type: ignore[valid-type]
                        next_cursor=(str | None, ...))


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def serialize(spec: Spec, rows: Sequence[Any], session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Rows as dicts, personal data masked exactly as the pages mask it for this principal."""
    masked = masking.masked_rows(session, principal, spec.model, rows)
    return [{name: jsonable(masked.shown(row, name)) for name in spec.fields} for row in rows]


def etag_of(row: Any) -> str:
    """The row's version (``version`` where the model keeps one, else its last change)."""
    version = getattr(row, "version", None)
    if version is not None:
        return f'"{int(version)}"'
    stamp = getattr(row, "updated_at", None)
    digest = hashlib.sha256(str(stamp).encode()).hexdigest()[:16]
    return f'"u{digest}"'


def matches(if_match: str, etag: str) -> bool:
    wanted = [part.strip().removeprefix("W/") for part in if_match.split(",")]
    return "*" in wanted or etag in wanted


# ----- keyset pages -----------------------------------------------------------------------------

SORTS = ("id", "-id", "updated", "-updated")


def encode_cursor(sort: str, row: Any) -> str:
    value = row.updated_at.isoformat() if sort.lstrip("-") == "updated" else None
    raw = json.dumps({"s": sort, "v": value, "i": int(row.id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> tuple[dt.datetime | None, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["s"] != sort or not isinstance(data["i"], int):
            raise ValueError
        value = dt.datetime.fromisoformat(data["v"]) if data["v"] is not None else None
        if sort.lstrip("-") == "updated" and value is None:
            raise ValueError
        return value, data["i"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, BAD_CURSOR) from None


def keyset(stmt: Select[Any], model: Any, sort: str, cursor: str | None, limit: int) -> Select[Any]:
    """``stmt`` ordered by ``sort`` and started after ``cursor``: rows inserted meanwhile neither repeat
    nor push rows off a page (the position is a key, not an offset)."""
    descending = sort.startswith("-")
    keys = (model.updated_at, model.id) if sort.lstrip("-") == "updated" else (model.id,)
    if cursor:
        value, last_id = decode_cursor(sort, cursor)
        if len(keys) == 1:
            stmt = stmt.where(model.id < last_id if descending else model.id > last_id)
        else:
            before = model.updated_at < value if descending else model.updated_at > value
            tie = model.id < last_id if descending else model.id > last_id
            stmt = stmt.where(or_(before, and_(model.updated_at == value, tie)))
    order = [k.desc() if descending else k.asc() for k in keys]
    return stmt.order_by(*order).limit(limit + 1)
