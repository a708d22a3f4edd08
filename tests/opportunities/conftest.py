from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.opportunities.service import create_opportunity, move_stage
from tests.customers.conftest import make_customer, principal  # noqa: F401


def opportunity_through(s: Session, owner: Any, customer_id: int, title: str, *stages: str) -> SalesOpportunity:
    """A new opportunity of ``customer_id`` by ``owner`` (a principal), at the first stage and moved through
    ``stages`` in turn."""
    opp = create_opportunity(s, owner, customer_id=customer_id, title=title, stage="initial")
    for stage in stages:
        move_stage(s, owner, opportunity_id=opp.id, stage=stage)
    return opp
