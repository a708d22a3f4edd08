"""The side menu, written in Python rather than by SQLAdmin's menu macros.

Every page draws the whole menu: for each entry SQLAdmin's macros asked up to three times whether the
user may see it, built an absolute URL, and for a custom page parsed that URL again to tell whether it
is the open page. That was a third of the CPU of a small page. Here each entry is asked once, and its
HTML (which depends only on the entry, whether it is open, the site's base URL and the language) is
kept; the markup is the macros' own, so the page looks and behaves the same.

The whole menu is kept too, per permission set: whether an entry is shown depends only on the
principal's permissions (every view's ``is_visible``/``is_accessible`` asks them, tested), so a
menu is the same for every request with the same permissions, open entry, site address and language.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqladmin.i18n import get_locale
from starlette.datastructures import URL
from starlette.requests import Request

from crm_admin.core.i18n import tr

_LIMIT = 4096  # entries × open/closed × languages × base URLs; a stray Host header cannot grow it past this
_entries: dict[tuple[Any, ...], Markup] = {}
_menus: dict[tuple[Any, ...], Markup] = {}
_paths: dict[tuple[str, str], str] = {}


def _icon(item: Any) -> Markup:
    return Markup('<i class="{}"></i>').format(item.icon) if item.icon else Markup("")


def _shown(item: Any, request: Request) -> bool:
    return bool(item.is_visible(request) and item.is_accessible(request))


def _is_open(item: Any, request: Request) -> bool:
    """SQLAdmin's ``ViewMenu.is_active``, with the custom page's path worked out once per site root."""
    view = item.view
    if view.is_model:
        return bool(view.identity == request.path_params.get("identity"))
    key = (view.identity, request.scope.get("root_path", ""))
    path = _paths.get(key)
    if path is None:
        path = URL(str(item.url(request))).path.rstrip("/")
        _paths[key] = path
    return request.url.path.rstrip("/") == path


def _remember(key: tuple[Any, ...], html: Markup) -> Markup:
    if len(_entries) >= _LIMIT:
        _entries.clear()
    _entries[key] = html
    return html


def _entry(item: Any, request: Request, is_open: bool, *, in_category: bool) -> Markup:
    key = (id(item), is_open, in_category, str(request.base_url), get_locale())
    html = _entries.get(key)
    if html is not None:
        return html
    cls = "nav-link ps-lg-3" if in_category else "nav-link"
    link = Markup(
        '<a class="{}{}" href="{}">\n'
        '  <span class="nav-link-icon d-md-none d-lg-inline-block">{}</span>\n'
        '  <span class="nav-link-title">{}</span>\n'
        "</a>"
    ).format(cls, " active" if is_open else "", str(item.url(request)), _icon(item), tr(item.display_name))
    if not in_category:
        link = Markup('<li class="nav-item">\n{}\n</li>').format(link)
    return _remember(key, link)


def _category(menu: Any, request: Request) -> Markup:
    children = [(child, _is_open(child, request)) for child in menu.children if _shown(child, request)]
    if not children or not _shown(menu, request):  # a category with no entry the user may open is left out
        return Markup("")
    head = Markup(
        '<li class="nav-item dropdown" data-sqladmin-menu-category="{}">\n'
        '  <a class="nav-link dropdown-toggle{}" data-bs-toggle="dropdown" data-bs-auto-close="false" href="#"'
        ' role="button" aria-expanded="false">\n'
        '    <span class="nav-link-icon d-md-none d-lg-inline-block">{}</span>\n'
        '    <span class="nav-link-title">{}</span>\n'
        "  </a>\n"
        '  <div class="dropdown-menu">\n    <div class="dropdown-menu-columns">\n'
        '      <div class="dropdown-menu-column">\n'
    ).format(menu.name, " active" if any(is_open for _c, is_open in children) else "", _icon(menu),
             tr(menu.display_name))
    body = Markup("\n").join(_entry(child, request, is_open, in_category=True) for child, is_open in children)
    return head + body + Markup("\n      </div>\n    </div>\n  </div>\n</li>")


def _open_items(menu: Any, request: Request) -> tuple[int, ...]:
    """The entries drawn as open on this page (by id): what, besides the permissions, the menu depends on."""
    found = []
    for item in menu.items:
        for entry in (item, *item.children) if item.type_ == "Category" else (item,):
            if entry.type_ == "View" and _is_open(entry, request):
                found.append(id(entry))
    return tuple(found)


def render_menu(menu: Any, request: Request) -> Markup:
    """The menu's HTML for this request (``display_menu`` in ``sqladmin/_macros.html``)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return _render(menu, request)
    key = (id(menu), principal.permissions, _open_items(menu, request), str(request.base_url), get_locale())
    html = _menus.get(key)
    if html is None:
        if len(_menus) >= _LIMIT:
            _menus.clear()
        html = _menus[key] = _render(menu, request)
    return html


def _render(menu: Any, request: Request) -> Markup:
    parts = []
    for item in menu.items:
        if item.type_ == "View":
            if _shown(item, request):
                parts.append(_entry(item, request, _is_open(item, request), in_category=False))
        elif item.type_ == "Category":
            parts.append(_category(item, request))
    return Markup('<div class="navbar-nav">\n{}\n</div>').format(Markup("\n").join(p for p in parts if p))

