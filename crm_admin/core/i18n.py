"""Chinese (default) and English for the whole interface.

SQLAdmin ships no Chinese catalog and has no setting for an application's own catalogs, so the
``zh`` catalog is registered through its module state (core/sqladmin_compat.py, pinned to
SQLAdmin 0.32 and covered by tests/core/test_i18n.py). Our own strings are written in Chinese;
the ``en`` catalog translates them for the English switch and is merged over SQLAdmin's English
catalog.

Catalogs: ``locale/zh/LC_MESSAGES/*.po`` (SQLAdmin's and WTForms' English → Chinese) and
``locale/en/LC_MESSAGES/<module>.po`` (our Chinese → English, one file per module). Every ``.po``
file of a locale is merged into one catalog at start-up; no compile step.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from sqladmin import i18n as sqladmin_i18n
from sqladmin.i18n import I18nConfig

from crm_admin.core import sqladmin_compat

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
LOCALES = ("zh", "en")
LANGUAGE_NAMES = {"zh": "简体中文", "en": "English"}
DEFAULT_LOCALE = "zh"
LANGUAGE_COOKIE = "crm_lang"


def _load_po_files(locale: str) -> Translations | None:
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    merged: Translations | None = None
    for po in sorted(folder.glob("*.po")) if folder.exists() else []:
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        translations = Translations(fp=buf, domain=po.stem)
        if merged is None:
            merged = translations
        else:
            merged.merge(translations)
    return merged


_installed_default: str | None = None


def install(default_locale: str = DEFAULT_LOCALE) -> None:
    """Register our catalogs with SQLAdmin (idempotent) and make ``default_locale`` the fallback.

    SQLAdmin's locale context variables default to English; code running outside a request (jobs,
    error pages, the CLI) would then translate our Chinese strings into English. Their defaults
    are replaced so that the fallback is the configured default locale.
    """
    global _installed_default
    for locale in LOCALES:
        ours = _load_po_files(locale)
        if ours is None:
            if sqladmin_compat.registered_catalog(locale) is None:
                sqladmin_compat.register_catalog(locale, NullTranslations())
        elif locale == "zh":
            sqladmin_compat.register_catalog(locale, ours)
        else:
            # a fresh copy of SQLAdmin's English each time, so a second install() does not stack
            base = sqladmin_compat.sqladmin_catalog(locale)
            if isinstance(base, Translations):
                base.merge(ours)
                sqladmin_compat.register_catalog(locale, base)
            else:
                sqladmin_compat.register_catalog(locale, ours)
    if _installed_default != default_locale:
        sqladmin_compat.set_default_locale(default_locale)
        _installed_default = default_locale


def i18n_config(default_locale: str = DEFAULT_LOCALE) -> I18nConfig:
    """Chinese whatever the browser says (no Accept-Language); ``?lang=en`` switches and persists."""
    return I18nConfig(
        default_locale=default_locale,
        language_cookie_name=LANGUAGE_COOKIE,
        language_header_name=None,
        language_switcher=list(LOCALES),
    )


def gettext(message: str) -> str:
    """Translate now, in the current request's language."""
    return sqladmin_i18n.gettext(message)


_ = gettext


def tr(value: Any) -> str:
    """Translate a label held in a variable (view names, column labels, menu categories).

    Unlike the template ``_()`` it does not %-format the text and does not mark it safe, so a
    label such as "概率(%)" renders as is and stays HTML-escaped.
    """
    if value is None:
        return ""
    text = str(value)
    return gettext(text) if text else text


def ngettext(singular: str, plural: str, n: int) -> str:
    return sqladmin_i18n.ngettext(singular, plural, n)


def current_locale() -> str:
    return sqladmin_i18n.get_locale()


def translations_for(locale: str) -> NullTranslations:
    return sqladmin_compat.registered_catalog(locale) or NullTranslations()


def language_name(locale: str) -> str:
    return LANGUAGE_NAMES.get(locale, locale)


def locale_from_cookie(cookie_header: str) -> str:
    """The language chosen in the ``crm_lang`` cookie, for pages rendered before SQLAdmin's locale
    middleware runs (e.g. the CSRF refusal)."""
    for part in cookie_header.split(";"):
        name, _sep, value = part.strip().partition("=")
        if name == LANGUAGE_COOKIE and value in LOCALES:
            return value
    return sqladmin_compat.default_locale()


class WTFormsTranslations:
    """WTForms' translation hook, answering in the current request's language.

    WTForms asks a form's ``Meta.get_translations`` once per form instance; the zh catalog holds
    WTForms' messages (locale/zh/LC_MESSAGES/wtforms.po), so "This field is required." becomes
    "此字段为必填项。".
    """

    def gettext(self, message: str) -> str:
        return translations_for(current_locale()).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations_for(current_locale()).ngettext(singular, plural, n)


WTFORMS_TRANSLATIONS = WTFormsTranslations()


class Labels(Mapping[str, str]):
    """How stored codes read: ``{"following": "跟进中"}``, each word translated when it is read.

    Module-level label maps are built once at import time, outside any request; a plain dict would
    keep them Chinese on an English screen. ``LABELS.get(code, code)``, ``LABELS[code]``,
    ``.items()`` and ``.values()`` answer in the current request's language. The Chinese words are
    collected for the English catalog (crm_admin/web/catalog.py). ``source`` keeps the Chinese map
    (for reading spreadsheets, which accept the Chinese words whatever the screen's language).
    """

    def __init__(self, words: Mapping[str, str]) -> None:
        self.source: dict[str, str] = dict(words)

    def __getitem__(self, code: str) -> str:
        return tr(self.source[code])

    def __iter__(self) -> Iterator[str]:
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return f"Labels({self.source!r})"

    def choices(self) -> list[tuple[str, str]]:
        """(code, word) pairs for a drop-down, in the current language."""
        return list(self.items())


def blank_choice() -> tuple[str, str]:
    """The empty first option of a drop-down, in the current language."""
    return ("", gettext("— 请选择 —"))
