"""Pages of the public pools (公海): the pools, a pool's customers (claim, assign), a customer's pool page
with its history, returning customers to a pool, the report, and the pools' settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.core import customer_records, search
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime, local_today
from crm_admin.core.pages import base_context, run_sync, url_path
from crm_admin.core.params import parse_id, parse_int, parse_page
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.scope import ASSIGN, assignable_users, scoped
from crm_admin.core.views import CrmBaseView, principal_of
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import choices, label
from crm_admin.pools import service
from crm_admin.pools.models import LOG_KIND_LABELS, CustomerPool

PICK_LIMIT = 200  # customers offered on the return page
REPORT_MONTHS = 12


def _pool_or_404(session: Any, principal: Principal, pool_id: int, action: str = "list") -> CustomerPool:
    try:
        return service.usable_pool(session, principal, pool_id, action)
    except NotFound:
        raise HTTPException(status_code=404, detail="公海不存在或您无权访问。") from None


def _index(principal: Principal) -> dict[str, Any]:
    with session_factory()() as session:
        pools = service.usable_pools(session, principal, "list")
        counts = service.pool_counts(session, [p.id for p in pools])
        return {"pools": [{"id": p.id, "name": p.name, "remark": p.remark or "", "active": p.is_active,
                           "mask": p.mask_contacts, "hold": p.hold_limit, "daily": p.daily_claim_limit,
                           "count": counts.get(p.id, 0)} for p in pools]}


def _filter_of(request: Request) -> service.PoolFilter:
    qp = request.query_params
    sort = qp.get("sort", "oldest")
    return service.PoolFilter(
        q=qp.get("q", "").strip()[:64], industry=qp.get("industry", "").strip()[:64],
        level=qp.get("level", "").strip()[:64], region=qp.get("region", "").strip()[:64],
        min_days=parse_int(qp.get("min_days"), minimum=1, maximum=36500),
        sort=sort if sort in service.SORTS else "oldest",
    )


def _customers_page(principal: Principal, pool_id: int, flt: service.PoolFilter, page: int) -> dict[str, Any]:
    with session_factory()() as session:
        pool = _pool_or_404(session, principal, pool_id)
        rows, total = service.pool_customers(session, principal, pool, flt, page=page)
        for r in rows:
            r["industry_label"] = label("industry", r["industry"])
            r["level_label"] = label("customer_level", r["level"])
            r["status_label"] = STATUS_LABELS.get(r["status"], r["status"])
            r["entered"] = format_datetime(r["entered_at"])
            r["last_kind_label"] = LOG_KIND_LABELS.get(r["last_kind"], r["last_kind"]) if r["last_kind"] else ""
        can_claim = principal.can("pool", "claim") and pool.is_active
        can_assign = principal.can("pool", "assign") and pool.is_active
        limits = service.limits_for(session, pool, principal.id) if can_claim else None
        assignees = ([{"id": u.id, "label": str(u)} for u in assignable_users(session, principal, purpose=ASSIGN)]
                     if can_assign else [])
        return {
            "pool": {"id": pool.id, "name": pool.name, "remark": pool.remark or "", "active": pool.is_active,
                     "mask": pool.mask_contacts},
            "rows": rows, "total": total, "can_claim": can_claim, "can_assign": can_assign,
            "assignees": assignees,
            "hold_limit": limits.hold if limits else None, "daily_limit": limits.daily if limits else None,
            "held": service.held_count(session, principal.id) if can_claim else 0,
            "claimed_today": service.claimed_today(session, pool.id, principal.id) if can_claim else 0,
            "industries": choices("industry"), "levels": choices("customer_level"),
        }


def _customer_page(principal: Principal, pool_id: int, customer_id: int) -> dict[str, Any]:
    with session_factory()() as session:
        pool = _pool_or_404(session, principal, pool_id, "view")
        try:
            data = service.pool_customer(session, principal, pool, customer_id)
        except NotFound:
            raise HTTPException(status_code=404, detail="该客户不在此公海中,或不存在。") from None
        c = data["customer"]
        return {
            "pool": {"id": pool.id, "name": pool.name, "active": pool.is_active},
            "c": {"id": c.id, "code": c.code, "name": c.name, "industry": label("industry", c.industry),
                  "level": label("customer_level", c.level), "source": label("customer_source", c.source),
                  "status": STATUS_LABELS.get(c.status, c.status), "region": c.region or "",
                  "website": c.website or "", "entered": format_datetime(c.pool_entered_at),
                  "last_contact": format_datetime(c.last_contact_at), "last_order": format_datetime(c.last_order_at)},
            "phone": data["phone"], "email": data["email"], "address": data["address"], "masked": data["masked"],
            "contacts": data["contacts"],
            "transfers": [{**t, "at": format_datetime(t["at"])} for t in data["transfers"]],
            "moves": [{**m, "at": format_datetime(m["at"]), "kind": LOG_KIND_LABELS.get(m["kind"], m["kind"])}
                      for m in data["moves"]],
            "can_claim": principal.can("pool", "claim") and pool.is_active,
        }


def _claim(principal: Principal, pool_id: int, ids: list[str]) -> service.PoolResult:
    with transaction() as session:  # the service's first statement is its lock (no read before it)
        return service.claim_customers(session, principal, pool_id=pool_id, customer_ids=ids)


def _assign(principal: Principal, pool_id: int, ids: list[str], user_id: str) -> service.PoolResult:
    with transaction() as session:  # the service's first statement is its lock (no read before it)
        return service.assign_from_pool(session, principal, pool_id=pool_id, customer_ids=ids,
                                        user_id=user_id or None)


def _return_page(principal: Principal, q: str, preselect: list[int]) -> dict[str, Any]:
    with session_factory()() as session:
        stmt = scoped(select(Customer.id, Customer.code, Customer.name, Customer.manager_id)
                      .where(Customer.pool_id.is_(None)), Customer, principal, "return", resource="pool")
        if q and (found := search.match(session.connection(), Customer, q)) is not None:
            stmt = stmt.where(found)
        rows = list(session.execute(stmt.order_by(Customer.name, Customer.id).limit(PICK_LIMIT)).all())
        have = {r.id for r in rows}
        extra = [i for i in preselect if i not in have]
        if extra:
            rows += list(session.execute(
                scoped(select(Customer.id, Customer.code, Customer.name, Customer.manager_id)
                       .where(Customer.id.in_(extra[:service.MAX_BATCH]), Customer.pool_id.is_(None)),
                       Customer, principal, "return", resource="pool")).all())
        names = service.user_names(session, [r.manager_id for r in rows])
        pools = service.usable_pools(session, principal, "return")
        return {
            "customers": [{"id": r.id, "code": r.code, "name": r.name, "manager": names.get(r.manager_id or 0, ""),
                           "checked": r.id in preselect} for r in rows],
            "pools": [(p.id, p.name) for p in pools],
        }


def _return(principal: Principal, pool_id: str, ids: list[str], reason: str) -> service.PoolResult:
    with transaction() as session:
        return service.return_to_pool(session, principal, pool_id=parse_id(pool_id) or 0, customer_ids=ids,
                                      reason=reason)


def _report(principal: Principal) -> dict[str, Any]:
    today = local_today()
    month = today.month - REPORT_MONTHS + 1
    since = dt.date(today.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    with session_factory()() as session:
        pools = service.usable_pools(session, principal, "list")
        rows = service.pool_report(session, pools, since=since)
    totals = service.ReportRow(pool_id=0, pool="", month="")
    for r in rows:
        totals.returned += r.returned
        totals.reclaimed += r.reclaimed
        totals.claimed += r.claimed
        totals.assigned += r.assigned
        totals.dealt += r.dealt
    return {"rows": rows, "totals": totals, "since": since.isoformat()}


def _settings(principal: Principal, pool_id: int | None) -> dict[str, Any]:
    with session_factory()() as session:
        pool = session.get(CustomerPool, pool_id) if pool_id is not None else None
        if pool_id is not None and pool is None:
            raise HTTPException(status_code=404, detail="公海不存在。")
        data = service.pool_settings(session, pool)
        if pool is not None:
            data["form"] = service.PoolForm(
                name=pool.name, remark=pool.remark or "", is_active=pool.is_active, mask_contacts=pool.mask_contacts,
                hold_limit="" if pool.hold_limit is None else str(pool.hold_limit),
                daily_claim_limit="" if pool.daily_claim_limit is None else str(pool.daily_claim_limit),
                dept_ids=[str(i) for i in data["dept_ids"]], role_ids=[str(i) for i in data["role_ids"]],
                role_limits={str(k): v for k, v in data["limits"].items()},
            )
        else:
            data["form"] = service.PoolForm()
        return data


def _save(principal: Principal, pool_id: int | None, form: service.PoolForm) -> int:
    with transaction() as session:
        return service.save_pool(session, principal, pool_id=pool_id, form=form).id


def _done_message(result: service.PoolResult, verb: str) -> str:
    text = f"已{verb} {result.count} 个客户。"
    moved = [f"{n} {u}" for n, u in _handed_lines(result)]
    return text + (f"随客户移交:{'、'.join(moved)}。" if moved else "")


def _handed_lines(result: service.PoolResult) -> list[tuple[int, str]]:
    units = customer_records.hand_over_units()
    return [(n, units.get(k, k)) for k, n in result.handed_over.items() if n]


class PoolPage(CrmBaseView):
    """公海: customers nobody works, claimed by whoever may, assigned by leads, returned with a reason."""

    name = "公海客户"
    icon = "fa-solid fa-water"
    category = "客户管理"
    resource = "pool"

    @route("/pools", identity="pools", permission=("pool", "list"))
    async def pools(self, request: Request) -> Response:
        principal = principal_of(request)
        data = await run_sync(_index, principal)
        ctx = base_context(request, "公海", message=request.query_params.get("message", "")[:200],
                           can_create=principal.can("pool", "create"), can_edit=principal.can("pool", "edit"),
                           can_return=principal.can("pool", "return"),
                           can_report=principal.can("pool", "assign") or principal.can("pool", "edit"), **data)
        return await self.templates.TemplateResponse(request, "pools/index.html", ctx)

    @route("/pools/{pool_id:int}", identity="pool-customers", permission=("pool", "list"))
    async def pool_customers(self, request: Request) -> Response:
        return await self._customers(request)

    async def _customers(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        principal = principal_of(request)
        pool_id = int(request.path_params["pool_id"])
        flt = _filter_of(request)
        page = parse_page(request.query_params.get("page"))
        data = await run_sync(_customers_page, principal, pool_id, flt, page)
        ctx = base_context(request, f"公海:{data['pool']['name']}", flt=flt, page=page,
                           page_size=service.PAGE_SIZE, error=error,
                           message=request.query_params.get("message", "")[:300], **data)
        return await self.templates.TemplateResponse(request, "pools/customers.html", ctx, status_code=status)

    @route("/pools/{pool_id:int}/claim", methods=["POST"], identity="pool-claim", permission=("pool", "claim"))
    async def pool_claim(self, request: Request) -> Response:
        principal = principal_of(request)
        pool_id = int(request.path_params["pool_id"])
        raw = await request.form(max_fields=service.MAX_BATCH + 16)
        ids = [str(v) for v in raw.getlist("customer_id")]
        try:
            result = await run_sync(_claim, principal, pool_id, ids)
        except UserError as exc:
            return await self._customers(request, error=exc.message, status=exc.status_code)
        message = _done_message(result, "领取") + "客户的联系方式现已对您可见。"
        return RedirectResponse(url_path(request, "admin:view-pool-customers", pool_id=pool_id,
                                         query={"message": message}), status_code=303)

    @route("/pools/{pool_id:int}/assign", methods=["POST"], identity="pool-assign", permission=("pool", "assign"))
    async def pool_assign(self, request: Request) -> Response:
        principal = principal_of(request)
        pool_id = int(request.path_params["pool_id"])
        raw = await request.form(max_fields=service.MAX_BATCH + 16)
        ids = [str(v) for v in raw.getlist("customer_id")]
        try:
            result = await run_sync(_assign, principal, pool_id, ids, str(raw.get("user_id", ""))[:16])
        except UserError as exc:
            return await self._customers(request, error=exc.message, status=exc.status_code)
        return RedirectResponse(url_path(request, "admin:view-pool-customers", pool_id=pool_id,
                                         query={"message": _done_message(result, "分配")}), status_code=303)

    @route("/pools/{pool_id:int}/customer/{pool_customer_id:int}", identity="pool-customer",
           permission=("pool", "view"))
    async def pool_customer(self, request: Request) -> Response:
        principal = principal_of(request)
        data = await run_sync(_customer_page, principal, int(request.path_params["pool_id"]),
                              int(request.path_params["pool_customer_id"]))
        ctx = base_context(request, f"公海客户:{data['c']['name']}", **data)
        return await self.templates.TemplateResponse(request, "pools/customer.html", ctx)

    @route("/pools/return", methods=["GET", "POST"], identity="pool-return", permission=("pool", "return"))
    async def pool_return(self, request: Request) -> Response:
        principal = principal_of(request)
        form: dict[str, Any] = {"pool_id": "", "reason": ""}
        error = ""
        status = 200
        q = request.query_params.get("q", "").strip()[:64]
        preselect = [i for i in (parse_id(v) for v in request.query_params.getlist("customer_id")) if i]
        if request.method == "POST":
            raw = await request.form(max_fields=service.MAX_BATCH + 16)
            ids = [str(v) for v in raw.getlist("customer_id")]
            form = {"pool_id": str(raw.get("pool_id", ""))[:16], "reason": str(raw.get("reason", ""))[:2000]}
            try:
                result = await run_sync(_return, principal, form["pool_id"], ids, form["reason"])
            except UserError as exc:
                error, status = exc.message, exc.status_code
                preselect = [i for i in (parse_id(v) for v in ids) if i]
            else:
                return RedirectResponse(url_path(request, "admin:view-pool-return",
                                                 query={"done": _done_message(result, "退回公海")}), status_code=303)
        data = await run_sync(_return_page, principal, q, preselect)
        ctx = base_context(request, "退回公海", q=q, form=form, error=error, limit=PICK_LIMIT,
                           done=request.query_params.get("done", "")[:300], **data)
        return await self.templates.TemplateResponse(request, "pools/return.html", ctx, status_code=status)

    @route("/pools/report", identity="pool-report", permission=(("pool", "assign"), ("pool", "edit")))
    async def pool_report(self, request: Request) -> Response:
        data = await run_sync(_report, principal_of(request))
        return await self.templates.TemplateResponse(request, "pools/report.html",
                                                     base_context(request, "公海报表", **data))

    @route("/pools/new", methods=["GET", "POST"], identity="pool-new", permission=("pool", "create"))
    async def pool_new(self, request: Request) -> Response:
        return await self._settings_page(request, None)

    @route("/pools/{pool_id:int}/settings", methods=["GET", "POST"], identity="pool-settings",
           permission=("pool", "edit"))
    async def pool_settings(self, request: Request) -> Response:
        return await self._settings_page(request, int(request.path_params["pool_id"]))

    async def _settings_page(self, request: Request, pool_id: int | None) -> Response:
        principal = principal_of(request)
        data = await run_sync(_settings, principal, pool_id)
        error = ""
        status = 200
        if request.method == "POST":
            raw = await request.form(max_fields=1000)
            role_ids = [str(r[0]) for r in data["roles"]]
            form = service.PoolForm(
                name=str(raw.get("name", ""))[:200], remark=str(raw.get("remark", ""))[:2000],
                is_active=raw.get("is_active") == "1", mask_contacts=raw.get("mask_contacts") == "1",
                hold_limit=str(raw.get("hold_limit", ""))[:16],
                daily_claim_limit=str(raw.get("daily_claim_limit", ""))[:16],
                dept_ids=[str(v)[:16] for v in raw.getlist("dept_id")],
                role_ids=[str(v)[:16] for v in raw.getlist("role_id")],
                role_limits={rid: (str(raw.get(f"hold_{rid}", ""))[:16], str(raw.get(f"daily_{rid}", ""))[:16])
                             for rid in role_ids},
            )
            try:
                saved = await run_sync(_save, principal, pool_id, form)
            except UserError as exc:
                error, status = exc.message, exc.status_code
                data["form"] = form
            else:
                return RedirectResponse(url_path(request, "admin:view-pool-customers", pool_id=saved,
                                                 query={"message": f"公海“{form.name.strip()}”已保存。"}),
                                        status_code=303)
        form_data = data["form"]
        ctx = base_context(request, "新建公海" if pool_id is None else "公海设置", pool_id=pool_id, error=error,
                           form=form_data, selected_depts={int(i) for i in form_data.dept_ids if str(i).isdigit()},
                           selected_roles={int(i) for i in form_data.role_ids if str(i).isdigit()},
                           depts=data["depts"], roles=data["roles"])
        return await self.templates.TemplateResponse(request, "pools/settings.html", ctx, status_code=status)


VIEWS = [PoolPage]
