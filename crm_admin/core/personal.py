"""Showing one masked value in full (查看完整信息): for a holder of the permission to see personal data
who sees a row masked by a rule (a customer in a pool that masks, say). Each reveal is one value, within
the scope of that permission, and leaves an audit row naming the record and the field — never the value.

The routes are declared by the modules whose rows have personal data (customers, contacts); the work
is here, once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.core import audit, masking
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope, resource_of, scoped

REVEAL = "reveal"


def may_reveal(session: Session, principal: Principal, model: type, pk: int) -> bool:
    """Whether ``principal`` may show the masked values of row ``pk`` in full: they hold the permission
    and the row is within that permission's scope."""
    resource, action = masking.SENSITIVE_PERMISSION
    return masking.sees_sensitive(principal) and in_scope(session, model, pk, principal, action, resource=resource)


def reveal(session: Session, principal: Principal, model: type, pk: int, field: str, *, label: str = "") -> str:
    """The stored value of ``field`` of row ``pk`` of ``model``, audited (action ``reveal``) in the
    caller's transaction. A row outside the permission's scope is not found; a field that holds no
    personal data is refused."""
    spec = masking.personal_data(model)
    if spec is None or field not in spec.fields:
        raise UserError("该字段不是可查看的个人信息。")
    if not masking.sees_sensitive(principal):
        raise NotFound()
    resource, action = masking.SENSITIVE_PERMISSION
    row: Any = session.execute(
        scoped(select(model).where(model.id == pk), model, principal, action, resource=resource)  # type: ignore[attr-defined]
    ).scalar_one_or_none()
    if row is None:
        raise NotFound()
    value = getattr(row, field, None)
    audit.record(session, REVEAL, resource=resource_of(model), resource_id=pk, changes={"field": field},
                 detail=f"查看完整的{label or field}")
    return str(value or "")
