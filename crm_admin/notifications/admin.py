"""The notification centre (every user's own), notification settings (the user's channels), and for
administrators the departments' channels and the deliveries that failed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio
from sqladmin import BaseView
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.accounts.models import SysDept
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime
from crm_admin.core.i18n import gettext as _
from crm_admin.core.notify import Link
from crm_admin.core.pages import url_path
from crm_admin.core.params import parse_id, parse_page
from crm_admin.core.routes import SIGNED_IN, route
from crm_admin.core.views import principal_of
from crm_admin.db import session_factory, transaction
from crm_admin.notifications import service
from crm_admin.notifications.models import CHANNEL_KINDS

DEPT_CHANNELS = ("dept", "edit")
FAILED_LIST = ("job", "list")
FAILED_RETRY = ("job", "edit")
NOT_FOUND = "记录不存在或您无权访问。"


def _link_path(request: Request, text: str | None) -> str:
    link = Link.decode(text)
    if link is None:
        return ""
    try:
        path = url_path(request, link.route, **link.params)
    except Exception:  # a page renamed since: the notification stays readable, without its link
        return ""
    return f"{path}?{link.query}" if link.query else path


def _form_text(form: Any, name: str, limit: int) -> str:
    return str(form.get(name) or "")[:limit]


def _channel_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"id": c.id, "kind": c.kind, "kind_label": service.CHANNEL_LABELS.get(c.kind, c.kind),
             "address": c.address, "signed": bool(c.secret), "daily_digest": c.daily_digest, "enabled": c.enabled,
             "dept_id": c.dept_id} for c in rows]


class _Personal(BaseView):
    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        return getattr(request.state, "principal", None) is not None


class NotificationCentre(_Personal):
    """通知中心: the signed-in user's notifications, newest first; mark read, mark all read, open."""

    name = "通知中心"
    icon = "fa-solid fa-bell"
    identity = "notifications"

    @route("/notifications", identity="notifications", permission=SIGNED_IN)
    async def notifications(self, request: Request) -> Response:
        user_id = request.state.user.id
        unread_only = request.query_params.get("unread") == "1"
        page = parse_page(request.query_params.get("page"))

        def load() -> dict[str, Any]:
            with session_factory()() as session:
                found = service.list_notifications(session, user_id, unread_only=unread_only, page=page)
            return {"rows": [{"id": n.id, "kind": service.KIND_LABELS.get(n.kind, n.kind), "title": n.title,
                              "body": n.body or "", "created_at": format_datetime(n.created_at),
                              "read": n.read_at is not None, "has_link": bool(_link_path(request, n.link))}
                             for n in found.rows],
                    "page": found.page, "has_next": found.has_next, "unread": found.unread}

        principal = principal_of(request)
        context = {"title": "通知中心", "unread_only": unread_only, **(await anyio.to_thread.run_sync(load)),
                   "can_manage": principal.can(*DEPT_CHANNELS), "can_see_failed": principal.can(*FAILED_LIST)}
        request.state.notify_unread = context["unread"]  # the bell reads what the page already counted
        return await self.templates.TemplateResponse(request, "notifications/centre.html", context)

    @route("/notifications/read", methods=["POST"], identity="notifications-read", permission=SIGNED_IN)
    async def read(self, request: Request) -> Response:
        form = await request.form()
        await self._own(request, parse_id(form.get("id")), open_it=False)
        return RedirectResponse(url_path(request, "admin:view-notifications"), status_code=303)

    @route("/notifications/open", methods=["POST"], identity="notifications-open", permission=SIGNED_IN)
    async def open(self, request: Request) -> Response:
        form = await request.form()
        target = await self._own(request, parse_id(form.get("id")), open_it=True)
        return RedirectResponse(target or url_path(request, "admin:view-notifications"), status_code=303)

    @route("/notifications/read-all", methods=["POST"], identity="notifications-read-all", permission=SIGNED_IN)
    async def read_all(self, request: Request) -> Response:
        user_id = request.state.user.id

        def mark() -> int:
            with transaction() as session:
                return service.mark_all_read(session, user_id)

        await anyio.to_thread.run_sync(mark)
        return RedirectResponse(url_path(request, "admin:view-notifications"), status_code=303)

    async def _own(self, request: Request, notification_id: int | None, *, open_it: bool) -> str:
        user_id = request.state.user.id

        def mark() -> str:
            with transaction() as session:
                row = service.mark_read(session, user_id, notification_id)
                return _link_path(request, row.link) if open_it else ""

        try:
            return await anyio.to_thread.run_sync(mark)
        except NotFound:
            raise HTTPException(status_code=404, detail=NOT_FOUND) from None


class NotificationSettings(_Personal):
    """通知设置: where the user's own notifications also go (e-mail, group robots), each per event or as
    a daily digest."""

    name = "通知设置"
    icon = "fa-solid fa-bell"
    identity = "account-notifications"

    @route("/account/notifications", methods=["GET", "POST"], identity="account-notifications",
           permission=SIGNED_IN)
    async def settings(self, request: Request) -> Response:
        user_id = request.state.user.id
        context: dict[str, Any] = {"title": "通知设置", "kinds": [(k, service.CHANNEL_LABELS[k]) for k in CHANNEL_KINDS],
                                   "form": {}}
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                context["message"] = await anyio.to_thread.run_sync(_change, form, user_id, None)
            except NotFound:
                raise HTTPException(status_code=404, detail=NOT_FOUND) from None
            except UserError as exc:
                context["error"], status = exc.message, 400
                context["form"] = {k: _form_text(form, k, 500) for k in ("kind", "address", "daily_digest")}

        def load() -> list[dict[str, Any]]:
            with session_factory()() as session:
                return _channel_rows(service.channels_of(session, user_id=user_id))

        context["channels"] = await anyio.to_thread.run_sync(load)
        return await self.templates.TemplateResponse(request, "notifications/settings.html", context,
                                                     status_code=status)


def _change(form: Any, user_id: int | None, dept_id: int | None) -> str:
    """One change of a channel: add, or enable/disable/digest/delete an existing one (by its id)."""
    op = _form_text(form, "op", 16)
    departments = user_id is None
    with transaction() as session:
        if op == "add":
            if departments:
                dept_id = parse_id(form.get("dept_id"))
                if dept_id is None:
                    raise UserError(_("请选择部门。"), field="dept_id")
            service.add_channel(session, kind=_form_text(form, "kind", 16), address=_form_text(form, "address", 600),
                                secret=_form_text(form, "secret", 300), daily_digest=bool(form.get("daily_digest")),
                                user_id=user_id, dept_id=dept_id)
            return _("已添加通知渠道。")
        return service.change_channel(session, parse_id(form.get("id")), op=op, user_id=user_id,
                                      departments=departments)


class NotificationAdmin(BaseView):
    """通知管理 (administrators): the departments' channels and the deliveries that failed, with retry."""

    name = "通知管理"
    icon = "fa-solid fa-bell"
    identity = "notification-admin"

    def is_visible(self, request: Request) -> bool:
        return False  # reached from the notification centre

    def is_accessible(self, request: Request) -> bool:
        principal = getattr(request.state, "principal", None)
        return principal is not None and (principal.can(*DEPT_CHANNELS) or principal.can(*FAILED_LIST))

    @route("/notifications/departments", methods=["GET", "POST"], identity="notification-departments",
           permission=DEPT_CHANNELS)
    async def departments(self, request: Request) -> Response:
        context: dict[str, Any] = {"title": "部门通知渠道", "form": {},
                                   "kinds": [(k, service.CHANNEL_LABELS[k]) for k in CHANNEL_KINDS]}
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                context["message"] = await anyio.to_thread.run_sync(_change, form, None, None)
            except NotFound:
                raise HTTPException(status_code=404, detail=NOT_FOUND) from None
            except UserError as exc:
                context["error"], status = exc.message, 400

        def load() -> dict[str, Any]:
            with session_factory()() as session:
                depts = session.execute(select(SysDept.id, SysDept.name).order_by(SysDept.id)).tuples().all()
                return {"depts": [(i, n) for i, n in depts], "dept_names": dict(depts),
                        "channels": _channel_rows(service.channels_of(session))}

        context.update(await anyio.to_thread.run_sync(load))
        return await self.templates.TemplateResponse(request, "notifications/departments.html", context,
                                                     status_code=status)

    @route("/notifications/failed", identity="notification-failed", permission=FAILED_LIST)
    async def failed(self, request: Request) -> Response:
        def load() -> dict[str, Any]:
            with session_factory()() as session:
                rows = service.failed_deliveries(session)
                return {"rows": [{"id": r.id, "kind": service.CHANNEL_LABELS.get(r.channel_kind, r.channel_kind),
                                  "target": r.target, "subject": r.subject, "attempts": r.attempts,
                                  "error": r.last_error or "", "at": format_datetime(r.updated_at)} for r in rows],
                        "counts": service.outbox_counts(session)}

        context = {"title": "发送失败的通知", "message": request.query_params.get("msg", "")[:200],
                   "can_retry": principal_of(request).can(*FAILED_RETRY), **(await anyio.to_thread.run_sync(load))}
        return await self.templates.TemplateResponse(request, "notifications/failed.html", context)

    @route("/notifications/failed/retry", methods=["POST"], identity="notification-failed-retry",
           permission=FAILED_RETRY)
    async def retry(self, request: Request) -> Response:
        form = await request.form()
        outbox_id = parse_id(form.get("id"))

        def again() -> None:
            with transaction() as session:
                service.retry_failed(session, outbox_id)

        message = _("已重新排队发送。")
        try:
            await anyio.to_thread.run_sync(again)
        except NotFound:
            raise HTTPException(status_code=404, detail=NOT_FOUND) from None
        except UserError as exc:
            message = exc.message
        query = urlencode({"msg": message})
        return RedirectResponse(f"{url_path(request, 'admin:view-notification-failed')}?{query}", status_code=303)


VIEWS = [NotificationCentre, NotificationSettings, NotificationAdmin]
