"""Data scope as SQL: the one place that turns a principal into a WHERE clause for a model.

Every read or write path (admin views, custom pages, exports, look-ups, jobs acting for a user) builds
its statement through ``scoped`` so that rows outside the user's scope never come back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, false, select, true

from crm_admin.core.principal import Principal


def owner_clause(column: Any, principal: Principal) -> ColumnElement[bool]:
    ids = principal.visible_user_ids
    if ids is None:
        return true()
    if not ids:
        return false()
    if len(ids) == 1:
        return column == next(iter(ids))
    return column.in_(sorted(ids))


def customer_ids_visible(principal: Principal) -> Select[Any]:
    from crm_admin.customers.models import Customer

    return select(Customer.id).where(owner_clause(Customer.manager_id, principal))


def scope_clause(model: type, principal: Principal) -> ColumnElement[bool] | None:
    """The condition a row of ``model`` must meet to be within ``principal``'s data scope."""
    kind = getattr(model, "__scope__", "")
    if not kind or principal.visible_user_ids is None:
        return None
    if kind == "owner":
        return owner_clause(model.manager_id, principal)  # type: ignore[attr-defined]
    if kind == "customer":
        return model.customer_id.in_(customer_ids_visible(principal))  # type: ignore[attr-defined]
    if kind == "order":
        from crm_admin.orders.models import CustomerOrder

        orders = select(CustomerOrder.id).where(
            CustomerOrder.customer_id.in_(customer_ids_visible(principal))
        )
        return model.order_id.in_(orders)  # type: ignore[attr-defined]
    raise ValueError(f"unknown scope kind {kind!r} on {model.__name__}")


def scoped[S: Select[*tuple[Any, ...]]](stmt: S, model: type, principal: Principal) -> S:
    clause = scope_clause(model, principal)
    return stmt if clause is None else stmt.where(clause)


def in_scope(conn_or_session: Any, model: type, pk: Any, principal: Principal) -> bool:
    """Whether the row ``pk`` of ``model`` exists and is within scope (for submitted foreign keys)."""
    if pk in (None, ""):
        return True
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return False
    stmt = scoped(select(model.id).where(model.id == pk), model, principal)  # type: ignore[attr-defined]
    return conn_or_session.execute(stmt).first() is not None
