"""The work behind the customer module's own pages (the list's query panel and saved queries, the
merge page), run off the event loop by the handlers in admin.py (``core.pages.run_sync``); the 360°
page's work is in page360.py. Each function is one unit of work: it opens the session (and the
transaction, for writes), calls the services, and returns plain values for the template.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from crm_admin.core import masking
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.formatting import format_datetime
from crm_admin.core.i18n import Labels, gettext
from crm_admin.core.params import parse_id
from crm_admin.core.principal import Principal
from crm_admin.core.scope import depts_in_scope, users_in_scope
from crm_admin.customers import saved_queries, service
from crm_admin.customers.models import STATUS_LABELS, Customer
from crm_admin.customers.query import FILTER_PARAMS, CustomerQuery
from crm_admin.db import session_factory, transaction
from crm_admin.dictionary.service import choices, label

SORTS = Labels({"": "默认排序", "name:asc": "按名称", "created_at:desc": "按创建时间(新→旧)",
                "created_at:asc": "按创建时间(旧→新)", "last_contact_at:desc": "按最近联系(近→远)",
                "last_contact_at:asc": "按最近联系(远→近)"})


def _any_of(options: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A condition's drop-down: "全部" (no condition) first, like the manager and department ones —
    shorter than a form's "— 请选择 —", so it fits the panel's narrow cells."""
    return [("", gettext("全部")), *options]


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
        "cq_industries": _any_of(choices("industry", blank=False)),
        "cq_sources": _any_of(choices("customer_source", blank=False)),
        "cq_levels": _any_of(choices("customer_level", blank=False)),
        "cq_statuses": _any_of(STATUS_LABELS.choices()),
        "cq_managers": [(u.id, u.real_name or u.username) for u in users],
        "cq_depts": depts,
        "cq_saved": saved,
        "cq_sorts": SORTS.choices(),
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


# ----- merge: pick two customers, preview, confirm ----------------------------------------------

# The rows of the preview's side-by-side table: the kept customer's identity first, then the fields a
# merge may fill, then the times it may move forward.
_MERGE_ROWS = (("code", "客户编号"), ("name", "客户名称"), ("manager", "客户经理"), ("status", "状态"),
               *((key, service.FIELD_LABELS.get(key, "备注")) for key in service.MERGE_FILLED_FIELDS),
               ("last_contact_at", "最近联系"), ("last_order_at", "最近下单"), ("created_at", "创建时间"))


def _shown(customer: Customer, key: str, managers: dict[int, str]) -> str:
    value: Any = getattr(customer, f"{key}_id" if key == "manager" else key)
    if key == "manager":
        return managers.get(value, "") if value else ""
    return _shown_value(key, value)


def _shown_value(key: str, value: Any) -> str:
    if value in (None, ""):
        return ""
    if key == "status":
        return service.status_label(value)
    if key in service.DICT_FIELDS:
        return label(service.DICT_FIELDS[key], value)
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    return str(value)


def _customer_card(customer: Customer, managers: dict[int, str]) -> dict[str, Any]:
    return {"id": customer.id, "code": customer.code, "name": customer.name,
            "manager": managers.get(customer.manager_id or 0, ""), "version": customer.version}


def merge_picked(principal: Principal, keep: str, drop: str) -> dict[str, Any]:
    """The merge form's pickers filled with what the user chose (only customers they may merge)."""
    chosen: dict[str, Any] = {}
    with session_factory()() as session:
        for name, ref in (("keep", keep), ("drop", drop)):
            try:
                pk = service.merge_ref(session, principal, ref, missing="")
            except UserError:
                continue
            customer = session.get(Customer, pk)
            if customer is not None:
                chosen[name] = {"id": customer.id, "text": f"{customer.code} {customer.name}"}
    return chosen


def merge_lookup(principal: Principal, term: str) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return [{"id": str(i), "text": t} for i, t in service.merge_candidates(session, principal, term)]


def merge_preview(principal: Principal, keep: str, drop: str) -> dict[str, Any]:
    """What merging ``drop`` into ``keep`` (each an id or a code) would do; nothing is changed. Raises
    UserError (with the same message for a customer outside the scope as for one that does not exist)."""
    with session_factory()() as session:
        keep_id = service.merge_ref(session, principal, keep, missing=service.MERGE_KEEP_NOT_FOUND)
        drop_id = service.merge_ref(session, principal, drop, missing=service.MERGE_DROP_NOT_FOUND)
        plan = service.plan_merge(session, principal, keep_id=keep_id, drop_id=drop_id)
        managers = service.manager_names(session, [plan.keep.manager_id or 0, plan.drop.manager_id or 0])
        changed = {**plan.filled, **plan.later}
        # personal data as the user sees it elsewhere (masked when masked for either customer)
        masked = masking.masked_rows(session, principal, Customer, [plan.keep, plan.drop])
        fields = []
        for key, text in _MERGE_ROWS:
            kept = masked.shown(plan.keep, key, _shown(plan.keep, key, managers))
            dropped = masked.shown(plan.drop, key, _shown(plan.drop, key, managers))
            if key in changed:
                result = masked.shown(plan.drop, key, _shown_value(key, changed[key]))
            else:
                result = kept
            fields.append({"key": key, "label": text, "kept": kept, "dropped": dropped,
                           "result": result, "from_dropped": key in changed})
        state = plan.state
        return {
            "keep": _customer_card(plan.keep, managers),
            "drop": _customer_card(plan.drop, managers),
            "fields": fields,
            "records": [{"label": r.kind.label, "unit": r.kind.unit, "kept": r.kept, "moving": r.moving,
                         "after": r.kept + r.moving} for r in plan.records],
            "moving_total": plan.moving_total,
            "filled_count": len(changed),
            "hand_over": plan.keep.manager_id != plan.drop.manager_id,
            "state": {"keep_version": state.keep_version, "drop_version": state.drop_version,
                      "records": state.records},
        }


def merge_confirm(principal: Principal, form: Mapping[str, Any]) -> tuple[int, int]:
    """Merge as the confirmed preview showed it, re-checking everything: (kept id, records moved).
    ``StaleMerge`` when either customer or their records changed since the preview."""
    keep_id, drop_id = parse_id(form.get("keep")), parse_id(form.get("drop"))
    expected = service.MergeState.parse(form.get("keep_version"), form.get("drop_version"), form.get("records"))
    with transaction() as session:
        if keep_id is None:
            raise NotFound(service.MERGE_KEEP_NOT_FOUND)
        if drop_id is None:
            raise NotFound(service.MERGE_DROP_NOT_FOUND)
        if expected is None:  # a confirmation that did not come from a preview
            service.plan_merge(session, principal, keep_id=keep_id, drop_id=drop_id)
            raise service.StaleMerge()
        moved = service.merge_customers(session, principal, keep_id=keep_id, drop_id=drop_id, expected=expected)
    return keep_id, sum(v for k, v in moved.items() if not k.endswith("_handed_over"))
