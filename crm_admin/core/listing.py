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
- for records that carry a copy of the owner their scope goes through (a follow-up carries its
  customer's manager), finds a shallow page owner by owner — the first rows of each owner's
  ``(owner, sort column)`` index range, merged — and counts by those ranges, then reads the page's
  rows through the scope itself (``_per_owner_keys``); a team's list no longer sorts every record
  of every customer of the team;
- for records whose scope goes through other tables and that carry no copy of the owner (order lines:
  through their order's customer), sorted by the primary key, reads the table in key order and checks
  each row against the scope until the page is full (``_walked_keys``, MariaDB, bounded), instead of
  collecting every row of a team's scope and sorting them;
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

import anyio
from markupsafe import Markup, escape
from sqladmin.helpers import get_object_identifier
from sqladmin.pagination import Pagination
from sqlalchemy import Column, Select, UnaryExpression, func, select, union_all
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import operators
from starlette.exceptions import HTTPException
from starlette.requests import Request

from crm_admin.core import sqladmin_compat as compat
from crm_admin.core.export import list_statement
from crm_admin.core.formatting import html
from crm_admin.core.scope import owner_partition, scope_clause
from crm_admin.core.search import highlight

# The request state that makes a view's ``list_query`` limit rows by the owner each names
# (``core.scope.owner_scoped``) instead of the scope it goes through: set on a copy of the request,
# for the statements that find and count a page's rows, never for the one that reads them.
_BY_OWNER = "crm_list_by_owner"


def reads_by_owner(request: Request) -> bool:
    """Whether ``request`` is the list's look-up by owner (see ``_BY_OWNER``)."""
    return bool(request.scope.get("state", {}).get(_BY_OWNER))


def _by_owner(request: Request) -> Request:
    scope = dict(request.scope)
    scope["state"] = {**request.scope.get("state", {}), _BY_OWNER: True}
    return Request(scope, request.receive)


def _sort_keys(stmt: Select[Any]) -> list[tuple[Any, bool]] | None:
    """``stmt``'s ORDER BY as (column, descending) pairs, when it sorts by plain columns only."""
    keys = []
    for clause in stmt._order_by_clauses:  # SQLAlchemy offers no public reader
        descending = False
        if isinstance(clause, UnaryExpression) and clause.modifier in (operators.desc_op, operators.asc_op):
            descending = clause.modifier is operators.desc_op
            clause = clause.element
        if not isinstance(clause, Column):
            return None
        keys.append((clause, descending))
    return keys


def _with_tie_breaker(stmt: Select[Any], pk: Any, *, always: bool) -> Select[Any]:
    """Rows of equal sort value in the order of their id (in the direction of the last sort key), so
    that a page holds the same rows however the database reads them — unless (``always`` False) the
    sort is read from an index that orders equal values otherwise (``(order_date, status, amount)``):
    the id would make the database sort the whole table instead of reading the index's first entries."""
    keys = _sort_keys(stmt)
    if keys is None or any(column.name == pk.name and column.table is pk.table for column, _ in keys):
        return stmt
    names = [column.name for column, _ in keys]
    led = [[column.name for column in index.columns] for index in pk.table.indexes
           if [column.name for column in index.columns][:len(names)] == names]
    if not always and led and not any(columns in (names, [*names, pk.name]) for columns in led):
        return stmt
    descending = keys[-1][1] if keys else False
    return stmt.order_by(pk.desc() if descending else pk.asc())


def _indexed_per_owner(table: Any, owner: Any, sort: Any, pk: Any) -> bool:
    """An index of ``table`` holds each owner's rows in the order of ``sort`` (then of the id)."""
    want = [owner.name] if sort.name == pk.name else [owner.name, sort.name]
    for index in table.indexes:
        names = [column.name for column in index.columns]
        if names == want or names == [*want, pk.name]:
            return True
    return False


# Rows MariaDB counts as examined for each row a walk reads (the row, then its IN (subquery) look-ups
# through the order and the customer): measured ~3–4 for order lines.
_EXAMINED_PER_ROW = 4


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
    # A page of a scope of several owners, sorted by an indexed column, is found by reading the first
    # rows of each owner (one index range each) and merging them: up to this many owners, and for the
    # pages up to this many rows deep.
    per_owner_max_owners: ClassVar[int] = 64
    per_owner_max_rows: ClassVar[int] = 200
    # A limited scope reached through other tables, sorted by the primary key alone: find the page's
    # keys by reading the table in key order, each row checked against the scope, examining at most
    # this many rows (0: never). A view turns it on where its rows carry no copy of their owner.
    walk_max_examined: ClassVar[int] = 0

    async def list(self, request: Request) -> Pagination:
        view = cast(Any, self)
        page = view.validate_page_number(request.query_params.get("page"), 1)
        page_size = view.validate_page_number(request.query_params.get("pageSize"), view.page_size)
        page_size = min(page_size, max(view.page_size_options))
        if page_size < 1:
            raise HTTPException(status_code=400, detail="Invalid page or pageSize parameter")
        stmt = await self._filtered_query(request)
        pk_columns = list(view.pk_columns)
        partition = self._owner_partition(request)
        # a scope of owners' rows reached through another table is sorted by the database anyway
        # (when it is not read owner by owner): ordering equal values by id costs nothing there
        if len(pk_columns) == 1:
            stmt = _with_tie_breaker(stmt, pk_columns[0], always=partition is not None)
        # the same filters, search and sort, limited by the owner each row names: for counting and
        # finding rows (one index range per owner); the rows shown are read through ``stmt``
        by_owner = stmt
        if partition is not None:
            by_owner = await self._filtered_query(_by_owner(request))
            if len(pk_columns) == 1:
                by_owner = _with_tie_breaker(by_owner, pk_columns[0], always=True)

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
        keys = by_owner.with_only_columns(*pk_columns).order_by(None).limit(need)
        count = int(await view.count(request, select(func.count()).select_from(keys.subquery())))
        capped = count >= need
        if capped:
            count = need - 1
        page = min(max(page, 1), Pagination.max_page(count, page_size))
        offset = (page - 1) * page_size
        per_owner = self._per_owner_keys(request, by_owner, partition, offset, page_size)
        walked = None if per_owner is not None else await self._walked_keys(request, stmt, count, offset, page_size)
        if walked is not None:
            ids = walked
            rows = list(await compat.run_query(view, rows_stmt.where(pk_columns[0].in_(ids)))) if ids else []
            position = {key: n for n, key in enumerate(ids)}
            rows.sort(key=lambda row: position[getattr(row, pk_columns[0].key)])
        elif per_owner is not None:
            ids = list(await compat.run_query(view, per_owner))
            rows = list(await compat.run_query(view, rows_stmt.where(pk_columns[0].in_(ids)))) if ids else []
            position = {key: n for n, key in enumerate(ids)}
            rows.sort(key=lambda row: position[getattr(row, pk_columns[0].key)])
        elif offset >= self.deferred_join_offset and len(pk_columns) == 1:
            pk = pk_columns[0]
            ids = list(await compat.run_query(view, stmt.with_only_columns(pk).limit(page_size).offset(offset)))
            rows = list(await compat.run_query(view, rows_stmt.where(pk.in_(ids)))) if ids else []
        else:
            rows = list(await compat.run_query(view, rows_stmt.limit(page_size).offset(offset)))
        # SQLAdmin's list endpoint adds the page links
        return CappedPagination(rows=rows, page=page, page_size=page_size, count=count, count_capped=capped)

    def _owner_partition(self, request: Request) -> tuple[Any, frozenset[int]] | None:
        """The owner column and owners of the list's scope (``core.scope.owner_partition``) where rows
        carry a copy of the owner their scope goes through. Rows that name their owner themselves
        (customers) are found well by the scope itself: the database reads the sort column's index and
        keeps the owners' rows (merging per owner measured slower there, several times so with filters)."""
        principal = getattr(request.state, "principal", None)
        view = cast(Any, self)
        if principal is None or request.path_params.get("export_type") or getattr(view.model, "__scope__", "") == "owner":
            return None
        return owner_partition(view.model, principal, "list")  # the scope ``list_query`` applies

    def _per_owner_keys(self, request: Request, by_owner: Select[Any], partition: tuple[Any, frozenset[int]] | None,
                        offset: int, page_size: int) -> Select[Any] | None:
        """The keys of the page, found owner by owner: for each owner of the scope its first rows in
        the list's order (``offset + page_size`` of them, one index range), then the page of their
        union. None where that does not pay: no owners to go by, too many, a page too deep, a sort
        that no (owner, sort column) index serves, a search or a grouped statement."""
        if partition is None or request.query_params.get("search"):
            return None
        view = cast(Any, self)
        owner, owners = partition
        pk_columns = list(view.pk_columns)
        if (not owners or len(owners) > self.per_owner_max_owners or len(pk_columns) != 1
                or offset + page_size > self.per_owner_max_rows):
            return None
        if by_owner._distinct or by_owner._group_by_clauses or by_owner._having_criteria:  # as _sort_keys
            return None
        pk = pk_columns[0]
        table = view.model.__table__
        keys = _sort_keys(by_owner)
        if not keys or any(column.table is not table for column, _ in keys):
            return None
        (sort, descending), rest = keys[0], keys[1:]
        if rest and not (len(rest) == 1 and rest[0][0].name == pk.name and rest[0][1] == descending):
            return None
        if not _indexed_per_owner(table, owner, sort, pk):
            return None

        def order(column: Any) -> Any:
            return column.desc() if descending else column.asc()

        columns = [pk.label("k")] if sort.name == pk.name else [pk.label("k"), sort.label("s")]
        branches = []
        for owner_id in sorted(owners):
            first = (by_owner.with_only_columns(*columns).where(owner == owner_id).order_by(None)
                     .order_by(*(order(c) for c in ([pk] if sort.name == pk.name else [sort, pk])))
                     .limit(offset + page_size).subquery())
            branches.append(select(*first.c))
        merged = union_all(*branches).subquery()
        merged_order = [merged.c.k] if sort.name == pk.name else [merged.c.s, merged.c.k]
        return select(merged.c.k).order_by(*(order(c) for c in merged_order)).limit(page_size).offset(offset)

    async def _walked_keys(self, request: Request, stmt: Select[Any], count: int, offset: int,
                           page_size: int) -> builtins.list[Any] | None:
        """The keys of the page, found by reading the table in primary-key order and checking each row
        against the scope (``stmt`` itself: its scope, filters and sort) until the page is full. Without
        that, MariaDB collects every row of the scope first — all order lines of all customers of a
        team, ~94,000 for a team of 21 managers — and sorts them for a page of 20 (~220 ms; walking:
        ~2 ms). Walking suits a scope that covers a fair share of the table; a sparse one would read
        much of it, so it is not tried when the count says the page lies further than
        ``walk_max_examined`` rows, and it stops there anyway; the list is then read as before (None). None too where it does not apply: turned off, not MariaDB, an unlimited scope,
        a search, a sort by anything but the primary key, a page deeper than ``per_owner_max_rows``."""
        view = cast(Any, self)
        principal = getattr(request.state, "principal", None)
        pk_columns = list(view.pk_columns)
        expected = min(page_size, count - offset)
        if (not self.walk_max_examined or principal is None or len(pk_columns) != 1 or expected <= 0
                or offset + page_size > self.per_owner_max_rows or request.query_params.get("search")
                or request.path_params.get("export_type")):
            return None
        if stmt._distinct or stmt._group_by_clauses or stmt._having_criteria:  # as _sort_keys
            return None
        pk = pk_columns[0]
        keys = _sort_keys(stmt)
        if not keys or any(column.name != pk.name or column.table is not pk.table for column, _ in keys):
            return None
        if scope_clause(view.model, principal, "list") is None:
            return None  # every row is in scope: the database reads the first keys of the table anyway
        keys_stmt = (stmt.with_only_columns(pk).limit(page_size).offset(offset)
                     .suffix_with(f"ROWS EXAMINED {int(self.walk_max_examined)}", dialect="mysql"))

        def walk() -> builtins.list[Any] | None:
            with view.session_maker() as session:
                conn = session.connection()
                if not getattr(conn.dialect, "is_mariadb", False):
                    return None
                # the scope's share of the table (its count over the highest key) says how far the walk
                # goes for this page: a sparse scope would hit the bound, so it is not tried at all
                highest = int(session.execute(select(func.max(pk))).scalar() or 0)
                if _EXAMINED_PER_ROW * (offset + page_size) * highest > self.walk_max_examined * count:
                    return None
                compiled = keys_stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
                # check each row's IN (subquery) as it is read, in key order, rather than joining the
                # subquery's rows first (semi-join, materialization) and sorting the result
                sql = f"SET STATEMENT optimizer_switch='semijoin=off,materialization=off' FOR {compiled}"
                return [row[0] for row in conn.exec_driver_sql(sql, compiled.params)]

        ids = await anyio.to_thread.run_sync(walk)
        if ids is None or len(ids) < expected:  # stopped before the page was full: read as before
            return None
        return ids

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
        # personal data the user may not see in full: one question for the page (core/masking.py)
        masked = await view.masked_page(request, rows) if hasattr(view, "masked_page") else None
        out = []
        for row in rows:
            pk = get_object_identifier(row)
            cells: builtins.list[Markup] = []
            for name in compat.list_prop_names(view):
                value, formatted = await view.get_list_value(row, name, request)
                if masked and masked.masks(row, name):
                    formatted = masked.shown(row, name, value)
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
                label = html("({})", text) if compact else escape(text)
                if as_link:
                    label = html('<a href="{}">{}</a>', compat.build_url_for(view, "admin:details", request, elem), label)
                parts.append(label if compact else label + Markup("<br />"))
            return Markup("").join(parts)
        if as_link:
            return html('<a href="{}">{}</a>', compat.url_for_details_with_prop(view, request, row, name), formatted)
        return escape(formatted)
