"""Coded values read as words: the data dictionary says how a stored value (``it``) of a type
(``industry``) reads (信息技术).

Shared machinery (export, import) needs those words but sits below the dictionary module, which
registers its functions here when it is loaded; until then a value reads as itself.
"""

from __future__ import annotations

from collections.abc import Callable

Label = Callable[[str, str], str]
ValueForLabel = Callable[[str, str], str | None]

_label: Label | None = None
_value_for_label: ValueForLabel | None = None


def register(*, label: Label, value_for_label: ValueForLabel) -> None:
    global _label, _value_for_label
    _label, _value_for_label = label, value_for_label


def label(type_code: str, value: str) -> str:
    """How ``value`` of the dictionary type ``type_code`` reads."""
    return _label(type_code, value) if _label is not None else value


def value_for_label(type_code: str, text: str) -> str | None:
    """The stored value a person's text (a label, an English label or the value) stands for, or None."""
    return _value_for_label(type_code, text) if _value_for_label is not None else None
