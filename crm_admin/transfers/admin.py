"""Admin views of the customer transfer module: the transfer page, the history, the hand-over."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.accounts.models import SysUser
from crm_admin.core import search
from crm_admin.core.errors import UserError
from crm_admin.core.formatting import day_start_utc
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.pages import base_context, run_sync
from crm_admin.core.params import parse_date, parse_int, parse_page
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.scope import (
    TRANSFER,
    assignable_users,
    scoped,
    sees_several_users,
    users_in_scope,
)
from crm_admin.core.views import CrmBaseView, ReadOnlyModelView, principal_of
from crm_admin.customers.models import Customer
from crm_admin.db import session_factory, transaction
from crm_admin.transfers import service
from crm_admin.transfers.models import CustomerTransfer

PICK_LIMIT = 200


class CustomerTransferAdmin(ReadOnlyModelView, model=CustomerTransfer):
    name = "转移记录"
    name_plural = "客户转移记录"
    icon = "fa-solid fa-right-left"
    category = "客户管理"
    column_list = [CustomerTransfer.customer, CustomerTransfer.old_manager, CustomerTransfer.new_manager,
                   CustomerTransfer.reason, CustomerTransfer.transferred_at, CustomerTransfer.operator]
    column_labels = {
        "customer": "客户", "old_manager": "原客户经理", "new_manager": "新客户经理", "reason": "转移原因",
        "transferred_at": "转移时间", "operator": "操作人", "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_default_sort = [(CustomerTransfer.transferred_at, True)]

    def is_visible(self, request: Request) -> bool:
        # the filterable history page below replaces this list in the menu
        return False


def _user_label(user: object) -> str:
    return str(user)


def _pick_customers(session: Any, principal: Principal, q: str, manager_id: int | None,
                    preselect: list[int]) -> list[dict[str, Any]]:
    stmt = scoped(select(Customer).where(Customer.pool_id.is_(None)), Customer, principal, "transfer")
    if q and (found := search.match(session.connection(), Customer, q)) is not None:
        stmt = stmt.where(found)
    if manager_id:
        stmt = stmt.where(Customer.manager_id == manager_id)
    rows = list(session.execute(stmt.order_by(Customer.name).limit(PICK_LIMIT)).scalars())
    have = {c.id for c in rows}
    extra = [i for i in preselect if i not in have]
    if extra:
        rows += list(session.execute(
            scoped(select(Customer).where(Customer.id.in_(extra)), Customer, principal, "transfer")
        ).scalars())
    managers = {u.id: u for u in session.execute(
        select(SysUser).where(SysUser.id.in_({c.manager_id for c in rows if c.manager_id}))
    ).scalars()}
    return [
        {"id": c.id, "code": c.code, "name": c.name, "version": c.version, "status": c.status,
         "manager": str(managers[c.manager_id]) if c.manager_id in managers else "",
         "checked": c.id in preselect}
        for c in rows
    ]


def _page_data(principal: Principal, q: str, manager_id: int | None, preselect: list[int]) -> dict[str, Any]:
    with session_factory()() as session:
        customers = _pick_customers(session, principal, q, manager_id, preselect)
        managers = [{"id": u.id, "label": _user_label(u)}
                    for u in assignable_users(session, principal, purpose=TRANSFER)]
        owners: list[dict[str, Any]] = []
        if sees_several_users(principal, "customer", "transfer"):
            owners = [{"id": u.id, "label": _user_label(u)}
                      for u in users_in_scope(session, principal, active_only=False, resource="customer",
                                              action="transfer")]
    return {"customers": customers, "managers": managers, "owners": owners, "limit": PICK_LIMIT}


def _submit(principal: Principal, form: dict[str, Any]) -> service.TransferResult:
    ids = [i for i in (parse_int(v) for v in form["customer_ids"]) if i]
    versions = {i: v for i in ids if (v := parse_int(form["versions"].get(str(i)))) is not None}
    with transaction() as session:
        return service.transfer_customers(
            session, principal, customer_ids=ids, new_manager_id=parse_int(form["new_manager_id"]),
            reason=form["reason"], expected_versions=versions,
        )


def _handover(principal: Principal, from_id: int | None, to_id: int | None, reason: str) -> service.TransferResult:
    with transaction() as session:
        return service.hand_over_customers(
            session, principal, from_user_id=from_id or 0, to_user_id=to_id or 0, reason=reason,
        )


def _history(principal: Principal, flt: service.TransferFilter, page: int) -> dict[str, Any]:
    with session_factory()() as session:
        rows, total = service.list_transfers(session, principal, flt, page=page)
        users = [{"id": u.id, "label": _user_label(u)} for u in session.execute(
            select(SysUser).order_by(SysUser.real_name, SysUser.username)
        ).scalars()]
    return {
        "rows": [{**r._asdict(), "transferred_at": fmt_dt(r.transferred_at)} for r in rows],
        "total": total,
        "users": users,
    }


def _local_day_start(day: dt.date | None) -> dt.datetime | None:
    if day is None:
        return None
    return day_start_utc(day)


class TransferPage(CrmBaseView):
    """客户转移: pick customers, the new manager and a reason; one transaction for all of them."""

    name = "客户转移"
    icon = "fa-solid fa-right-left"
    category = "客户管理"
    resource = "transfer"

    @route("/transfer", identity="transfer", permission=("transfer", "list"))
    async def transfer_page(self, request: Request) -> Response:
        if not principal_of(request).can("customer", "transfer"):
            # who may only read transfers is never shown a form they cannot use: the history instead
            return RedirectResponse(request.url_for("admin:view-transfer-history"), status_code=303)
        return await self._render_form(request)

    async def _render_form(self, request: Request, *, form: dict[str, Any] | None = None,
                           error: str = "", status: int = 200) -> Response:
        principal = principal_of(request)
        q = request.query_params.get("q", "").strip()[:64]
        owner = parse_int(request.query_params.get("manager_id"))
        preselect = [i for i in (parse_int(v) for v in request.query_params.getlist("customer_id")) if i]
        if form:
            preselect = [i for i in (parse_int(v) for v in form["customer_ids"]) if i]
        data = await run_sync(_page_data, principal, q, owner, preselect)
        ctx = base_context(
            request, "客户转移", q=q, owner_id=owner, error=error,
            form=form or {"new_manager_id": "", "reason": ""},
            done=request.query_params.get("done"),
            can_transfer=principal.can("customer", "transfer"),
            can_hand_over=sees_several_users(principal, "customer", "transfer"), **data,
        )
        return await self.templates.TemplateResponse(request, "transfers/transfer.html", ctx,
                                                     status_code=status)

    @route("/transfer/submit", methods=["POST"], identity="transfer-submit", permission=("customer", "transfer"))
    async def transfer_submit(self, request: Request) -> Response:
        # two fields per customer (its id and the version it was shown at): a whole batch may be posted
        raw = await request.form(max_fields=2 * service.MAX_BATCH + 16)
        ids = [str(v) for v in raw.getlist("customer_id")]
        form = {
            "customer_ids": ids,
            "versions": {i: str(raw.get(f"version_{i}", "")) for i in ids},
            "new_manager_id": str(raw.get("new_manager_id", "")),
            "reason": str(raw.get("reason", ""))[:2000],
        }
        try:
            result = await run_sync(_submit, principal_of(request), form)
        except UserError as exc:
            return await self._render_form(request, form=form, error=exc.message, status=exc.status_code)
        query = urlencode({"done": result.count})
        return RedirectResponse(f"{request.url_for('admin:view-transfer')}?{query}", status_code=303)

    @route("/transfer/history", identity="transfer-history", permission=("transfer", "list"))
    async def transfer_history(self, request: Request) -> Response:
        principal = principal_of(request)
        qp = request.query_params
        day_to = parse_date(qp.get("date_to", ""))
        flt = service.TransferFilter(
            customer_id=parse_int(qp.get("customer_id")),
            customer=qp.get("customer", "").strip()[:64],
            old_manager_id=parse_int(qp.get("old_manager_id")),
            new_manager_id=parse_int(qp.get("new_manager_id")),
            operator_id=parse_int(qp.get("operator_id")),
            date_from=_local_day_start(parse_date(qp.get("date_from", ""))),
            date_to=_local_day_start(day_to + dt.timedelta(days=1)) if day_to else None,
        )
        page = parse_page(qp.get("page"))
        data = await run_sync(_history, principal, flt, page)
        ctx = base_context(request, "客户转移记录", qp=dict(qp), page=page, page_size=50, **data)
        return await self.templates.TemplateResponse(request, "transfers/history.html", ctx)

    # handing over all of someone's customers needs to see all of them: a data-scope rule on top
    @route("/transfer/handover", methods=["GET", "POST"], identity="transfer-handover",
           permission=("customer", "transfer"))
    async def transfer_handover(self, request: Request) -> Response:
        principal = principal_of(request)
        if not sees_several_users(principal, "customer", "transfer"):
            return await self.templates.TemplateResponse(
                request, "transfers/handover.html",
                base_context(request, "离职交接", forbidden=True, users=[], managers=[], form={}),
                status_code=403,
            )
        form: dict[str, Any] = {
            "from_user_id": request.query_params.get("from_user_id", ""), "to_user_id": "", "reason": "",
        }
        error = ""
        done: service.TransferResult | None = None
        status = 200
        if request.method == "POST":
            raw = await request.form()
            form = {k: str(raw.get(k, ""))[:2000] for k in ("from_user_id", "to_user_id", "reason")}
            try:
                done = await run_sync(_handover, principal, parse_int(form["from_user_id"]),
                                      parse_int(form["to_user_id"]), form["reason"])
            except UserError as exc:
                error, status = exc.message, exc.status_code
        data = await run_sync(_page_data, principal, "", None, [])
        ctx = base_context(request, "离职交接", form=form, error=error, done=done,
                           users=data["owners"], managers=data["managers"], forbidden=False)
        return await self.templates.TemplateResponse(request, "transfers/handover.html", ctx,
                                                     status_code=status)


VIEWS = [CustomerTransferAdmin, TransferPage]
