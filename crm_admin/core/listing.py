"""List pages that stay fast on large tables: capped counting, deferred joins for deep pages, cheap URLs.

SQLAdmin 0.32's ``ModelView.list`` counts the whole filtered query on every page (``SELECT count(*)``
over 200,000 customers costs ~100 ms on MariaDB, every time), pages with ``LIMIT/OFFSET`` over full
rows (page 5,000 makes the server read and throw away 100,000 full rows), and builds three URLs per
row through Starlette's route search. ``CappedListMixin`` replaces ``list`` with the same steps
(``list_query``, side-bar filters, sort, search — all hooks still apply, the scope included) and:

- counts at most ``count_cap`` rows (or as many as the requested page needs): the page shows
  "10,000+" instead of an exact number nobody reads;
- for deep pages first reads only the primary keys of the page (an index-only scan), then loads
  those rows (a "deferred join");
- builds row URLs from one template per request (``CachedRowUrlsMixin``);
- prepares the table's rows in Python (``list_rows``): the list template then only loops over plain
  values, instead of making ~20 awaited calls per row in Jinja's async mode (half of the page's CPU).

It mirrors SQLAdmin 0.32's ``ModelView.list``; what it needs of SQLAdmin's insides it asks
``core.sqladmin_compat``, which checks the version.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from markupsafe import Markup, escape
from sqladmin.helpers import get_object_identifier
from sqladmin.pagination import Pagination
from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload
from starlette.exceptions import HTTPException
from starlette.requests import Request

from crm_admin.core import sqladmin_compat as compat
from crm_admin.core.export import list_statement
from crm_admin.core.search import highlight


@dataclass
class CappedPagination(Pagination):
    """A page whose ``count`` may be a lower bound (``count_capped``)."""

    count_capped: bool = False

    @property
    def count_display(self) -> str:
        """The total for the page footer: "10,000+" when the count stopped at the cap."""
        return f"{self.count:,}+" if self.count_capped else f"{self.count:,}"


class CappedListMixin(compat.CachedRowUrlsMixin):
    """Mixed into ``CrmModelView`` before SQLAdmin's ``ModelView``."""

    # Count no further than this (plus what the requested page needs).
    count_cap: ClassVar[int] = 10_000
    # From this offset on, read the page's primary keys first and then the rows.
    deferred_join_offset: ClassVar[int] = 200

    async def list(self, request: Request) -> Pagination:
        view = cast(Any, self)
        page = view.validate_page_number(request.query_params.get("page"), 1)
        page_size = view.validate_page_number(request.query_params.get("pageSize"), view.page_size)
        page_size = min(page_size, max(view.page_size_options))
        if page_size < 1:
            raise HTTPException(status_code=400, detail="Invalid page or pageSize parameter")
        stmt = await self._filtered_query(request)

        pk_columns = list(view.pk_columns)
        rows_stmt = stmt
        for relation in compat.list_relations(view):
            rows_stmt = rows_stmt.options(selectinload(relation))
        page = max(page, 1)
        offset = (page - 1) * page_size
        deferred = offset >= self.deferred_join_offset and len(pk_columns) == 1

        need = self.count_cap + 1
        if deferred and offset + page_size > self.count_cap:
            # Past the cap nobody needs the total: the keys of this page (and one more, to know
            # whether a next page exists) say all the footer shows. One index-only scan.
            pk = pk_columns[0]
            ids = list(await compat.run_query(view, stmt.with_only_columns(pk).limit(page_size + 1).offset(offset)))
            if ids:
                more = len(ids) > page_size
                ids = ids[:page_size]
                rows = list(await compat.run_query(view, rows_stmt.where(pk.in_(ids))))
                return CappedPagination(rows=rows, page=page, page_size=page_size,
                                        count=offset + len(ids) + (1 if more else 0), count_capped=more)
            need = offset + 1  # past the last row: the exact total (below offset) finds the last page

        # Count no further than the cap: the footer says "10,000+" past it.
        keys = stmt.with_only_columns(*pk_columns).order_by(None).limit(need)
        count = int(await view.count(request, select(func.count()).select_from(keys.subquery())))
        capped = count >= need
        if capped:
            count = need - 1
        page = min(max(page, 1), Pagination.max_page(count, page_size))
        offset = (page - 1) * page_size
        if offset >= self.deferred_join_offset and len(pk_columns) == 1:
            pk = pk_columns[0]
            ids = list(await compat.run_query(view, stmt.with_only_columns(pk).limit(page_size).offset(offset)))
            rows = list(await compat.run_query(view, rows_stmt.where(pk.in_(ids)))) if ids else []
        else:
            rows = list(await compat.run_query(view, rows_stmt.limit(page_size).offset(offset)))
        # SQLAdmin's list endpoint adds the page links
        return CappedPagination(rows=rows, page=page, page_size=page_size, count=count, count_capped=capped)

    async def _filtered_query(self, request: Request) -> Select[Any]:
        """The list's statement with the request's filters, sort and search (as SQLAdmin builds it)."""
        return await list_statement(cast(Any, self), request)

    async def list_rows(self, request: Request, rows: Sequence[Any]) -> Sequence[dict[str, Any]]:
        """What the list table shows for each row: identifier, action links and the cells' HTML
        (the same choices as SQLAdmin's list.html makes cell by cell)."""
        view = cast(Any, self)
        query = f"?{request.url.query}" if request.url.query else ""
        term = request.query_params.get("search") or request.query_params.get("q") or ""
        marked = view.highlight_columns() if term and hasattr(view, "highlight_columns") else frozenset()
        out = []
        for row in rows:
            pk = get_object_identifier(row)
            cells: builtins.list[Markup] = []
            for name in compat.list_prop_names(view):
                value, formatted = await view.get_list_value(row, name, request)
                if name in marked and not isinstance(formatted, Markup):
                    cells.append(highlight(formatted, term))  # the part the search matched, marked
                else:
                    cells.append(self._cell(request, row, name, value, formatted))
            out.append({
                "pk": pk,
                "view_url": str(compat.build_url_for(view, "admin:details", request, row))
                if await view.check_can_view_details(request, row) else "",
                # SQLAdmin's edit form returns to the list it was opened from; an own form does not
                "edit_url": f"{view.edit_url(request, row)}{'' if view.own_form_routes else query}"
                if await view.check_can_edit(request, row) else "",
                "delete_url": compat.url_for_delete(view, request, row) if await view.check_can_delete(request, row) else "",
                "cells": cells,
            })
        return out

    def _cell(self, request: Request, row: Any, name: str, value: Any, formatted: Any) -> Markup:
        view = cast(Any, self)
        if name not in compat.relation_names(view):
            return escape(formatted)
        as_link = name not in compat.non_link_related_fields(view)
        if isinstance(value, (list, set)):
            compact = view.show_compact_lists
            parts = []
            for elem, text in zip(value, formatted, strict=False):
                label = Markup("({})").format(text) if compact else escape(text)
                if as_link:
                    label = Markup('<a href="{}">{}</a>').format(
                        compat.build_url_for(view, "admin:details", request, elem), label)
                parts.append(label if compact else label + Markup("<br />"))
            return Markup("").join(parts)
        if as_link:
            return Markup('<a href="{}">{}</a>').format(compat.url_for_details_with_prop(view, request, row, name), formatted)
        return escape(formatted)
