"""The home page (SQLAdmin's index): a dashboard for the signed-in user's role."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crm_admin.core.formatting import day_start_utc, local_today
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.formatting import format_money as fmt_money
from crm_admin.core.i18n import Labels
from crm_admin.core.pages import base_context, run_sync
from crm_admin.core.principal import Principal
from crm_admin.dashboard import blocks, service
from crm_admin.db import session_factory
from crm_admin.dictionary import service as dictionary

LEVEL_LABELS = Labels({"medium": "中风险", "high": "高风险"})


def _data(principal: Principal) -> dict[str, Any]:
    today = local_today()
    today_end = day_start_utc(today + dt.timedelta(days=1))
    board = service.build(session_factory(), principal, today=today, today_end=today_end)
    return {
        "board": board,
        "today": today.isoformat(),
        "care_rows": [
            {"customer_id": r.customer_id, "customer": r.customer, "linkman": r.linkman, "type": dictionary.label("care_type", r.care_type), "executed": r.executed}
            for r in board.care_today_rows
        ],
        # the board is built (and cached) in a worker thread, outside the request's language: words are
        # looked up here
        "pipeline": [{**p, "label": dictionary.label("opportunity_stage", p["stage"]), "amount": fmt_money(p["amount"])}
                     for p in board.pipeline],
        "pipeline_total": fmt_money(sum((p["amount"] for p in board.pipeline), start=0)),
        "at_risk": [{**c, "last_contact_at": fmt_dt(c["last_contact_at"]) or "—"} for c in board.at_risk],
        "alerts": [(LEVEL_LABELS.get(k, k), v) for k, v in sorted(board.alerts_open.items())],
        "alerts_total": sum(board.alerts_open.values()),
        "failed_logins": [{**f, "occurred_at": fmt_dt(f["occurred_at"])} for f in board.failed_logins],
        "order_amount_month": fmt_money(board.totals.get("order_amount_month", 0)),
        # what business modules add (dashboard/blocks.py), each read within the principal's scope
        "blocks": blocks.filled(session_factory(), principal),
    }


async def render_dashboard(admin: Any, request: Request) -> Response:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or not principal.can("dashboard", "list"):
        return await admin.templates.TemplateResponse(request, "sqladmin/index.html")
    data = await run_sync(_data, principal)
    ctx = base_context(request, "工作台" if not principal.is_admin else "系统概览", principal=principal,
                       can=principal.can, **data)
    return await admin.templates.TemplateResponse(request, "dashboard/home.html", ctx)


VIEWS: list[type] = []
