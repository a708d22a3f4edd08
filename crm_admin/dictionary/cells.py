"""Dictionary values in imported sheets: a cell names an item by its label, English label or value."""

from __future__ import annotations

from crm_admin.dictionary.service import entries, value_for_label
from crm_admin.imports.spec import RowError


def dict_cell(type_code: str, text: str, label: str) -> str | None:
    """A dictionary value from what the sheet says (label, English label or stored value)."""
    if not text:
        return None
    value = value_for_label(type_code, text)
    if value is None:
        allowed = "、".join(e.label for e in entries(type_code)[:12])
        raise RowError(f"{label}“{text}”不在字典中(可选:{allowed})")
    return value
