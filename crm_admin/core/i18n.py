"""Chinese (default) and English for the whole interface.

SQLAdmin ships no Chinese catalog and has no setting for an application's own catalogs, so the
``zh`` catalog is registered through its module state here, in this one place (pinned to
SQLAdmin 0.32.0 and covered by tests). Our own strings are written in Chinese; the ``en`` catalog
translates them for the English switch and is merged over SQLAdmin's English catalog.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from sqladmin import i18n as sqladmin_i18n

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
LOCALES = ("zh", "en")
LANGUAGE_NAMES = {"zh": "简体中文", "en": "English"}


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


def install() -> None:
    """Register our catalogs with SQLAdmin (idempotent)."""
    for locale in LOCALES:
        ours = _load_po_files(locale)
        base = sqladmin_i18n.translations.get(locale)
        if ours is None:
            continue
        if isinstance(base, Translations) and locale != "zh":
            base.merge(ours)
        else:
            sqladmin_i18n.translations[locale] = ours
        if locale not in sqladmin_i18n.SUPPORTED_LOCALES:
            sqladmin_i18n.SUPPORTED_LOCALES.append(locale)
    if "zh" not in sqladmin_i18n.translations:
        sqladmin_i18n.translations["zh"] = NullTranslations()
        sqladmin_i18n.SUPPORTED_LOCALES.append("zh")


def gettext(message: str) -> str:
    return sqladmin_i18n.gettext(message)


_ = gettext


def current_locale() -> str:
    return sqladmin_i18n.get_locale()
