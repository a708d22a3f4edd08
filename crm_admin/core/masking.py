"""Masked personal data (脱敏): how a phone number, an e-mail address, an ID number or an address looks to
someone who may not see it in full.

One place for the shapes, so a list, a detail page, an export and a pool page mask alike. Whether a
value is masked for a viewer is decided by the module that shows it (a permission, the pool a customer
is in); this module only says what the masked value looks like. A masked value keeps enough to tell
two records apart on the telephone ("138****1234") and never enough to use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

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
_RULES: list[MaskRule] = []


def register_customer_rule(rule: MaskRule) -> None:
    """A module's rule for customers whose personal data is masked even for holders of the permission."""
    if rule not in _RULES:
        _RULES.append(rule)


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
