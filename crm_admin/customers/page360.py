"""The 360° customer page: the profile, then whatever the modules register as hanging off a customer
(``core.customer_records``: contacts, follow-ups, opportunities, orders … with their sections, figures,
timeline entries and quick actions), and the customer's delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.core import customer_records, masking, personal
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped
from crm_admin.customers import service
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import label

TIMELINE_LIMIT = 50  # entries per kind of record
PERSONAL_FIELDS = ("address", "phone", "email")  # the profile's personal data (shown masked when masked)

# the customer's own action; every other one is registered by the module it belongs to
DELETE = ("customer", "delete", "客户已删除。")


class _Actions(Mapping[str, tuple[str, str, str]]):
    """slug → (resource, permission, message when done) of every form the 360° page posts."""

    def _all(self) -> dict[str, tuple[str, str, str]]:
        found = {slug: (a.resource, a.permission, a.done) for slug, (_k, a) in customer_records.page_actions().items()}
        return {**found, "delete": DELETE}

    def __getitem__(self, slug: str) -> tuple[str, str, str]:
        return self._all()[slug]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


ACTIONS: Mapping[str, tuple[str, str, str]] = _Actions()


def load_360(principal: Principal, customer_id: int) -> dict[str, Any] | None:
    """Everything the 360° page shows: the profile, then what each registered kind of record adds
    (sections, figures, timeline entries), merged into one timeline, newest first."""
    with session_factory()() as session:
        customer = session.execute(
            scoped(select(Customer).where(Customer.id == customer_id), Customer, principal)
        ).scalar_one_or_none()
        if customer is None:
            return None
        seen = customer_records.VisibleCustomer(customer.id, principal)  # loaded through the scope above
        sections: dict[str, list[customer_records.Section]] = {slot: [] for slot in customer_records.SLOTS}
        facts: list[customer_records.Fact] = []
        entries: list[customer_records.TimelineEntry] = []
        for kind in customer_records.kinds():
            if kind.page is None:
                continue
            part = kind.page(session, seen, TIMELINE_LIMIT)
            for section in part.sections:
                sections[section.slot].append(section)
            facts += part.facts
            entries += part.timeline
        user_ids = {customer.manager_id} | {e.user_id for e in entries}
        for e in entries:
            user_ids.update(e.handed or ())
        people = service.manager_names(session, [i for i in user_ids if i])
        # the profile's personal data as this user may see it, and which masked values they may show
        masked = masking.masked_rows(session, principal, Customer, [customer])
        shown = {name: masked.shown(customer, name) for name in PERSONAL_FIELDS}
        revealable = [name for name in PERSONAL_FIELDS if masked.masks(customer, name) and getattr(customer, name)]
        if revealable and not personal.may_reveal(session, principal, Customer, customer.id):
            revealable = []
        return {
            "customer": customer,
            "personal": shown,
            "revealable": revealable,
            "manager_name": people.get(customer.manager_id or 0, ""),
            "status_label": STATUS_LABELS.get(customer.status, customer.status),
            "industry_label": label("industry", customer.industry),
            "source_label": label("customer_source", customer.source),
            "level_label": label("customer_level", customer.level),
            "last_contact": format_datetime(customer.last_contact_at),
            "last_order": format_datetime(customer.last_order_at),
            "sections": sections,
            "facts": facts,
            "timeline": _timeline(entries, people),
            "can": {
                "edit": principal.can("customer", "edit"),
                "delete": principal.can("customer", "delete"),
                "transfer": principal.can("customer", "transfer"),
                "merge": principal.can("customer", "merge"),
            },
            "blockers": service.dependent_counts(session, customer_id),
        }


def _timeline(entries: list[customer_records.TimelineEntry], people: dict[int, str]) -> list[dict[str, Any]]:
    """The entries as the page shows them: names instead of user ids, local times, newest first."""
    lines = []
    for e in sorted(entries, key=lambda e: e.at or _EARLIEST, reverse=True):
        text = e.text
        if e.handed is not None:
            old, new = e.handed
            text = f"{people.get(old or 0, '—')} → {people.get(new or 0, '—')}。{text}"
        lines.append({"at": e.at, "kind": e.kind, "icon": e.icon, "title": e.title, "text": text,
                      "extra": e.extra, "who": people.get(e.user_id or 0, ""), "at_local": format_datetime(e.at)})
    return lines


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def run_action(principal: Principal, customer_id: int, what: str, values: dict[str, str]) -> str:
    """One action of the 360° page in one transaction; returns a message."""
    with transaction() as session:
        if what == "delete":
            return _delete(session, principal, customer_id, values)
        registered = customer_records.page_actions().get(what)
        if registered is None:
            raise NotFound()
        _kind, action = registered
        action.run(session, principal, customer_id, values)
        return action.done


def _delete(session: Session, principal: Principal, customer_id: int, values: dict[str, str]) -> str:
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
