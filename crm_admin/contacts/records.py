"""Contacts as records of a customer: the 360° page's contact list and its quick-add form, and the
merge rule that keeps one primary contact per customer."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import create_linkman
from crm_admin.core import masking
from crm_admin.core.customer_records import (
    SIDE,
    Contribution,
    PageAction,
    RecordKind,
    Section,
    VisibleCustomer,
    _,
    move_rows,
    of_customer,
    register,
)
from crm_admin.core.params import read_date
from crm_admin.core.principal import Principal


def _page(session: Session, customer: VisibleCustomer, _limit: int) -> Contribution:
    contacts = session.execute(
        of_customer(select(Linkman), Linkman, customer).order_by(Linkman.is_primary.desc(), Linkman.id)
    ).scalars().all()
    masked = masking.masked_rows(session, customer.principal, Linkman, contacts)
    shown = [{"id": p.id, "name": p.name, "is_primary": p.is_primary, "position": p.position,
              "mobile": masked.shown(p, "mobile"), "phone": masked.shown(p, "phone"),
              "email": masked.shown(p, "email"), "birthday": p.birthday} for p in contacts]
    return Contribution(sections=[Section(SIDE, "contacts/360_contacts.html", {
        "contacts": shown, "can_add": customer.principal.can("linkman", "create"),
    })])


def _merge(session: Session, keep_id: int, drop_id: int) -> int:
    # one primary contact per customer: the kept customer's primary stays the only one
    kept_primary = session.execute(
        select(Linkman.id).where(Linkman.customer_id == keep_id, Linkman.is_primary.is_(True)).limit(1)
    ).first()
    if kept_primary is not None:
        session.execute(
            update(Linkman).where(Linkman.customer_id == drop_id, Linkman.is_primary.is_(True))
            .values(is_primary=False)
        )
    return move_rows(session, Linkman, keep_id, drop_id)


def _add_contact(session: Session, principal: Principal, customer_id: int, values: Mapping[str, str]) -> object:
    return create_linkman(
        session, principal, customer_id=customer_id, name=values.get("name", ""),
        gender=values.get("gender") or None, position=values.get("position") or None,
        mobile=values.get("mobile") or None, phone=values.get("phone") or None,
        email=values.get("email") or None, birthday=read_date(values.get("birthday"), field="birthday"),
        is_primary=values.get("is_primary") in ("1", "on", "true"),
    )


LINKMAN = register(RecordKind(
    key="linkman", model=Linkman, label=_("联系人"), unit=_("个联系人"), order=10,
    page=_page, merge=_merge,
    actions=(PageAction("contact", "linkman", "create", "联系人已添加。", _add_contact),),
))
