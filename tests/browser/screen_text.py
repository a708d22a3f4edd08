"""What a screen must not show: codes and raw names the code base itself defines, read from it.

``codes()`` collects every stored code a user should only ever see as a word: the keys of every
label map (a module-level ``…LABELS`` dict, ``RESOURCES``, ``ACTIONS``, the views'
``column_choice_labels``, the tuples of allowed values such as ``CARE_STATUSES``), the scheduler's
job names, the dictionary's values, the role codes, and every table and column name. A new status,
action, resource or column is covered without editing a list.

``chinese_words()`` collects the Chinese words an English screen must not show: the labels of those
maps, the dictionary's Chinese labels, and every Chinese message the English catalog translates.

``visible_text(page)`` reads a page's text as the user reads it — every text node of the body,
including the options of a select and the items of a closed menu — leaving out what people typed
(form fields, the language switcher's own names).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqladmin import ModelView
from sqlalchemy import select

import crm_admin
from crm_admin import db

_CODE = re.compile(r"[a-z][a-z0-9_]*")
_CJK = re.compile(r"[\u3400-\u9fff]")
# words the interface itself uses in its own (Chinese) text
_ALLOWED_IN_CHINESE = {"Excel", "CSV", "ID"}
# Chinese UI strings that are shown untranslated on purpose in English
_ALLOWED_IN_ENGLISH = {"简体中文"}
# Bare Python values and record ids ("id 57") are leaks in any language.
PYTHON_VALUES = ("None", "True", "False")
RECORD_ID = re.compile(r"(?<![\w.@/-])id[ :#=]?\d+(?![\w.@/-])")

# Left out of the text read from a page: what people typed, a record's own name in a heading
# (``data-user-text``), the language switcher's own names, and codes the screen sets apart as codes
# (``<code>``: a role code, a dictionary value — core.formatting.code_cell). On an English screen, text
# marked as Chinese (``lang="zh-CN"``: the dictionary's Chinese labels on the dictionary pages) too.
USER_INPUT = "textarea, #language-switcher, [data-user-text], code"
EXCLUDED = {"zh": USER_INPUT, "en": USER_INPUT + ", [lang^=zh]"}

VISIBLE_TEXT_JS = """
(exclude) => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const text = node.nodeValue.replace(/\\s+/g, ' ').trim();
    const el = node.parentElement;
    if (!text || !el || el.closest('script, style, template, noscript') || el.closest(exclude)) continue;
    out.push(text);
  }
  return out;
}
"""


def visible_text(page: Any, locale: str = "zh") -> list[str]:
    """The page's text nodes (whitespace collapsed), user input left out."""
    return list(page.evaluate(VISIBLE_TEXT_JS, EXCLUDED[locale]))


def _modules() -> Iterable[Any]:
    for info in pkgutil.walk_packages(crm_admin.__path__, "crm_admin."):
        if ".migrations" in info.name or info.name.endswith((".cli", "__main__")):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # optional extras (a driver) missing: nothing of theirs is on screen
            continue


def _label_maps(app: Any) -> list[dict[Any, Any]]:
    maps: list[dict[Any, Any]] = []
    for module in _modules():
        for name, value in vars(module).items():
            if isinstance(value, Mapping) and (name.endswith("LABELS") or name in {"RESOURCES", "ACTIONS"}):
                maps.append(value)
    for view in app.state.admin.views:
        if isinstance(view, ModelView):
            maps.extend((getattr(view, "column_choice_labels", None) or {}).values())
    return maps


def _value_tuples() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for module in _modules():
        for name, value in vars(module).items():
            if (name.endswith(("STATUSES", "ORIGINS", "LEVELS", "METRICS")) and isinstance(value, tuple)
                    and all(isinstance(v, str) for v in value)):
                found.append(value)
    return found


def _database_words() -> tuple[set[str], set[str], set[str]]:
    """Dictionary values and Chinese labels, role codes; and the names people gave to users, roles
    and departments (their data, in whatever language they typed it: not codes, not interface words)."""
    from crm_admin.accounts.models import SysDept, SysRole, SysUser
    from crm_admin.dictionary.models import DictItem

    with db.session_factory()() as s:
        items = s.execute(select(DictItem.value, DictItem.label)).all()
        roles = s.execute(select(SysRole.code, SysRole.name)).all()
        users = s.execute(select(SysUser.username, SysUser.real_name)).all()
        depts = set(s.scalars(select(SysDept.name)))
    values = {v for v, _label in items} | {code for code, _name in roles}
    labels = {label for _v, label in items}
    names = {u for u, _r in users} | {r for _u, r in users if r} | {n for _c, n in roles} | depts
    return values, labels, names


def codes(app: Any) -> set[str]:
    from crm_admin.db import Base
    from crm_admin.scheduler.service import jobs

    found: set[str] = set()
    for mapping in _label_maps(app):
        found |= {k for k in mapping if isinstance(k, str)}
    for values in _value_tuples():
        found |= set(values)
    found |= set(jobs())
    for table in Base.metadata.tables.values():
        found.add(table.name)
        found |= {c.name for c in table.columns}
    values, _labels, names = _database_words()
    found |= values
    return {c for c in found if _CODE.fullmatch(c)} - names - {"id"}


def chinese_words(app: Any) -> set[str]:
    from crm_admin.core.i18n import translations_for

    words: set[str] = set()
    for mapping in _label_maps(app):
        words |= {str(v) for v in mapping.values() if isinstance(v, str)}
    _values, labels, names = _database_words()
    words |= labels
    catalog = translations_for("en")
    words |= {m for m in getattr(catalog, "_catalog", {}) if isinstance(m, str)}
    return {w for w in words if _CJK.search(w)} - _ALLOWED_IN_ENGLISH - names


def code_pattern(words: set[str]) -> re.Pattern[str]:
    """A code as a word of its own: not part of an e-mail, a web address, a file name or a longer code."""
    alternatives = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    return re.compile(rf"(?<![\w.@/-])({alternatives})(?![\w@/-]|\.\w)")


def leaks_in_chinese(texts: list[str], pattern: re.Pattern[str]) -> list[str]:
    """Codes, raw names, Python values and record ids in a Chinese screen's text."""
    found: list[str] = []
    python = code_pattern(set(PYTHON_VALUES))
    for text in texts:
        for rx in (pattern, python, RECORD_ID):
            for m in rx.finditer(text):
                if m.group(0) not in _ALLOWED_IN_CHINESE:
                    found.append(f"{m.group(0)!r} in «{text[:80]}»")
    return found


def leaks_in_english(texts: list[str], pattern: re.Pattern[str], chinese: set[str]) -> list[str]:
    """Chinese interface words, snake_case codes, Python booleans and record ids in an English screen."""
    found: list[str] = []
    for text in texts:
        if text in chinese or text.strip("—- ") in chinese:
            found.append(f"Chinese «{text[:80]}»")
        elif text in ("True", "False"):  # "None" is an English word (无 → None); True and False are not
            found.append(f"{text!r}")
        else:
            found += [f"{m.group(0)!r} in «{text[:80]}»" for m in RECORD_ID.finditer(text)]
            found += [f"{m.group(0)!r} in «{text[:80]}»" for m in pattern.finditer(text) if "_" in m.group(0)]
    return found
