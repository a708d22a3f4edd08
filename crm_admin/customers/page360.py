"""The 360° customer page: profile, contacts, one timeline, totals, and the actions taken from there."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from crm_admin.accounts.models import SysUser
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.export import format_local
from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped
from crm_admin.customers import service
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.db import session_factory, transaction

TIMELINE_LIMIT = 50

# action slug → (resource, permission, message when done)
ACTIONS = {
    "contact": ("linkman", "create", "联系人已添加。"),
    "follow-up": ("follow_up", "create", "联系记录已保存,最近联系时间已更新。"),
    "opportunity": ("opportunity", "create", "销售机会已创建。"),
    "delete": ("customer", "delete", "客户已删除。"),
}


def _tz() -> ZoneInfo:
    from crm_admin.settings import get_settings

    return ZoneInfo(get_settings().timezone)


def parse_local_datetime(text: str | None, *, field: str) -> dt.datetime | None:
    """A datetime-local input (Asia/Shanghai wall time) as an aware UTC datetime."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError("时间格式不正确。", field=field) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_tz())
    return value.astimezone(dt.UTC)


def parse_date(text: str | None, *, field: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError("日期格式不正确,应为 YYYY-MM-DD。", field=field) from None


def load_360(principal: Principal, customer_id: int) -> dict[str, Any] | None:
    from crm_admin.care.models import CustomerCare
    from crm_admin.churn.models import ChurnAlert
    from crm_admin.contacts.models import Linkman
    from crm_admin.dictionary.service import choices, label
    from crm_admin.followups.models import FollowUp
    from crm_admin.opportunities.models import SalesOpportunity
    from crm_admin.opportunities.service import STATUS_LABELS as OPP_STATUS
    from crm_admin.orders.models import CustomerOrder
    from crm_admin.transfers.models import CustomerTransfer

    with session_factory()() as session:
        customer = session.execute(
            scoped(select(Customer).where(Customer.id == customer_id), Customer, principal)
        ).scalar_one_or_none()
        if customer is None:
            return None
        names = service.manager_names
        contacts = session.execute(
            select(Linkman).where(Linkman.customer_id == customer_id)
            .order_by(Linkman.is_primary.desc(), Linkman.id)
        ).scalars().all()
        contact_names = {c.id: c.name for c in contacts}
        timeline: list[dict[str, Any]] = []

        for f in session.execute(select(FollowUp).where(FollowUp.customer_id == customer_id)
                                 .order_by(FollowUp.contacted_at.desc()).limit(TIMELINE_LIMIT)).scalars():
            who = contact_names.get(f.linkman_id or 0, "")
            timeline.append({"at": f.contacted_at, "kind": "联系记录", "icon": "fa-phone",
                             "title": f"{label('follow_up_method', f.method)}{(' · ' + who) if who else ''}",
                             "text": f.content,
                             "extra": f"下次跟进:{format_local(f.next_follow_up_at)}" if f.next_follow_up_at else "",
                             "user_id": f.manager_id})
        for c in session.execute(select(CustomerCare).where(CustomerCare.customer_id == customer_id)
                                 .order_by(CustomerCare.id.desc()).limit(TIMELINE_LIMIT)).scalars():
            at = getattr(c, "care_time", None) or c.created_at
            timeline.append({"at": at, "kind": "客户关怀", "icon": "fa-heart",
                             "title": label("care_type", c.care_type),
                             "text": c.detail or "", "extra": f"状态:{c.status}" + (f";反馈:{c.feedback}" if c.feedback else ""),
                             "user_id": c.manager_id})
        opps = session.execute(select(SalesOpportunity).where(SalesOpportunity.customer_id == customer_id)
                               .order_by(SalesOpportunity.id.desc())).scalars().all()
        for o in opps[:TIMELINE_LIMIT]:
            timeline.append({"at": o.created_at, "kind": "销售机会", "icon": "fa-chart-line",
                             "title": o.title,
                             "text": f"{label('opportunity_stage', o.stage)} · ¥{o.amount:,.2f} · {o.probability}%",
                             "extra": OPP_STATUS.get(o.status, o.status) + (f"(丢单原因:{o.lost_reason})" if o.lost_reason else ""),
                             "user_id": o.manager_id})
        orders = session.execute(select(CustomerOrder).where(CustomerOrder.customer_id == customer_id)
                                 .order_by(CustomerOrder.order_date.desc(), CustomerOrder.id.desc())
                                 .limit(TIMELINE_LIMIT)).scalars().all()
        for od in orders:
            at = dt.datetime.combine(od.order_date, dt.time(12), tzinfo=_tz()).astimezone(dt.UTC)
            timeline.append({"at": at, "kind": "订单", "icon": "fa-file-invoice", "title": od.order_no,
                             "text": f"¥{od.amount:,.2f}", "extra": od.status, "user_id": od.manager_id})
        for t in session.execute(select(CustomerTransfer).where(CustomerTransfer.customer_id == customer_id)
                                 .order_by(CustomerTransfer.transferred_at.desc()).limit(TIMELINE_LIMIT)).scalars():
            timeline.append({"at": t.transferred_at, "kind": "客户转移", "icon": "fa-right-left",
                             "title": "转移客户经理", "text": t.reason or "",
                             "extra": "", "user_id": t.operator_id,
                             "from_to": (t.old_manager_id, t.new_manager_id)})
        for a in session.execute(select(ChurnAlert).where(ChurnAlert.customer_id == customer_id)
                                 .order_by(ChurnAlert.detected_at.desc()).limit(TIMELINE_LIMIT)).scalars():
            timeline.append({"at": a.detected_at, "kind": "流失预警", "icon": "fa-triangle-exclamation",
                             "title": f"风险:{a.risk_level}", "text": a.analysis or "",
                             "extra": f"状态:{a.status}", "user_id": a.handled_by})

        user_ids = {e.get("user_id") for e in timeline} | {customer.manager_id}
        for e in timeline:
            user_ids.update(e.get("from_to", ()))
        people = names(session, [i for i in user_ids if i])
        for e in timeline:
            e["who"] = people.get(e.get("user_id") or 0, "")
            if "from_to" in e:
                old, new = e["from_to"]
                e["text"] = f"{people.get(old or 0, '—')} → {people.get(new or 0, '—')}。{e['text']}"
            e["at_local"] = format_local(e["at"])
        timeline.sort(key=lambda e: e["at"] or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)

        order_total = session.execute(
            select(func.count(), func.coalesce(func.sum(CustomerOrder.amount), 0))
            .where(CustomerOrder.customer_id == customer_id, CustomerOrder.status != "cancelled")
        ).one()
        open_opps = [o for o in opps if o.status == "open"]
        return {
            "customer": customer,
            "manager_name": people.get(customer.manager_id or 0, ""),
            "status_label": STATUS_LABELS.get(customer.status, customer.status),
            "industry_label": label("industry", customer.industry),
            "source_label": label("customer_source", customer.source),
            "level_label": label("customer_level", customer.level),
            "last_contact": format_local(customer.last_contact_at),
            "last_order": format_local(customer.last_order_at),
            "contacts": contacts,
            "opportunities": opps,
            "opp_status": OPP_STATUS,
            "stage_label": lambda v: label("opportunity_stage", v),
            "orders": orders,
            "order_count": int(order_total[0]),
            "order_sum": Decimal(str(order_total[1])).quantize(Decimal("0.01")),
            "open_opp_count": len(open_opps),
            "open_opp_sum": sum((o.amount for o in open_opps), Decimal("0.00")),
            "timeline": timeline,
            "methods": choices("follow_up_method", blank=False),
            "stages": choices("opportunity_stage", blank=False),
            "can": {
                "contact": principal.can("linkman", "create"),
                "follow_up": principal.can("follow_up", "create"),
                "opportunity": principal.can("opportunity", "create"),
                "edit": principal.can("customer", "edit"),
                "delete": principal.can("customer", "delete"),
                "transfer": principal.can("customer", "transfer"),
                "merge": principal.can("customer", "merge"),
            },
            "blockers": service.dependent_counts(session, customer_id),
        }


def _posted_id(value: str | None, message: str) -> int | None:
    """An optional id from the page's form: empty is none, anything else must be an id."""
    if not (value or "").strip():
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise UserError(message)
    return parsed


def run_action(principal: Principal, customer_id: int, what: str, values: dict[str, str]) -> str:
    """One action of the 360° page in one transaction; returns a message."""
    with transaction() as session:
        if what == "contact":
            from crm_admin.contacts.service import create_linkman

            create_linkman(
                session, principal, customer_id=customer_id, name=values.get("name", ""),
                gender=values.get("gender") or None, position=values.get("position") or None,
                mobile=values.get("mobile") or None, phone=values.get("phone") or None,
                email=values.get("email") or None,
                birthday=parse_date(values.get("birthday"), field="birthday"),
                is_primary=values.get("is_primary") in ("1", "on", "true"),
            )
            return ACTIONS[what][2]
        if what == "follow-up":
            from crm_admin.followups.service import log_follow_up

            log_follow_up(
                session, principal, customer_id=customer_id, method=values.get("method", ""),
                content=values.get("content", ""),
                contacted_at=parse_local_datetime(values.get("contacted_at"), field="contacted_at"),
                next_follow_up_at=parse_local_datetime(values.get("next_follow_up_at"), field="next_follow_up_at"),
                linkman_id=_posted_id(values.get("linkman_id"), "所选的联系人不存在,请重新选择。"),
            )
            return ACTIONS[what][2]
        if what == "opportunity":
            from crm_admin.opportunities.service import create_opportunity

            create_opportunity(
                session, principal, customer_id=customer_id, title=values.get("title", ""),
                stage=values.get("stage", ""), amount=values.get("amount") or "0",
                probability=values.get("probability") or 0,
                expected_close_date=parse_date(values.get("expected_close_date"), field="expected_close_date"),
                next_step=values.get("next_step") or None,
            )
            return ACTIONS[what][2]
        if what == "delete":
            customer = session.execute(
                scoped(select(Customer).where(Customer.id == customer_id), Customer, principal, "delete")
                .with_for_update()
            ).scalar_one_or_none()
            if customer is None:
                raise NotFound()
            if values.get("confirm_name", "").strip() != customer.name:
                raise UserError("请输入完整的客户名称以确认删除。")
            counts = service.delete_customer(session, customer, cascade=values.get("cascade") == "1")
            moved = "、".join(f"{n} {u}" for u, n in counts)
            return f"客户“{customer.name}”已删除" + (f",连同 {moved}。" if moved else "。")
        raise NotFound()


def user_label(user: SysUser | None) -> str:
    return str(user) if user else ""
