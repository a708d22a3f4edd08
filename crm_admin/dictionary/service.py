"""Reading the data dictionary: every drop-down in the system gets its values here.

Items are cached per process and reloaded when ``dict_version`` (bumped by every dictionary change)
moves, so an edit is seen by every process on its next look-up.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.orm import Session
from wtforms import SelectField
from wtforms.validators import ValidationError

from crm_admin.accounts.models import SysMeta
from crm_admin.core import discovery, vocabulary
from crm_admin.core.errors import UserError
from crm_admin.core.i18n import blank_choice, current_locale, tr
from crm_admin.core.models import bump_counter
from crm_admin.db import Base, get_engine
from crm_admin.dictionary.models import DictItem, DictType

DICT_VERSION_KEY = "dict_version"
_CHECK_EVERY = 2.0  # seconds between version checks


@dataclass(frozen=True)
class Entry:
    type_code: str
    value: str
    label: str
    label_en: str | None
    sort: int
    is_active: bool

    def display(self) -> str:
        if current_locale() == "en" and self.label_en:
            return self.label_en
        return self.label


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: int | None = None
        self.checked = 0.0
        self.by_type: dict[str, list[Entry]] = {}
        self.type_names: dict[str, str] = {}

    def load(self, conn: Connection | None = None, *, force: bool = False) -> dict[str, list[Entry]]:
        now = time.monotonic()
        if not force and self.version is not None and now - self.checked < _CHECK_EVERY:
            return self.by_type
        def read(c: Connection) -> None:
            version = c.execute(select(SysMeta.value).where(SysMeta.key == DICT_VERSION_KEY)).scalar() or 0
            with self.lock:
                self.checked = now
                if version == self.version and not force:
                    return
                t = DictItem.__table__.c
                rows = c.execute(
                    select(t.type_code, t.value, t.label, t.label_en, t.sort, t.is_active)
                    .order_by(t.type_code, t.sort, t.id)
                )
                by_type: dict[str, list[Entry]] = {}
                for type_code, value, text, text_en, sort, active in rows:
                    by_type.setdefault(type_code, []).append(
                        Entry(type_code, value, text, text_en, sort, bool(active))
                    )
                self.by_type = by_type
                types = DictType.__table__.c
                self.type_names = dict(c.execute(select(types.code, types.name)).tuples().all())
                self.version = version

        if conn is not None:
            read(conn)
        else:
            with Session(get_engine()) as session:
                read(session.connection())
        return self.by_type


_cache = _Cache()


def _rows(type_code: str) -> list[Entry]:
    return _cache.load().get(type_code, [])


def type_name(type_code: str) -> str:
    """How a dictionary type reads (行业), or its code when it has no name."""
    _cache.load()
    return tr(_cache.type_names.get(type_code, type_code))


def type_choices(current: str | None = None) -> list[tuple[str, str]]:
    """Every dictionary type for a drop-down, by name."""
    _cache.load()
    out = [blank_choice()]
    out += sorted(((code, tr(name)) for code, name in _cache.type_names.items()), key=lambda c: c[1])
    if current and current not in _cache.type_names:
        out.append((current, current))
    return out


class DictTypeSelectField(SelectField):
    """The dictionary type of an item: a drop-down of the types by name."""

    def __init__(self, label: str | None = None, validators: Any = None, **kwargs: Any) -> None:
        kwargs.pop("choices", None)
        super().__init__(label, validators, choices=[], **kwargs)

    def process(self, formdata: Any, data: Any = None, extra_filters: Any = None) -> None:
        super().process(formdata, data, extra_filters)
        self.choices = type_choices(getattr(self, "object_data", None))

    def pre_validate(self, form: Any) -> None:
        self.data: Any
        if not self.data or self.data not in dict(self.choices):
            raise ValidationError("请选择字典类型。")


def entries(type_code: str, *, include_inactive: bool = False) -> list[Entry]:
    return [e for e in _rows(type_code) if include_inactive or e.is_active]


def label(type_code: str, value: str | None) -> str:
    """The label of a stored value; disabled items still show their label, unknown values show as is."""
    if value in (None, ""):
        return ""
    for e in _rows(type_code):
        if e.value == value:
            return e.display()
    return str(value)


def choices(type_code: str, current: str | None = None, *, blank: bool = True) -> list[tuple[str, str]]:
    """Active items for a drop-down, plus the record's current value when it has since been disabled."""
    out = [blank_choice()] if blank else []
    seen = set()
    for e in _rows(type_code):
        if e.is_active or e.value == current:
            out.append((e.value, e.display()))
            seen.add(e.value)
    if current and current not in seen:
        out.append((current, current))
    return out


def is_valid(type_code: str, value: str, *, current: str | None = None) -> bool:
    return any(e.value == value and (e.is_active or e.value == current) for e in _rows(type_code))


def value_for_label(type_code: str, text: str) -> str | None:
    """Map what a spreadsheet says (label, English label or value) to the stored value of an active item."""
    needle = text.strip()
    if not needle:
        return None
    for e in _rows(type_code):
        if e.is_active and needle in (e.label, e.value, e.label_en or ""):
            return e.value
    return None


def bump_dict_version(conn: Connection) -> None:
    bump_counter(conn, DICT_VERSION_KEY)
    _cache.version = None


def refresh() -> None:
    _cache.version = None


class DictSelectField(SelectField):
    """A drop-down fed from one dictionary type; keeps a since-disabled current value selectable."""

    def __init__(self, label: str | None = None, validators: Any = None, *, dict_type: str = "",
                 **kwargs: Any) -> None:
        self.dict_type = dict_type
        kwargs.pop("choices", None)
        kwargs.pop("coerce", None)
        super().__init__(label, validators, choices=[], **kwargs)

    def process(self, formdata: Any, data: Any = None, extra_filters: Any = None) -> None:
        super().process(formdata, data, extra_filters)
        self.choices = choices(self.dict_type, current=getattr(self, "object_data", None))

    def pre_validate(self, form: Any) -> None:
        self.data: Any
        if self.data in (None, ""):
            self.data = None
            return
        if not is_valid(self.dict_type, str(self.data), current=getattr(self, "object_data", None)):
            # ValidationError (not a bare ValueError, which WTForms lets through as a 500)
            raise ValidationError("请从列表中选择有效的选项。")


# Where each dictionary type's values are stored: a business model marks such a column with
# ``info={"dict": "<type code>"}``; an item in use cannot be deleted, only disabled.
def usages() -> dict[str, list[tuple[type, str]]]:
    discovery.import_each("models")  # every business model, whichever process asks (cheap once imported)
    found: dict[str, list[tuple[type, str]]] = {}
    for mapper in sorted(Base.registry.mappers, key=lambda m: m.class_.__name__):
        for attr in mapper.column_attrs:
            type_code = attr.columns[0].info.get("dict")
            if type_code:
                found.setdefault(type_code, []).append((mapper.class_, attr.key))
    return found


def usage_count(conn: Connection, type_code: str, value: str) -> int:
    """How many business rows store ``value`` of ``type_code`` (all rows: this is an integrity check)."""
    total = 0
    for model, column in usages().get(type_code, []):
        col = getattr(model, column)
        total += int(conn.execute(select(func.count()).select_from(model).where(col == value)).scalar() or 0)
    return total


# ----- changing items (the item form and the type's page) ---------------------------------------

_VALUE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


def check_item(session: Session, item: DictItem, *, is_created: bool) -> None:
    """Refuse an item that is not well formed, of an unknown type, or whose stored value is in use."""
    if session.execute(select(DictType.id).where(DictType.code == item.type_code)).first() is None:
        raise UserError("请选择字典类型。", field="type_code")
    if not _VALUE.fullmatch(item.value or ""):
        raise UserError("值只能包含字母、数字、下划线、连字符和点(1–64 位)。", field="value")
    if not (item.label or "").strip() or len(item.label) > 64:
        raise UserError("显示名称不能为空,且不超过 64 个字符。", field="label")
    clash = select(DictItem.id).where(DictItem.type_code == item.type_code,
                                      or_(DictItem.value == item.value, DictItem.label == item.label))
    if item.id is not None:
        clash = clash.where(DictItem.id != item.id)
    if session.execute(clash.limit(1)).first() is not None:
        raise UserError(f"该类型下已有值为“{item.value}”或名称为“{item.label}”的字典项。", field="value")
    if not is_created:
        old = session.execute(
            select(DictItem.type_code, DictItem.value).where(DictItem.id == item.id)).first()
        if old is not None and (old[0], old[1]) != (item.type_code, item.value) and usage_count(
                session.connection(), old[0], old[1]):
            raise UserError("该字典项已被业务数据使用,类型和值不能修改(可以修改显示名称或停用)。")
    bump_dict_version(session.connection())


def add_item(session: Session, type_code: str, *, value: str, label: str, label_en: str = "",
             sort: int | None = None) -> DictItem:
    """A new active item of ``type_code`` (last in order unless ``sort`` is given)."""
    if sort is None:
        last = session.execute(select(func.max(DictItem.sort)).where(DictItem.type_code == type_code)).scalar()
        sort = int(last or 0) + 10
    item = DictItem(type_code=type_code, value=value.strip(), label=label.strip(),
                    label_en=label_en.strip() or None, sort=sort, is_active=True)
    check_item(session, item, is_created=True)
    session.add(item)
    session.flush()
    return item


def items_of(session: Session, type_code: str) -> list[DictItem]:
    return list(session.execute(select(DictItem).where(DictItem.type_code == type_code)
                                .order_by(DictItem.sort, DictItem.id)).scalars())


vocabulary.register(label=label, value_for_label=value_for_label)  # export and import read words through it
