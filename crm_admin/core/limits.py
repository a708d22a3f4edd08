"""What a column can hold, read from the column itself, and the one check every write path uses.

MariaDB and MySQL in strict mode refuse a value that does not fit its column (10^15 in a
``DECIMAL(14,2)`` price, three billion in an ``INT``, 200 characters in a ``VARCHAR(128)``) with an
error that carries the SQL; SQLite stores it. So every value is checked here first, against limits
derived from the model's columns, and refused with a message naming the field and what it allows:

* ``Numeric(p, s)``: less than 10^(p-s) in size, at most ``s`` decimal places;
* ``SmallInteger`` / ``Integer`` / ``BigInteger``: MySQL's signed 16 / 32 / 64-bit ranges;
* ``String(n)``: ``n`` characters; ``Text``: MySQL ``TEXT``'s 65,535 bytes (UTF-8);
* a bound the business needs (no negative price, a probability up to 100) is declared on the
  column as ``info={"min": 0}`` / ``info={"max": 100}`` and read only here.

The narrowest backend decides everywhere: data kept on SQLite must fit MariaDB after a move, and a
form must answer the same on both.

Where the check runs:

* forms: ``core/forms.py`` puts a ``FitsColumn`` validator on every field built from a column;
* every ORM flush, whatever path set the attributes (form save, service, job): the ``before_flush``
  listener below checks new rows and changed attributes, and refuses with a ``UserError``;
* imports and custom pages, which write without the ORM or parse text themselves:
  ``parse_decimal`` / ``parse_integer`` / ``check_values`` / ``check_value``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Enum,
    Float,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    event,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from crm_admin.core.errors import UserError

# MySQL's (and MariaDB's) signed integer types; SQLite would take 64 bits in any of them.
INTEGER_RANGES: dict[type[TypeEngine[Any]], tuple[int, int]] = {
    SmallInteger: (-(2**15), 2**15 - 1),
    BigInteger: (-(2**63), 2**63 - 1),
    Integer: (-(2**31), 2**31 - 1),
}
TEXT_MAX_BYTES = 65_535  # MySQL TEXT

Kind = Literal["decimal", "integer", "string", "text"]


@dataclass(frozen=True)
class Limit:
    kind: Kind
    low: Decimal | int | None = None
    high: Decimal | int | None = None
    places: int = 0  # decimal places a decimal column keeps
    length: int | None = None  # characters of a VARCHAR
    max_bytes: int | None = None  # UTF-8 bytes of a TEXT

    def describe(self) -> str:
        """The allowed range as a salesperson reads it: ``0 ~ 999,999,999,999.99,最多 2 位小数``."""
        if self.kind == "string":
            return f"最多 {self.length:,} 个字符"
        if self.kind == "text":
            return f"最多 {self.max_bytes:,} 字节,约 {(self.max_bytes or 0) // 3:,} 个汉字"
        text = f"{_number(self.low, self.places)} ~ {_number(self.high, self.places)}"
        if self.kind == "decimal" and self.places:
            text += f",最多 {self.places} 位小数"
        return text

    def problem(self, value: Any, label: str) -> str | None:
        """Why ``value`` does not fit (a message naming ``label``), or None when it does."""
        if value is None:
            return None
        if self.kind in ("string", "text"):
            text = value if isinstance(value, str) else str(value)
            if self.length is not None and len(text) > self.length:
                return f"{label}不能超过 {self.length:,} 个字符(现有 {len(text):,} 个)。"
            if self.max_bytes is not None:
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > self.max_bytes:
                    return f"{label}过长({self.describe()},现有 {size:,} 字节)。"
            return None
        number = _as_decimal(value)
        if number is None:
            noun = "整数" if self.kind == "integer" or not self.places else "数字"
            return f"{label}必须是{noun}({self.describe()})。"
        if self.kind == "integer" and number != number.to_integral_value():
            return f"{label}必须是整数({self.describe()})。"
        if self.low == 0 and number < 0:
            return f"{label}不能为负数({self.describe()})。"
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            return f"{label}超出允许范围({self.describe()})。"
        if self.kind == "decimal" and _places(number) > self.places:
            if not self.places:
                return f"{label}必须是整数({self.describe()})。"
            return f"{label}最多只能有 {self.places} 位小数({self.describe()})。"
        return None

    def check(self, value: Any, label: str, field: str | None = None) -> None:
        message = self.problem(value, label)
        if message:
            raise UserError(message, field=field)


def _number(value: Decimal | int | None, places: int) -> str:
    if value is None:
        return ""
    if isinstance(value, int) or value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value:,.{places}f}"


def _as_decimal(value: Any) -> Decimal | None:
    """A finite Decimal for a number or numeric text; None when it is not one."""
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        try:
            number = Decimal(str(value).replace(",", "").strip())
        except (InvalidOperation, ValueError):
            return None
    return number if number.is_finite() else None


def _places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _base_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    while isinstance(type_, TypeDecorator):
        impl = type_.impl
        type_ = impl() if isinstance(impl, type) else impl
    return type_


def column_limit(column: Any) -> Limit | None:
    """The limit of a mapped column, or None for columns without one (dates, booleans, JSON, keys)."""
    type_ = _base_type(column.type)
    info = column.info
    if isinstance(type_, Numeric) and not isinstance(type_, Float):
        precision, scale = type_.precision, type_.scale or 0
        if precision is None:
            return None
        high = (Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale)).quantize(
            Decimal(1).scaleb(-scale))
        low: Decimal = -high
        if "min" in info:
            low = max(low, Decimal(str(info["min"])))
        if "max" in info:
            high = min(high, Decimal(str(info["max"])))
        return Limit("decimal", low, high, places=scale)
    if isinstance(type_, Integer):
        lo, hi = next(r for t, r in INTEGER_RANGES.items() if isinstance(type_, t))
        if "min" in info:
            lo = max(lo, int(info["min"]))
        if "max" in info:
            hi = min(hi, int(info["max"]))
        return Limit("integer", lo, hi)
    if isinstance(type_, String) and not isinstance(type_, Enum):
        if type_.length:
            return Limit("string", length=type_.length)
        if isinstance(type_, Text):
            return Limit("text", max_bytes=TEXT_MAX_BYTES)
    return None


def model_limits(model: type) -> dict[str, tuple[Column[Any], Limit]]:
    """attribute key → (column, limit) for every limited, non-key column of a mapped class."""
    return _model_limits(model)


@functools.cache
def _model_limits(model: type) -> dict[str, tuple[Column[Any], Limit]]:
    mapper: Any = sa_inspect(model)
    out: dict[str, tuple[Column[Any], Limit]] = {}
    for prop in mapper.column_attrs:
        if len(prop.columns) != 1:
            continue
        column = prop.columns[0]
        if not isinstance(column, Column) or column.primary_key or column.foreign_keys:
            continue
        limit = column_limit(column)
        if limit is not None:
            out[prop.key] = (column, limit)
    return out


# ----- labels: the name a field has on the screen, for messages raised far from any form -----------

_LABELS: dict[tuple[str, str], str] = {}


def register_labels(model: type, labels: dict[str, Any]) -> None:
    """Remember the screen names of ``model``'s fields (each admin view registers its column labels)."""
    table = getattr(model, "__tablename__", "")
    for key, label in labels.items():
        if isinstance(key, str) and label:
            _LABELS.setdefault((table, key), str(label))


def label_of(model: type, key: str) -> str:
    # no view registered one (the command line builds none): the field's own name, quoted
    return _LABELS.get((getattr(model, "__tablename__", ""), key)) or f"“{key}”"


# ----- checks --------------------------------------------------------------------------------

def check_value(model: type, key: str, value: Any, label: str | None = None) -> None:
    """Refuse (UserError on ``key``) a value that does not fit ``model.key``'s column."""
    found = model_limits(model).get(key)
    if found is not None:
        found[1].check(value, label or label_of(model, key), field=key)


def check_values(model: type, values: dict[str, Any], labels: dict[str, str] | None = None) -> None:
    """Every value of a row about to be written without the ORM (an import's INSERT)."""
    limits = model_limits(model)
    for key, value in values.items():
        found = limits.get(key)
        if found is not None:
            found[1].check(value, (labels or {}).get(key) or label_of(model, key), field=key)


def check_object(obj: Any, *, changed_only: bool) -> None:
    """Every limited attribute of a mapped object (only those changed since loading, if asked)."""
    model = type(obj)
    limits = model_limits(model)
    if not limits:
        return
    state: Any = sa_inspect(obj)
    values = state.dict
    for key, (_column, limit) in limits.items():
        if key not in values:
            continue
        if changed_only and not state.attrs[key].history.has_changes():
            continue
        if isinstance(values[key], ClauseElement):  # computed by the database (a counter + 1…)
            continue
        limit.check(values[key], label_of(model, key), field=key)


def parse_decimal(text: Any, model: type, key: str, label: str | None = None) -> Decimal | None:
    """Text typed into a page or a sheet → a Decimal that fits ``model.key`` (None when blank)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    found = model_limits(model).get(key)
    label = label or label_of(model, key)
    number = _as_decimal(text)
    if found is not None:
        found[1].check(text if number is None else number, label, field=key)
    if number is None:
        raise UserError(f"{label}必须是数字。", field=key)
    return number


def parse_integer(text: Any, model: type, key: str, label: str | None = None) -> int | None:
    """Text typed into a page or a sheet → an int that fits ``model.key`` (None when blank)."""
    number = parse_decimal(text, model, key, label)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise UserError(f"{label or label_of(model, key)}必须是整数。", field=key)
    return int(number)


@event.listens_for(Session, "before_flush")
def _check_before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    """The last word before anything reaches the database: nothing that would not fit is sent."""
    for obj in session.new:
        check_object(obj, changed_only=False)
    for obj in session.dirty:
        check_object(obj, changed_only=True)


# ----- numbers typed into list filters ---------------------------------------------------------

def filter_number(text: Any, model: type, key: str) -> Decimal | None:
    """A number typed into a list filter on ``model.key`` (price from/to…): None when it is not a
    finite number; brought within one step of the column's range otherwise, which selects the same
    rows (nothing stored lies outside it) without values the database cannot compare (1e400, NaN)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    number = _as_decimal(text)
    found = model_limits(model).get(key)
    if number is None or found is None or found[1].low is None or found[1].high is None:
        return None
    low, high = Decimal(found[1].low) - 1, Decimal(found[1].high) + 1
    return max(low, min(high, number))
