"""A user's saved customer queries ("我的查询"): named sets of the list's conditions.

Services: they take a session and never commit (the page's transaction does).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from crm_admin.core.errors import NotFound, UserError
from crm_admin.customers.models import SavedQuery
from crm_admin.customers.query import FILTER_PARAMS

RESOURCE = "customer"
MAX_PER_USER = 50
MAX_NAME = 64
KEPT_PARAMS = (*FILTER_PARAMS, "sortBy", "sort", "search")


def kept_conditions(query_string: str) -> str:
    """The list's conditions of an encoded query (filters, sort, search), without paging or messages."""
    return urlencode([(k, v) for k, v in QueryParams(query_string).multi_items() if k in KEPT_PARAMS and v])


def saved_queries(session: Session, user_id: int) -> Sequence[SavedQuery]:
    return session.execute(
        select(SavedQuery).where(SavedQuery.user_id == user_id, SavedQuery.resource == RESOURCE)
        .order_by(SavedQuery.name)
    ).scalars().all()


def save_query(session: Session, *, user_id: int, name: str, query: str) -> None:
    """Save (or overwrite, by name) the user's query; at most ``MAX_PER_USER`` per user."""
    if not name:
        raise UserError("请为查询起一个名字。")
    if len(name) > MAX_NAME:
        raise UserError("查询名称不能超过 64 个字符。")
    existing = session.execute(
        select(SavedQuery).where(SavedQuery.user_id == user_id, SavedQuery.resource == RESOURCE,
                                 SavedQuery.name == name)
    ).scalar_one_or_none()
    if existing is not None:
        existing.query_string = query
        return
    count = len(session.execute(select(SavedQuery.id).where(SavedQuery.user_id == user_id)).all())
    if count >= MAX_PER_USER:
        raise UserError("每人最多保存 50 个查询,请先删除不用的查询。")
    session.add(SavedQuery(user_id=user_id, resource=RESOURCE, name=name, query_string=query))


def delete_query(session: Session, *, user_id: int, query_id: int) -> None:
    """Delete one of the user's own queries; another user's (or none) is ``NotFound``."""
    row = session.execute(
        select(SavedQuery).where(SavedQuery.id == query_id, SavedQuery.user_id == user_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound()
    session.delete(row)
