"""Walking the whole admin site as each role, shared by the browser tests that look at every page.

``walk`` opens a list of seed URLs and then every linked page whose route the role has not opened
yet (the menu, list → details → edit, create buttons, the 360° page, an alert, a user …); routes are
read from the running app (``Site``), so a new page is walked without touching the tests.
``use_site_as`` runs one role's visit in its own thread with its own Chromium (Playwright's sync API
is per thread), so the roles can walk at once; ``on_page`` is called on every HTML page opened.

``chinese_walk`` is the walk of every role in Chinese that the Content-Security-Policy test makes:
each page is opened once and looked at for both policy violations and codes shown as text.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from sqladmin import ModelView
from starlette.routing import Match, Route

from tests.browser import screen_text
from tests.browser.conftest import CHROMIUM_ARGS, _chromium_path, login
from tests.conftest import ADMIN_PASSWORD
from tests.demo_data import DEMO_PASSWORD

# Role → a demo account holding it (crm-admin demo).
ROLES = {
    "admin": ("admin", ADMIN_PASSWORD),
    "sales_lead": ("zhaomin", DEMO_PASSWORD),
    "manager": ("zhangwei", DEMO_PASSWORD),
    "readonly": ("sunli", DEMO_PASSWORD),
}

# SQLAdmin's own routes that answer with something other than a page.
NOT_PAGES = {"statics", "export", "file_download", "file_preview", "ajax_lookup", "delete", "import"}

DESKTOP = {"width": 1440, "height": 900}
LAPTOP = {"width": 1366, "height": 768}

OnPage = Callable[[Any, "Watch"], None]


@dataclass
class Watch:
    """What one role's visit saw: problems found, the routes opened (route key → status)."""

    role: str
    problems: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)  # codes or raw names on a screen (chinese_walk)
    visited: dict[tuple[str, ...], int] = field(default_factory=dict)
    where: str = ""


class Site:
    """The admin site's routes, read from the running app."""

    def __init__(self, app: Any) -> None:
        admin = app.state.admin
        self.routes: list[Route] = [r for r in admin.admin.router.routes if isinstance(r, Route)]
        self.model_identities: list[str] = [v.identity for v in admin.views if isinstance(v, ModelView)]
        self.custom_pages = [
            "/admin" + r.path for r in self.routes
            if r.name.startswith("view-") and "{" not in r.path and "GET" in (r.methods or ())
        ]

    def route_key(self, path: str) -> tuple[str, ...] | None:
        """(route name, identity) of an admin URL, or None if it is no page."""
        if not path.startswith("/admin"):
            return None
        scope = {"type": "http", "path": path[len("/admin"):] or "/", "root_path": "", "method": "GET"}
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                if route.name in NOT_PAGES:
                    return None
                identity = child.get("path_params", {}).get("identity", "")
                return (route.name, identity) if identity else (route.name,)
        return None

    def seeds(self, role: str) -> list[str]:
        """Where a role's walk starts: home, every custom page, and for the administrator every
        model view's list and create page."""
        seeds = ["/admin/", *self.custom_pages]
        if role == "admin":
            seeds += [f"/admin/{i}/{what}" for what in ("list", "create") for i in self.model_identities]
        return seeds

    def model_lists(self) -> list[str]:
        return [f"/admin/{i}/list" for i in self.model_identities]


def visit(page: Any, watch: Watch, url: str) -> Any:
    watch.where = url
    try:
        return page.goto(url)
    except Exception as exc:  # a download (an export, a template) is no page
        if "Download is starting" in str(exc):
            return None
        raise


def walk(page: Any, watch: Watch, site: Site, live_server: str, seeds: list[str],
         on_page: OnPage | None = None) -> None:
    """Opens each seed, then every linked page whose route this role has not opened yet."""
    queue: dict[tuple[str, ...], str] = {}  # route key → the first URL found for it

    def enqueue(url: str) -> None:
        key = site.route_key(urlsplit(url).path)
        if key is not None and key not in watch.visited and key not in queue:
            queue[key] = url

    for url in seeds:
        enqueue(url)
    while queue:
        key, url = next(iter(queue.items()))
        del queue[key]
        response = visit(page, watch, url)
        watch.visited[key] = response.status if response is not None else 0
        if response is None:
            continue
        assert response.status < 500, f"[{watch.role}] {url}: {response.status}"
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        if on_page is not None:
            on_page(page, watch)
        hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        for href in hrefs:
            absolute = urljoin(page.url, href)
            if absolute.startswith(live_server + "/"):
                enqueue(absolute[len(live_server):])


def open_as(browser: Any, live_server: str, role: str, *, locale: str = "zh",
            viewport: dict[str, int] | None = None, bypass_csp: bool = False,
            prepare: Callable[[Any, Any, Watch], None] | None = None) -> tuple[Any, Any, Watch]:
    """A new context signed in as the role's demo account, the interface in ``locale``.

    ``prepare(context, page, watch)`` runs before the login (to install listeners)."""
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport=viewport or DESKTOP,
                                  timezone_id="Asia/Shanghai", bypass_csp=bypass_csp)
    context.set_default_timeout(15_000)
    if locale != "zh":
        context.add_cookies([{"name": "crm_lang", "value": locale, "url": live_server}])
    page = context.new_page()
    watch = Watch(role)
    if prepare is not None:
        prepare(context, page, watch)
    watch.where = "/admin/login"
    username, password = ROLES[role]
    login(page, username, password)
    return context, page, watch


def with_own_browser[T](fn: Callable[[Any], T]) -> T:
    """Runs ``fn(browser)`` with a Chromium of its own (for use in a worker thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            return fn(browser)
        finally:
            browser.close()


def for_each_role[T](fn: Callable[[str], T], roles: list[str] | None = None) -> dict[str, T]:
    """``fn(role)`` for every role at once, each in its own thread; results by role."""
    roles = roles or list(ROLES)
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        futures = {role: pool.submit(fn, role) for role in roles}
        return {role: future.result() for role, future in futures.items()}


def walk_everything(page: Any, watch: Watch, site: Site, live_server: str,
                    on_page: OnPage | None = None) -> None:
    """The role's whole walk: its seeds, then (other roles) the model lists no link led to."""
    walk(page, watch, site, live_server, site.seeds(watch.role), on_page)
    if watch.role != "admin":  # the lists no link led to: the refusal page, mostly
        walk(page, watch, site, live_server, site.model_lists(), on_page)


# Reports a Content-Security-Policy violation to the test, installed before any page script runs.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolation(e.documentURI + ': ' + e.violatedDirective + ' blocked ' +
    (e.blockedURI || '(inline)') + ' at ' + (e.sourceFile || '') + ':' + e.lineNumber + ' ' + (e.sample || ''));
}, true);
"""


def report_violations(context: Any, page: Any, watch: Watch) -> None:
    """A violation is reported by the page's listener and by Chromium's console; a page error too
    (all into ``watch.problems``)."""
    context.expose_binding("__cspViolation", lambda _source, text: watch.problems.append(
        f"[{watch.role}] {text}"))
    context.add_init_script(REPORT_VIOLATIONS)

    def console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            watch.problems.append(f"[{watch.role}] {watch.where}: console: {msg.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: watch.problems.append(f"[{watch.role}] {watch.where}: JS error {exc}"))


def chinese_walk(app: Any, live_server: str) -> dict[str, Watch]:
    """Every role's whole walk in Chinese (all roles at once) on the demo company the calling test
    loaded: CSP violations and page errors in ``problems``, codes shown as text in ``leaks``."""
    site = Site(app)
    pattern = screen_text.code_pattern(screen_text.codes(app))

    def use(role: str) -> Watch:
        def in_browser(browser: Any) -> Watch:
            _context, page, watch = open_as(browser, live_server, role, prepare=report_violations)

            def read(pg: Any, w: Watch) -> None:
                for leak in screen_text.leaks_in_chinese(screen_text.visible_text(pg, "zh"), pattern):
                    w.leaks.append(f"[{role}/zh] {w.where}: {leak}")

            walk_everything(page, watch, site, live_server, on_page=read)
            page.evaluate("0")  # the last violation reports reach the test
            return watch

        return with_own_browser(in_browser)

    return for_each_role(use)
