"""The owner's warning on the home dashboard: "即将被回收的客户" with the days left."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.core.principal import Principal
from crm_admin.core.scope import sees_everyone
from crm_admin.dashboard.blocks import Block, register
from crm_admin.reclaim import service


def _fill(session: Session, principal: Principal) -> Mapping[str, Any] | None:
    # the owners' warning: a manager's own customers, a lead's team; whoever sees the whole company
    # opens the full list (reclaim/upcoming) rather than evaluating every rule on each landing
    if not principal.can("customer", "list") or sees_everyone(principal, "customer", "list"):
        return None
    if not service.enabled_rules(session):
        return None
    mine = principal.scope_for("customer", "list") == "self"
    total, rows = service.upcoming(session, principal, limit=10, mine_only=mine)
    if not total and not mine:
        return None
    return {"total": total, "rows": [vars(r) for r in rows]}


register(Block(key="reclaim_upcoming", template="reclaim/dashboard_block.html", fill=_fill, order=50))
