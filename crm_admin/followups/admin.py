"""Admin views of the follow-ups module, and "my follow-ups due today / overdue"."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from crm_admin.contacts.models import Linkman
from crm_admin.core.errors import UserError
from crm_admin.core.export import format_local
from crm_admin.core.formatting import day_start_utc, local_today
from crm_admin.core.params import parse_page
from crm_admin.core.routes import route
from crm_admin.core.scope import owner_clause
from crm_admin.core.views import CrmBaseView, CrmModelView, narrowed_ref, principal_of, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.db import session_factory
from crm_admin.dictionary.service import DictSelectField, label
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import after_follow_up_saved, due_follow_ups, validate_follow_up


class FollowUpAdmin(CrmModelView, model=FollowUp):
    name = "联系记录"
    icon = "fa-solid fa-phone"
    category = "客户管理"
    column_list = [FollowUp.customer, FollowUp.method, FollowUp.contacted_at, FollowUp.linkman,
                   FollowUp.manager, FollowUp.next_follow_up_at]
    column_export_list = ["customer", "linkman", "method", "content", "contacted_at", "next_follow_up_at",
                          "manager"]
    column_labels = {
        "customer": "客户", "linkman": "联系人", "manager": "客户经理", "method": "跟进方式",
        "content": "内容", "contacted_at": "联系时间", "next_follow_up_at": "下次跟进",
        "opportunity_id": "销售机会", "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_dict_types = {"method": "follow_up_method"}
    column_formatters = {
        FollowUp.customer: lambda m, a: m.customer.name if m.customer else "",
        FollowUp.method: lambda m, a: label("follow_up_method", m.method),
        FollowUp.contacted_at: lambda m, a: format_local(m.contacted_at),
        FollowUp.next_follow_up_at: lambda m, a: format_local(m.next_follow_up_at),
    }
    column_sortable_list = [FollowUp.contacted_at, FollowUp.next_follow_up_at]
    column_default_sort = [(FollowUp.contacted_at, True)]
    form_columns = ["customer", "linkman", "method", "content", "contacted_at", "next_follow_up_at"]
    form_overrides = {"method": DictSelectField}
    form_args = {"method": {"dict_type": "follow_up_method"}}
    form_ajax_refs = {
        "customer": scoped_ref(Customer, ["name", "code"]),
        "linkman": narrowed_ref(Linkman, ["name"], by="customer", column="customer_id"),
    }

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if obj.customer_id is None:
            raise UserError("请选择客户。", field="customer")
        if is_created:
            obj.manager_id = principal_of(request).id
        validate_follow_up(session, obj)
        after_follow_up_saved(session, obj)


class DueFollowUpsView(CrmBaseView):
    """我的待跟进: follow-ups whose next date is today or already past, latest per customer."""

    name = "我的待跟进"
    icon = "fa-solid fa-bell"
    category = "客户管理"
    resource = "follow_up"

    @route("/follow-ups/due", identity="follow-ups-due", permission=("follow_up", "list"))
    async def due(self, request: Request) -> Response:
        principal = principal_of(request)
        mine_only = request.query_params.get("all") != "1"
        page = parse_page(request.query_params.get("page"))
        due = await anyio.to_thread.run_sync(load_due, principal, mine_only, page)
        context = {"title": "我的待跟进", "mine_only": mine_only, **due}
        return await self.templates.TemplateResponse(request, "followups/due.html", context)


DUE_PAGE_SIZE = 50


def load_due(principal: Any, mine_only: bool, page: int = 1) -> dict[str, Any]:
    """One page of the due follow-ups (soonest first) with their full count."""
    today = local_today()
    end = day_start_utc(today + dt.timedelta(days=1))
    start = day_start_utc(today)
    due = due_follow_ups(principal, today_end=end, mine_only=mine_only)
    out = []
    with session_factory()() as session:
        total = int(session.execute(select(func.count()).select_from(due.order_by(None).subquery())).scalar_one())
        pages = max(1, -(-total // DUE_PAGE_SIZE))
        page = min(max(1, page), pages)
        # the page's ids from the indexes alone, then just those rows with their customer
        ids = list(session.execute(due.with_only_columns(FollowUp.id).order_by(FollowUp.id)
                                   .offset((page - 1) * DUE_PAGE_SIZE).limit(DUE_PAGE_SIZE)).scalars())
        # (through the customer scope: the ids were picked by the manager the follow-ups carry)
        stmt = (select(FollowUp, Customer.name, Customer.id).join(Customer, Customer.id == FollowUp.customer_id)
                .where(FollowUp.id.in_(ids),
                       owner_clause(Customer.manager_id, principal, resource="follow_up", action="list"))
                .order_by(FollowUp.next_follow_up_at, FollowUp.id))
        for f, customer_name, customer_id in session.execute(stmt) if ids else ():
            assert f.next_follow_up_at is not None
            out.append({
                "customer": customer_name, "customer_id": customer_id,
                "method": label("follow_up_method", f.method), "content": f.content,
                "contacted_at": format_local(f.contacted_at), "due": format_local(f.next_follow_up_at),
                "overdue": f.next_follow_up_at < start,
            })
    return {"rows": out, "total": total, "page": page, "pages": pages}


VIEWS = [FollowUpAdmin, DueFollowUpsView]
