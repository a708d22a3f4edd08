"""Shared pieces of the reclaim tests: a fixed clock, rules, and customers with known clocks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.reclaim import service
from crm_admin.reclaim.models import ReclaimRule
from tests.care import factories as f

NOW = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai
TODAY = dt.date(2026, 11, 20)
LONG_AGO = NOW - dt.timedelta(days=400)


def days_ago(n: float) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


def rule(pool_id: int, *, name: str = "", active: bool = True, **kw: Any) -> ReclaimRule:
    kw.setdefault("days_without_follow_up", 30)
    kw.setdefault("warn_days", 5)
    kw.setdefault("protect_pending_care", True)
    kw.setdefault("priority", 100)
    return f.add(ReclaimRule(name=name or f"规则{pool_id}-{kw['priority']}-{kw['days_without_follow_up']}",
                             pool_id=pool_id, is_active=active, **kw))


def customer(manager_id: int | None, *, contact: float | None = None, order: float | None = None,
             created: float = 400, base: dt.datetime = NOW, **kw: Any) -> Any:
    """A customer whose last follow-up / order were ``contact`` / ``order`` days before ``base``."""
    def ago(n: float) -> dt.datetime:
        return base - dt.timedelta(days=n)

    return f.customer(manager_id, created_at=ago(created), last_contact_at=ago(contact) if contact is not None else None,
                      last_order_at=ago(order) if order is not None else None, **kw)


def due_ids(rules: list[ReclaimRule] | None = None, at: dt.datetime = NOW) -> dict[int, str]:
    with db.session_factory()() as s:
        chosen = rules if rules is not None else service.enabled_rules(s)
        return {cid: why for r in service.evaluate(s, chosen, at) for cid, why in r.due.items()}


def run(day: dt.date = TODAY, now: dt.datetime = NOW, **kw: Any) -> service.RunReport:
    with acting_as(SYSTEM), db.transaction() as s:
        return service.run_daily(s, day, now, **kw)


def count(model: type, *where: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())
