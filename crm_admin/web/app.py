"""The web application: FastAPI with the SQLAdmin site mounted at /admin."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from jinja2 import ChoiceLoader, FileSystemLoader
from sqladmin import Admin
from sqladmin.authentication import login_required
from starlette.datastructures import URL, URLPath
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from crm_admin import db, retry
from crm_admin.accounts.auth import CrmAuthentication, CrmAuthorization, mark_pending_sign_in
from crm_admin.core import (
    csrf,
    customer_records,
    formatting,
    i18n,
    notify,
    params,
    search,
    sqladmin_compat,
)
from crm_admin.core.errors import UserError
from crm_admin.imports import registry as import_registry
from crm_admin.scheduler.runner import lifespan as scheduler_lifespan
from crm_admin.settings import Settings, get_settings
from crm_admin.web import menu
from crm_admin.web.headers import SecurityHeadersMiddleware
from crm_admin.web.middleware import (
    AdmissionMiddleware,
    CatchErrorsMiddleware,
    ReplayMiddleware,
    RequestMiddleware,
)
from crm_admin.web.templating import CrmTemplates

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

# Business modules in menu order; each may define ``VIEWS`` in its ``admin.py``.
MODULES = (
    "dashboard",
    "customers",
    "imports",
    "contacts",
    "followups",
    "opportunities",
    "orders",
    "products",
    "care",
    "transfers",
    "pools",
    "reclaim",
    "churn",
    "recycle_bin",
    "accounts",
    "dictionary",
    "audit",
    "scheduler",
    "api",
    "notifications",
)

log = logging.getLogger(__name__)


def collect_views() -> list[type]:
    views: list[type] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"crm_admin.{name}.admin")
        except ModuleNotFoundError as exc:
            if exc.name == f"crm_admin.{name}.admin":
                continue
            raise
        views.extend(getattr(module, "VIEWS", []))
    return views


def mount_modules(app: FastAPI, admin: Admin) -> None:
    """Each module's ``mounts.py`` adds what it serves outside the admin site (``mount(app, admin)``)."""
    for name in MODULES:
        try:
            module = importlib.import_module(f"crm_admin.{name}.mounts")
        except ModuleNotFoundError as exc:
            if exc.name == f"crm_admin.{name}.mounts":
                continue
            raise
        module.mount(app, admin)


def template_dirs() -> list[str]:
    """The shared templates folder first, then each module's own ``templates/`` folder."""
    dirs = [str(TEMPLATES_DIR)]
    for name in MODULES:
        folder = PACKAGE_DIR / name / "templates"
        if folder.exists():
            dirs.append(str(folder))
    return dirs


def install_template_globals(env: Any) -> None:
    """Helpers every template may use: ``tr(label)``, language names, time/money filters, CSRF."""
    env.globals["tr"] = i18n.tr
    env.globals["get_locale_display_name"] = i18n.language_name
    # ``crm_csrf()`` in our templates: some views pass a ``csrf_token`` string in their context,
    # which shadows the ``csrf_token()`` global offered to templates that do not
    env.globals["crm_csrf"] = csrf.template_token
    env.globals["csrf_token"] = csrf.template_token
    env.globals["LANGUAGE_NAMES"] = i18n.LANGUAGE_NAMES
    env.filters["local_datetime"] = formatting.format_datetime
    env.filters["local_date"] = formatting.format_date
    env.filters["money"] = formatting.format_money
    env.filters["yes_no"] = formatting.format_bool
    env.globals["select_options"] = formatting.select_options
    env.globals["render_menu"] = menu.render_menu
    env.globals["unread_notifications"] = notify.unread_count


class CrmAdmin(Admin):
    """SQLAdmin with templates looked up in the shared folder and in every module's folder; SQLAdmin's
    own templates stay reachable as ``sqladmin_original/…`` for overrides that extend them."""

    def init_templating_engine(self) -> Any:
        templates = super().init_templating_engine()
        loader = templates.env.loader
        assert isinstance(loader, ChoiceLoader)
        templates.env.loader = ChoiceLoader([FileSystemLoader(template_dirs()), *loader.loaders[1:],
                                             sqladmin_compat.original_templates_loader()])
        install_template_globals(templates.env)
        # the templates ship with the package and do not change while it runs: no stat() of every
        # template a page extends or includes on every request to see whether it changed
        templates.env.auto_reload = False
        return CrmTemplates(templates.env)

    async def login(self, request: Request) -> Response:
        """The sign-in page; half-way through a sign-in with a second factor it asks for the code."""
        if request.method == "GET":
            mark_pending_sign_in(request)
        return await super().login(request)

    @login_required
    async def create(self, request: Request) -> Response:
        """A view with a form page of its own (``own_form_routes``) is created there: SQLAdmin's create
        URL answers with the same refusals as before, and otherwise leads to that page."""
        view = sqladmin_compat.find_model_view(self, request.path_params["identity"])
        if not getattr(view, "own_form_routes", None):
            return await super().create(request)
        await sqladmin_compat.check_create_allowed(self, request)
        return RedirectResponse(view.create_url(request), status_code=303)

    @login_required
    async def edit(self, request: Request) -> Response:
        """As ``create``: the row must open for editing (within the scope of ``edit``) before the
        redirect, so another manager's row still answers 404 here."""
        view = sqladmin_compat.find_model_view(self, request.path_params["identity"])
        if not getattr(view, "own_form_routes", None):
            return await super().edit(request)
        await sqladmin_compat.check_edit_allowed(self, request)
        obj = await view.get_object_for_edit(request)
        if obj is None:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。")
        return RedirectResponse(view.edit_url(request, obj), status_code=303)

    @login_required
    async def index(self, request: Request) -> Response:
        """The home page is the role dashboard (crm_admin/dashboard)."""
        from crm_admin.dashboard.admin import render_dashboard

        return await render_dashboard(self, request)


class RefusalsAreNotFaults(logging.Filter):
    """SQLAdmin logs every exception of a form save with its traceback at ERROR; a refused input (our
    ``UserError``: a duplicate, a value out of range, no permission) is one INFO line, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UserError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "input refused: %s", (exc.message,)
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """The job scheduler runs while the app serves; the pinyin dictionaries load in the background
    (about 0.3 s) so that the first search does not wait for them."""
    threading.Thread(target=search.warm_up, name="search-warm-up", daemon=True).start()
    async with scheduler_lifespan(app):
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()
    sqladmin_compat.check_version()  # refuses a SQLAdmin whose insides it was not written for
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # libraries' routine chatter (each policy load, each job added) stays out of the operator's log;
    # our scheduler logs what it schedules in one line, warnings and errors still show
    for chatty in ("casbin", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.getLogger("sqladmin.application").addFilter(RefusalsAreNotFaults())
    engine = db.configure(settings.database_url)
    params.install_path_convertors()  # before any route is built
    i18n.install(settings.default_locale)
    customer_records.load_all()  # every module's records hanging off a customer, before the first request
    import_registry.load_all()  # every module's importer

    app = FastAPI(title="客户信息管理系统", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=_lifespan)
    # inside the request log: a request's logged time includes its wait for a slot
    app.add_middleware(AdmissionMiddleware, limit=settings.max_concurrent_requests)
    app.add_middleware(RequestMiddleware, timing=settings.server_timing)
    # links in e-mails and chat messages: the path of a notification's page (core/notify.py)
    notify.set_link_resolver(lambda link: str(app.url_path_for(link.route, **link.params)))
    # outermost: the error pages written by RequestMiddleware get the headers too
    app.add_middleware(SecurityHeadersMiddleware, https=settings.serves_https)
    if STATIC_DIR.exists():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="crm-static")

    authentication = CrmAuthentication(settings)
    # CSRF check right inside the session middleware (it reads the session's token)
    authentication.middlewares.insert(1, Middleware(csrf.CsrfMiddleware))
    # innermost of the middlewares around every admin page: a request that met a passing database
    # error is run again there, with the session and the body it came with (web/middleware.py)
    authentication.middlewares.append(Middleware(ReplayMiddleware))
    admin = CrmAdmin(
        app,
        engine=engine,
        session_maker=db.session_factory(),
        base_url="/admin",
        title="客户信息管理系统",
        templates_dir=str(TEMPLATES_DIR),
        authentication_backend=authentication,
        authorization_backend=CrmAuthorization(),
        middlewares=[Middleware(CatchErrorsMiddleware)],
        i18n_config=i18n.i18n_config(settings.default_locale),
    )
    for view in collect_views():
        admin.add_view(view)
    csrf.harden_admin_routes(admin)  # logout and @action routes: POST only
    mount_modules(app, admin)  # what modules serve beside the admin site (the REST API)
    app.state.admin = admin
    app.state.settings = settings

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return RedirectResponse(request.url_for("admin:index").path, status_code=302)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    probes: list[anyio.CapacityLimiter] = []

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        # Its own engine and time limit (crm_admin/db.py): a frozen database is "down" within 2 s,
        # and at most two probes ever wait on it, outside the threads that serve pages.
        if not probes:
            probes.append(anyio.CapacityLimiter(2))
        try:
            with anyio.fail_after(db.PROBE_DEADLINE):
                await anyio.to_thread.run_sync(db.check_ready, abandon_on_cancel=True, limiter=probes[0])
        except Exception as exc:
            log.warning("readiness probe: database unavailable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "down",
                                 "db_retries": retry.counters()}, status_code=503,
                                headers={"Retry-After": "10"})
        # what was run again since the process started (a cluster drill reads it from every node)
        return JSONResponse({"status": "ok", "database": "up", "db_retries": retry.counters()})

    _remember_route_lookups(app.router)
    return app


class _KnownPath(URLPath):
    """A looked-up route path that also keeps its absolute URLs (``request.url_for`` makes one per
    link: a list page asks for a hundred, each built and parsed again), per base URL (a few per site:
    the names it is reached by)."""

    def make_absolute_url(self, base_url: str | URL) -> URL:
        memo: dict[str, URL] = self.__dict__.setdefault("_absolute", {})
        key = str(base_url)
        url = memo.get(key)
        if url is None:
            if len(memo) >= 8:  # a stray Host header does not grow it
                memo.clear()
            url = memo[key] = super().make_absolute_url(base_url)
        return url


def _remember_route_lookups(router: Any) -> None:
    """Cache ``url_for`` answers: a look-up by name walks every route (an exception per miss) and a page
    makes dozens of them (menu, links, forms). Routes do not change once the app is built, and a miss is
    never cached, so the answers stay right."""
    lookup = router.url_path_for

    @functools.lru_cache(maxsize=4096)
    def cached(name: str, params: tuple[tuple[str, Any], ...]) -> Any:
        found = lookup(name, **dict(params))
        return _KnownPath(str(found), found.protocol, found.host)

    def url_path_for(name: str, /, **path_params: Any) -> Any:
        try:
            return cached(name, tuple(sorted(path_params.items())))
        except TypeError:  # a parameter that cannot be a cache key
            return lookup(name, **path_params)

    router.__dict__["url_path_for"] = url_path_for
