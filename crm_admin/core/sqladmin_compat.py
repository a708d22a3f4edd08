"""Everything that leans on SQLAdmin's insides, in one place.

SQLAdmin's public hooks (``list_query``, ``details_query``, ``insert_model``, template blocks…) cover
most of what the product needs; what they do not cover is done here and only here: the private
``sqladmin._*`` modules, the underscore methods and attributes of ``ModelView``, the module state of
``sqladmin.i18n``, the loader of SQLAdmin's own templates. Every other module calls the small
functions below (a test scans the source to keep it that way, tests/core/test_sqladmin_compat.py).

Written for, and tested with, SQLAdmin ``SUPPORTED`` (below). ``check_version`` runs when the app
is built and refuses any other major/minor version: these internals change without notice between
minor releases, and an upgrade must not change the product's behaviour silently. To upgrade: run
tests/core/test_sqladmin_compat.py, which shows what changed upstream in every template and script
we copy, re-apply our changes, refresh the snapshots, then widen ``SUPPORTED``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import sqladmin
from babel.support import NullTranslations, Translations
from jinja2 import BaseLoader, FileSystemLoader, PrefixLoader
from sqladmin import i18n as sqladmin_i18n
from sqladmin._queries import Query
from sqladmin.ajax import QueryAjaxModelLoader
from sqladmin.helpers import get_object_identifier
from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session
from starlette.datastructures import URL
from starlette.requests import Request

SUPPORTED = (0, 32)
"""The SQLAdmin major/minor version this module was written for."""

PACKAGE_DIR = Path(sqladmin.__file__).resolve().parent
ORIGINAL_TEMPLATES_DIR = PACKAGE_DIR / "templates" / "sqladmin"
ORIGINAL_STATICS_DIR = PACKAGE_DIR / "statics"
ORIGINAL_PREFIX = "sqladmin_original"
"""``{% extends "sqladmin_original/list.html" %}`` is SQLAdmin's own ``sqladmin/list.html``."""


class UnsupportedSQLAdminVersion(RuntimeError):
    """The installed SQLAdmin is not the version this module was written for."""


def installed_version() -> str:
    try:
        return version("sqladmin")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return str(getattr(sqladmin, "__version__", "0"))


def check_version(installed: str | None = None) -> None:
    """Refuse to start with a SQLAdmin whose major/minor differs from ``SUPPORTED``."""
    text = installed if installed is not None else installed_version()
    parts = text.split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        found = None
    if found != SUPPORTED:
        wanted = ".".join(str(p) for p in SUPPORTED)
        raise UnsupportedSQLAdminVersion(
            f"SQLAdmin {text} is installed, but crm_admin/core/sqladmin_compat.py was written for "
            f"SQLAdmin {wanted}.x: its private API and the copied templates may have changed. Install "
            f"sqladmin=={wanted}.* or port sqladmin_compat.py and the template copies (run "
            f"tests/core/test_sqladmin_compat.py to see what changed upstream)."
        )


# ----- templates -------------------------------------------------------------------------------

def original_templates_loader() -> BaseLoader:
    """SQLAdmin's own templates under ``sqladmin_original/``, so that an override of
    ``sqladmin/x.html`` can extend the original it replaces and change only some blocks."""
    return PrefixLoader({ORIGINAL_PREFIX: FileSystemLoader(str(ORIGINAL_TEMPLATES_DIR))})


def original_template(name: str) -> Path:
    """The installed SQLAdmin's file for template ``name`` (e.g. ``modals/delete.html``)."""
    return ORIGINAL_TEMPLATES_DIR / name


def original_static(name: str) -> Path:
    """The installed SQLAdmin's static file ``name`` (e.g. ``js/main.js``)."""
    return ORIGINAL_STATICS_DIR / name


# ----- saving and deleting ---------------------------------------------------------------------

def stmt_by_identifier(view: Any, pk: str) -> Select[Any]:
    """``SELECT model WHERE pk = …`` for a URL identifier (composite keys included)."""
    return view._stmt_by_identifier(pk)  # type: ignore[no-any-return]


def set_attributes(view: Any, session: Session, obj: Any, data: dict[str, Any]) -> Any:
    """Apply a submitted form's data to ``obj`` the way SQLAdmin's own save does (relations loaded
    by id, many-to-many lists replaced). Raises ``TypeError``/``ValueError`` on an unusable id."""
    return Query(view)._set_attributes_sync(session, obj, data)


# ----- what a view knows about its columns -----------------------------------------------------

def column_labels(view: Any) -> dict[Any, Any]:
    """The view's column labels keyed by attribute name (``column_labels`` resolved)."""
    return dict(view._column_labels or {})


def list_prop_names(view: Any) -> list[str]:
    return list(view._list_prop_names)


def details_prop_names(view: Any) -> list[str]:
    return list(view._details_prop_names)


def template_response(template: Any, content: str, context: dict[str, Any], status_code: int) -> Any:
    """The response SQLAdmin's ``TemplateResponse`` returns (it carries the template and context)."""
    from sqladmin.templating import _TemplateResponse

    return _TemplateResponse(template=template, content=content, context=context, status_code=status_code)


def list_relations(view: Any) -> list[Any]:
    """The relationship attributes shown in the list (to load them eagerly)."""
    return list(view._list_relations)


def relation_names(view: Any) -> list[str]:
    return list(view._relation_names)


def non_link_related_fields(view: Any) -> list[str]:
    return list(view._non_link_related_fields)


async def run_query(view: Any, stmt: Select[Any]) -> list[Any]:
    """Run ``stmt`` through the view's session the way SQLAdmin's list does."""
    return list(await view._run_query(stmt))


def action_texts(member: Any) -> dict[str, str]:
    """``label`` and ``confirmation_message`` of an ``@action`` method (empty for anything else)."""
    texts = {key: getattr(member, f"_{key}", None) for key in ("label", "confirmation_message")}
    return {key: text for key, text in texts.items() if isinstance(text, str)}


# ----- routes ----------------------------------------------------------------------------------

def admin_routes(admin: Any) -> list[Any]:
    """The routes of the admin's own Starlette app (to replace or restrict some once views are added)."""
    return admin.admin.router.routes  # type: ignore[no-any-return]


def is_action_route(route: Any) -> bool:
    """An ``@action`` route (SQLAdmin names them ``action-<slug>``)."""
    return str(getattr(route, "name", "") or "").startswith("action-")


def find_model_view(admin: Any, identity: str) -> Any:
    """The model view behind ``/{identity}/…`` (HTTP 404 when there is none)."""
    return admin._find_model_view(identity)


async def check_create_allowed(admin: Any, request: Request) -> None:
    """SQLAdmin's own gate of its create page (HTTP 403 when the view refuses it to this user)."""
    await admin._create(request)


async def check_edit_allowed(admin: Any, request: Request) -> None:
    """SQLAdmin's own gate of its edit page (the row opened through the view, HTTP 403/404)."""
    await admin._edit(request)


# ----- URLs ------------------------------------------------------------------------------------

_PK_SENTINEL = "__crm_pk__"


def url_for_delete(view: Any, request: Request, obj: Any) -> str:
    return str(view._url_for_delete(request, obj))


def url_for_details_with_prop(view: Any, request: Request, obj: Any, prop: str) -> URL:
    return view._url_for_details_with_prop(request, obj, prop)  # type: ignore[no-any-return]


def build_url_for(view: Any, name: str, request: Request, obj: Any) -> URL:
    """The URL of ``obj``'s page ``name`` (``admin:details``, ``admin:edit``)."""
    return view._build_url_for(name, request, obj)  # type: ignore[no-any-return]


class CachedRowUrlsMixin:
    """Builds row URLs (details, edit) from one template per request instead of one route search per
    row: SQLAdmin's ``_build_url_for`` asks Starlette for every row of a list page. Mixed in before
    ``ModelView``."""

    def _build_url_for(self, name: str, request: Request, obj: Any) -> URL:
        identity = self._identity_for_object(obj)  # type: ignore[attr-defined]
        cache: dict[tuple[str, str], str] = request.state.__dict__.setdefault("_crm_url_templates", {})
        template = cache.get((name, identity))
        if template is None:
            template = str(request.url_for(name, identity=identity, pk=_PK_SENTINEL))
            cache[(name, identity)] = template
        return URL(template.replace(_PK_SENTINEL, quote(str(get_object_identifier(obj)), safe="")))


# ----- i18n: SQLAdmin has no setting for an application's own catalogs --------------------------

def sqladmin_catalog(locale: str) -> Translations | NullTranslations:
    """A fresh copy of SQLAdmin's bundled catalog for ``locale`` (NullTranslations when none)."""
    return Translations.load(
        dirname=Path(sqladmin_i18n.__file__).parent / "translations", locales=[locale], domain="admin"
    )


def registered_catalog(locale: str) -> NullTranslations | None:
    return sqladmin_i18n.translations.get(locale)


def register_catalog(locale: str, catalog: NullTranslations) -> None:
    """Make ``catalog`` SQLAdmin's catalog for ``locale`` and offer the locale in its switcher."""
    sqladmin_i18n.translations[locale] = catalog
    if locale not in sqladmin_i18n.SUPPORTED_LOCALES:
        sqladmin_i18n.SUPPORTED_LOCALES.append(locale)


def set_default_locale(locale: str) -> None:
    """The locale used outside a request (jobs, error pages, the CLI). SQLAdmin's context variables
    default to English; they are replaced by ones whose default is ``locale``."""
    sqladmin_i18n.DEFAULT_LOCALE = locale
    sqladmin_i18n._current_locale = ContextVar(  # type: ignore[attr-defined]
        "sqladmin_current_locale", default=locale
    )
    sqladmin_i18n._current_translation = ContextVar(  # type: ignore[attr-defined]
        "sqladmin_current_translation", default=sqladmin_i18n.translations[locale]
    )


def default_locale() -> str:
    return str(sqladmin_i18n.DEFAULT_LOCALE)


class _SearchingLookup(QueryAjaxModelLoader):
    """A relation picker that finds rows with ``match`` (the search index) instead of SQLAdmin's
    ``ILIKE '%term%'`` on each field; the look-up's own ``where`` (the scope) still applies."""

    def __init__(self, base: QueryAjaxModelLoader,
                 match: Callable[[type, str], ColumnElement[bool] | None]) -> None:
        self.__dict__.update(base.__dict__)
        self._match = match

    async def get_list(self, request: Request, term: str) -> list[Any]:
        found = await anyio.to_thread.run_sync(self._match, self.model, term)
        if found is None:
            return await super().get_list(request, term)
        stmt: Select[Any] = select(self.model).where(found)
        if self.where is not None:
            stmt = stmt.where(*await self._prepare_where_clauses(request, term))
        if self._cached_fields_order_by:
            stmt = stmt.order_by(*self._cached_fields_order_by)
        return list(await self.model_admin._run_query(stmt.limit(self.limit)))


def search_lookups(view: Any, wanted: Callable[[type], bool],
                   match: Callable[[type, str], ColumnElement[bool] | None]) -> None:
    """Let ``view``'s relation pickers over the models ``wanted`` accepts search with ``match``."""
    for name, loader in list(view._form_ajax_refs.items()):
        if wanted(loader.model):
            view._form_ajax_refs[name] = _SearchingLookup(loader, match)
