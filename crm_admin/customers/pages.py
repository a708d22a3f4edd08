"""The work behind the customer module's own pages (the list's query panel and saved queries, the
merge page), run off the event loop by the handlers in admin.py (``core.pages.run_sync``); the 360°
page's work is in page360.py. Each function is one unit of work: it opens the session (and the
transaction, for writes), calls the services, and returns plain values for the template.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from crm_admin.core.principal import Principal
from crm_admin.core.scope import depts_in_scope, users_in_scope
from crm_admin.customers import saved_queries, service
from crm_admin.customers.models import STATUS_LABELS
from crm_admin.customers.query import FILTER_PARAMS, CustomerQuery
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import choices

STATUS_CHOICES = [(k, v) for k, v in STATUS_LABELS.items()]
SORTS = [("", "默认排序"), ("name:asc", "按名称"), ("created_at:desc", "按创建时间(新→旧)"),
         ("created_at:asc", "按创建时间(旧→新)"), ("last_contact_at:desc", "按最近联系(近→远)"),
         ("last_contact_at:asc", "按最近联系(远→近)")]


def filter_panel(principal: Principal, params: QueryParams) -> dict[str, Any]:
    """Options of the list's query panel: dictionaries, the managers and departments the user may
    pick, their saved queries, the current conditions."""
    query = CustomerQuery.from_params(params)
    with session_factory()() as session:
        users = users_in_scope(session, principal, resource="customer", action="list")
        depts = depts_in_scope(session, principal, resource="customer", action="list")
        saved = [(s.id, s.name, s.query_string) for s in saved_queries.saved_queries(session, principal.id)]
    current_sort = ""
    if params.get("sortBy"):
        current_sort = f"{params.get('sortBy')}:{params.get('sort', 'asc')}"
    return {
        "cq": query,
        "cq_params": {k: params.get(k, "") for k in FILTER_PARAMS},
        "cq_industries": choices("industry"),
        "cq_sources": choices("customer_source"),
        "cq_levels": choices("customer_level"),
        "cq_statuses": [("", "— 请选择 —"), *STATUS_CHOICES],
        "cq_managers": [(u.id, u.real_name or u.username) for u in users],
        "cq_depts": depts,
        "cq_saved": saved,
        "cq_sorts": SORTS,
        "cq_sort": current_sort,
        "cq_query_string": urlencode([(k, v) for k, v in params.multi_items()
                                      if k not in ("page", "error", "message")]),
        "message": params.get("message", ""),
        "can_merge": principal.can("customer", "merge"),
        "cq_can_import": principal.can("customer", "import"),
    }


def save_query(principal: Principal, name: str, query: str) -> None:
    with transaction() as session:
        saved_queries.save_query(session, user_id=principal.id, name=name, query=query)


def delete_query(principal: Principal, query_id: int) -> None:
    with transaction() as session:
        saved_queries.delete_query(session, user_id=principal.id, query_id=query_id)


def merge(principal: Principal, keep: str, drop: str) -> tuple[int, int]:
    """Merge the customer typed as ``drop`` (id or code) into ``keep``: (kept id, records moved)."""
    with transaction() as session:
        keep_id = service.customer_id_by_ref(session, keep)
        drop_id = service.customer_id_by_ref(session, drop)
        moved = service.merge_customers(session, principal, keep_id=keep_id, drop_id=drop_id)
    return keep_id, sum(moved.values())
