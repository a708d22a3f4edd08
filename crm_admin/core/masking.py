"""Masked personal data (脱敏): how a phone number, an e-mail address, an ID number or an address looks to
someone who may not see it in full.

One place for the shapes, so a list, a detail page, an export and a pool page mask alike. Whether a
value is masked for a viewer is decided by the module that shows it (a permission, the pool a customer
is in); this module only says what the masked value looks like. A masked value keeps enough to tell
two records apart on the telephone ("138****1234") and never enough to use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_

from crm_admin.core.principal import Principal

MASK = "*"
_DIGITS = re.compile(r"\d")


def mask_phone(value: str | None) -> str | None:
    """A mobile or landline number: the first 3 and the last 4 digits stay ("138****1234",
    "010-****5678"); a short number keeps only its last 2 digits."""
    if not value:
        return value
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    dash = value.find("-")
    if 0 < dash <= 4 and len(digits) >= 7:
        # a landline with its area code ("010-", "0755-"): the area code and the last 4 digits stay
        hidden = {i for i in digits[:-4] if i > dash}
    elif len(digits) >= 11:
        # a mobile (perhaps after +86): the 4 digits before the last 4
        hidden = set(digits[-8:-4])
    elif len(digits) >= 7:
        hidden = set(digits[:-4])
    else:
        hidden = set(digits[:-2])
    return _collapse("".join(MASK if i in hidden else ch for i, ch in enumerate(value)))


def mask_email(value: str | None) -> str | None:
    """An e-mail address: the first character of the name and the domain stay ("z***@example.com")."""
    if not value:
        return value
    name, at, domain = value.partition("@")
    if not at:
        return mask_text(value)
    return f"{name[:1]}{MASK * 3}@{domain}"


def mask_id_number(value: str | None) -> str | None:
    """An ID card or passport number: the first 3 and the last 4 characters stay."""
    if not value:
        return value
    if len(value) <= 7:
        return MASK * len(value)
    return f"{value[:3]}{MASK * (len(value) - 7)}{value[-4:]}"


def mask_text(value: str | None, keep: int = 6) -> str | None:
    """A free text such as an address: the first ``keep`` characters (province and city) stay."""
    if not value:
        return value
    if len(value) <= keep:
        return value[:1] + MASK * 3
    return value[:keep] + MASK * 4


def _collapse(text: str) -> str:
    """A run of masked digits shows as four stars whatever its length ("138****1234")."""
    return re.sub(r"\*{2,}", MASK * 4, text)


def is_masked(value: str | None) -> bool:
    """Whether a value is shown masked (a form must never save it back over the real one)."""
    return bool(value) and MASK * 3 in str(value)


# ----- whose personal data a viewer sees masked -------------------------------------------------
# Without the permission "view sensitive fields" a viewer sees every customer's and contact's personal
# data masked. With it, a module may still mask some customers (the public pool masks the customers in
# a pool for everyone until one of them is claimed): it registers a rule here, so every page that shows
# personal data asks one question and no page imports the pools module.

SENSITIVE_PERMISSION = ("sensitive_data", "view")

# rule(session, principal, customer_ids) -> the ids among them this rule masks for the principal
MaskRule = Callable[[Any, Principal, Collection[int]], set[int]]
# the same rule as SQL: clause(principal, customer id column) -> true for the customers it masks (None: none)
MaskClause = Callable[[Principal, Any], ColumnElement[bool] | None]
_RULES: list[MaskRule] = []
_CLAUSES: dict[MaskRule, MaskClause] = {}


def register_customer_rule(rule: MaskRule, *, clause: MaskClause | None = None) -> None:
    """A module's rule for customers whose personal data is masked even for holders of the permission.
    ``clause`` says the same as a condition (a search must not find a row by a value it shows masked);
    without one, every row of a holder may be masked as far as a search can tell."""
    if rule not in _RULES:
        _RULES.append(rule)
    if clause is not None:
        _CLAUSES[rule] = clause


def sees_sensitive(principal: Principal) -> bool:
    return principal.can(*SENSITIVE_PERMISSION)


def customers_masked_for(session: Any, principal: Principal, customer_ids: Collection[int]) -> set[int]:
    """Of ``customer_ids``, those whose (and whose contacts') personal data ``principal`` sees masked."""
    ids = {int(i) for i in customer_ids if i is not None}
    if not ids:
        return set()
    if not sees_sensitive(principal):
        return ids
    masked: set[int] = set()
    for rule in _RULES:
        masked |= rule(session, principal, ids)
    return masked & ids


def masked_condition(principal: Principal, model: type) -> ColumnElement[bool] | bool:
    """Which rows of ``model`` ``principal`` sees masked, as SQL: ``True`` every row, ``False`` none,
    else a condition on the row's customer (for a search, which must not match what it shows masked)."""
    spec = _PERSONAL.get(model)
    if spec is None:
        return False
    if not sees_sensitive(principal):
        return True
    column = getattr(model, spec.customer_key)
    parts: list[ColumnElement[bool]] = []
    for rule in _RULES:
        clause_of = _CLAUSES.get(rule)
        if clause_of is None:
            return True  # a rule that says nothing in SQL: any row may be masked
        clause = clause_of(principal, column)
        if clause is not None:
            parts.append(clause)
    if not parts:
        return False
    return parts[0] if len(parts) == 1 else or_(*parts)


# ----- which columns hold personal data, and the page's one question ----------------------------
# Each module names its personal columns once (the customer's phone, a contact's mobile …) with the
# shape each is masked in and the attribute that names the customer the row belongs to. Every path that
# shows rows of such a model — a list page, a details page, an export, an edit form, the 360° page —
# asks ``masked_rows`` once for all its rows (one ``customers_masked_for`` per page, not per row).

Shape = Callable[[str | None], str | None]


@dataclass(frozen=True)
class PersonalData:
    model: type
    fields: Mapping[str, Shape]  # column → how it looks masked
    customer_key: str  # the attribute holding the customer's id ("id" on the customer itself)

    def customer_of(self, row: Any) -> int | None:
        value = getattr(row, self.customer_key, None)
        return int(value) if value is not None else None


_PERSONAL: dict[type, PersonalData] = {}


def register_personal(model: type, *, customer_key: str, **fields: Shape) -> PersonalData:
    """``model``'s personal columns and their masked shapes (``phone=mask_phone``)."""
    spec = PersonalData(model, dict(fields), customer_key)
    _PERSONAL[model] = spec
    return spec


def personal_data(model: type) -> PersonalData | None:
    return _PERSONAL.get(model)


def personal_models() -> list[PersonalData]:
    return list(_PERSONAL.values())


def masked_value(model: type, field: str, value: Any) -> Any:
    """``value`` of ``model.field`` as it is shown masked (unchanged for a column that is not personal)."""
    spec = _PERSONAL.get(model)
    shape = spec.fields.get(field) if spec else None
    if shape is None or value is None or not isinstance(value, str):
        return value
    return shape(value)


@dataclass(frozen=True)
class MaskedRows:
    """Which rows of one page a viewer sees masked, and how a cell of them reads."""

    spec: PersonalData | None
    customer_ids: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.spec and self.customer_ids)

    def is_masked(self, row: Any) -> bool:
        return self.spec is not None and self.spec.customer_of(row) in self.customer_ids

    def masks(self, row: Any, field: str) -> bool:
        return self.spec is not None and field in self.spec.fields and self.is_masked(row)

    def shown(self, row: Any, field: str, value: Any = None) -> Any:
        """The value of ``field`` of ``row`` as the viewer sees it (``value``: the value to show,
        default the row's own)."""
        if value is None:
            value = getattr(row, field, None)
        if not self.masks(row, field):
            return value
        return masked_value(self.spec.model, field, value) if self.spec else value


NOTHING_MASKED = MaskedRows(None)


def masked_rows(session: Any, principal: Principal, model: type, rows: Iterable[Any]) -> MaskedRows:
    """The rows of ``model`` whose personal data ``principal`` sees masked: one question for the page.
    ``session`` may be a callable returning one (opened only when a registered rule needs it)."""
    spec = _PERSONAL.get(model)
    if spec is None:
        return NOTHING_MASKED
    ids = {cid for cid in (spec.customer_of(r) for r in rows) if cid is not None}
    if not ids:
        return MaskedRows(spec)
    if not sees_sensitive(principal):
        return MaskedRows(spec, frozenset(ids))
    if not _RULES:
        return MaskedRows(spec)
    if callable(session):
        with session() as opened:
            return MaskedRows(spec, frozenset(customers_masked_for(opened, principal, ids)))
    return MaskedRows(spec, frozenset(customers_masked_for(session, principal, ids)))


def unchanged_if_masked(model: type, field: str, posted: Any, current: Any) -> bool:
    """Whether a value posted in a form is the masked form of the stored one (the form showed it
    masked and the user left it alone): the stored value stays. A masked-looking value that is not
    the stored one's mask is refused by the caller, never saved."""
    if not isinstance(posted, str) or not is_masked(posted):
        return False
    return bool(current) and masked_value(model, field, current) == posted


# ----- personal data inside records of what was done (the audit log's before/after) -------------
# An audit row keeps the values a change wrote ({"phone": ["138…", "139…"]}) and a free-text summary.
# Shown to someone who may not see personal data, the values of personal columns take their shapes
# and phone numbers, e-mail addresses and ID card numbers written in free text are masked too.

# columns that hold personal data in any module's rows, besides the registered ones (an ID number
# column has no model registered yet; the name says what it holds)
_EXTRA_PERSONAL_KEYS: dict[str, Shape] = {
    "id_number": mask_id_number, "id_card": mask_id_number, "mobile": mask_phone, "phone": mask_phone,
    "email": mask_email, "address": mask_text,
}
_ID_NUMBER_TEXT = re.compile(
    r"(?<![0-9A-Za-z])\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])")
_MOBILE_TEXT = re.compile(r"(?<![\d*])(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)")
_LANDLINE_TEXT = re.compile(r"(?<![\d*])0\d{2,3}-\d{7,8}(?!\d)")
_EMAIL_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def personal_keys() -> dict[str, Shape]:
    """Column name → masked shape, for every column that holds personal data in a registered model."""
    keys = dict(_EXTRA_PERSONAL_KEYS)
    for spec in _PERSONAL.values():
        keys.update(spec.fields)
    return keys


def mask_free_text(text: str | None) -> str | None:
    """Phone numbers, e-mail addresses and ID card numbers inside a free text, masked where they stand."""
    if not text:
        return text
    text = _ID_NUMBER_TEXT.sub(lambda m: mask_id_number(m.group(0)) or "", text)
    text = _EMAIL_TEXT.sub(lambda m: mask_email(m.group(0)) or "", text)
    text = _LANDLINE_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)
    return _MOBILE_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)


def mask_recorded(value: Any, key: str | None = None, keys: Mapping[str, Shape] | None = None) -> Any:
    """A recorded structure (an audit row's changes: dicts, lists, [before, after] pairs) with the values
    of personal columns in their masked shapes and personal data in any other text masked."""
    keys = personal_keys() if keys is None else keys
    if isinstance(value, Mapping):
        return {k: mask_recorded(v, str(k), keys) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_recorded(v, key, keys) for v in value]
    if isinstance(value, str):
        shape = keys.get(key or "")
        return shape(value) if shape is not None else mask_free_text(value)
    return value


def sees_all_personal_data(principal: Principal) -> bool:
    """Whether ``principal`` sees everyone's personal data in full (a record of what was done names no
    customer it could be scoped by, so a narrower permission sees it masked)."""
    return sees_sensitive(principal) and principal.scope_for(*SENSITIVE_PERMISSION) == "all"
