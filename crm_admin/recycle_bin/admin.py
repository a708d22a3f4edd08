"""The recycle bin's page (回收站): what was deleted, by whom, until when; restore or purge, one entry or
several, each after a confirmation page (POST with the CSRF token)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.core.errors import UserError, friendly_db_error
from crm_admin.core.formatting import format_datetime
from crm_admin.core.i18n import tr
from crm_admin.core.models import SysUser
from crm_admin.core.pages import base_context, run_sync, url_path
from crm_admin.core.params import parse_id, parse_page
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, principal_of
from crm_admin.db import run_in_transaction, session_factory
from crm_admin.recycle_bin import service
from crm_admin.recycle_bin.models import RecycleEntry


def _(text: str) -> str:
    """Marks a text for the English catalog (translated where it is shown)."""
    return text


MAX_BATCH = 500  # entries restored or purged at once
PAGE_SIZE = 20
RESOURCE_CHOICES = ("customer", "linkman", "opportunity", "order")
ACTIONS = {
    "restore": (_("恢复"), _("确认恢复"), _("已恢复 {n} 条记录。")),
    "purge": (_("彻底删除"), _("确认彻底删除"), _("已彻底删除 {n} 条记录。")),
}


def _names(session: Any, ids: set[int]) -> dict[int, str]:
    wanted = sorted(i for i in ids if i)
    if not wanted:
        return {}
    rows = session.execute(select(SysUser.id, SysUser.real_name, SysUser.username).where(SysUser.id.in_(wanted)))
    return {r.id: r.real_name or r.username for r in rows}


def _shown(row: Any, names: dict[int, str]) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else (lambda key: getattr(row, key))
    deleted_by: int = get("deleted_by") or 0
    return {
        "id": get("id"), "resource": get("resource"), "type": tr(service.resource_label(str(get("resource")))),
        "label": get("label"), "customer_name": get("customer_name") or "",
        "summary": get("summary") or "", "rows": get("row_count"),
        # a user's name (as kept at the deletion, if the user is gone); a job's deletion: shown as 系统
        "deleted_by": (names.get(deleted_by) or get("deleted_by_name") or "") if deleted_by else "",
        "deleted_at": format_datetime(get("deleted_at")), "expires_at": format_datetime(get("expires_at")),
    }


def _listing(principal: Principal, resource: str, page: int) -> dict[str, Any]:
    with session_factory()() as session:
        found = service.list_entries(session, principal, resource=resource, page=page, page_size=PAGE_SIZE)
        names = _names(session, {r["deleted_by"] for r in found.rows if r["deleted_by"]})
        return {"rows": [_shown(r, names) for r in found.rows], "total": found.total, "page": found.page,
                "pages": found.pages}


def _chosen(principal: Principal, ids: list[int], action: str) -> list[dict[str, Any]]:
    with session_factory()() as session:
        entries = service.chosen_entries(session, principal, ids, action)
        names = _names(session, {e.deleted_by for e in entries if e.deleted_by})
        return [_shown(e, names) for e in entries]


def _apply(principal: Principal, ids: list[int], action: str) -> list[RecycleEntry]:
    """Restore or purge as one unit of work, run again on a passing database error (a deadlock); a
    refusal by the database (a unique value taken at the same moment) is a message, nothing changed."""
    work = service.restore_entries if action == "restore" else service.purge_entries
    try:
        return run_in_transaction(lambda session: work(session, principal, ids), where=f"recycle_bin:{action}")
    except SQLAlchemyError as exc:
        raise UserError(friendly_db_error(exc)) from None


def _posted_ids(form: FormData) -> list[int]:
    """The entries a form names: the one a row's button names, else every ticked box."""
    one = form.get("one")
    raw = [one] if one not in (None, "") else form.getlist("ids")
    ids = []
    for value in raw[:MAX_BATCH + 1]:
        pk = parse_id(value)
        if pk is None:
            raise UserError(service.ENTRY_MISSING)
        ids.append(pk)
    if len(ids) > MAX_BATCH:
        raise UserError(f"一次最多处理 {MAX_BATCH} 条回收站记录,请分批操作。")
    if not ids:
        raise UserError(service.NOTHING_CHOSEN)
    return ids


class RecycleBinPage(CrmBaseView):
    """回收站: deleted customers, contacts, opportunities and orders within the user's scope."""

    name = "回收站"
    icon = "fa-solid fa-trash-can-arrow-up"
    category = "客户管理"
    resource = "recycle_bin"

    @route("/recycle-bin", identity="recycle-bin", permission=("recycle_bin", "list"))
    async def recycle_bin_page(self, request: Request) -> Response:
        principal = principal_of(request)
        params = request.query_params
        resource = params.get("resource", "")
        resource = resource if resource in RESOURCE_CHOICES else ""
        data = await run_sync(_listing, principal, resource, parse_page(params.get("page")))
        page = data["page"]
        ctx = base_context(
            request, "回收站", message=params.get("message", "")[:300], error=params.get("error", "")[:300],
            resource=resource, choices=[(r, tr(service.resource_label(r))) for r in RESOURCE_CHOICES],
            can_restore=principal.can("recycle_bin", "restore"), can_purge=principal.can("recycle_bin", "purge"),
            days=service.get_settings().recycle_bin_days,
            prev_url=str(request.url.include_query_params(page=max(1, page - 1))),
            next_url=str(request.url.include_query_params(page=page + 1)), **data)
        return await self.templates.TemplateResponse(request, "recycle_bin/list.html", ctx)

    @route("/recycle-bin/restore", methods=["POST"], identity="recycle-bin-restore",
           permission=("recycle_bin", "restore"))
    async def recycle_bin_restore(self, request: Request) -> Response:
        return await self._act(request, "restore")

    @route("/recycle-bin/purge", methods=["POST"], identity="recycle-bin-purge",
           permission=("recycle_bin", "purge"))
    async def recycle_bin_purge(self, request: Request) -> Response:
        return await self._act(request, "purge")

    async def _act(self, request: Request, action: str) -> Response:
        """Without ``confirmed``: the confirmation page listing the chosen entries; with it: done."""
        principal = principal_of(request)
        form = await request.form(max_fields=MAX_BATCH + 16)
        try:
            ids = _posted_ids(form)
            if form.get("confirmed") != "1":
                chosen = await run_sync(_chosen, principal, ids, action)
                verb, confirm, _done = ACTIONS[action]
                ctx = base_context(request, f"回收站:{verb}", action=action, verb=verb, confirm=confirm,
                                   entries=chosen, target=str(request.url_for(f"admin:view-recycle-bin-{action}")),
                                   back=url_path(request, "admin:view-recycle-bin"))
                return await self.templates.TemplateResponse(request, "recycle_bin/confirm.html", ctx)
            done = await run_sync(_apply, principal, ids, action)
        except UserError as exc:
            return RedirectResponse(url_path(request, "admin:view-recycle-bin", query={"error": exc.message}), 303)
        message = tr(ACTIONS[action][2]).format(n=len(done))
        return RedirectResponse(url_path(request, "admin:view-recycle-bin", query={"message": message}), 303)


VIEWS = [RecycleBinPage]
