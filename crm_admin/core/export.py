"""Export of any list: what the user sees (filters, search, sort, scope), streamed, safe in Excel.

SQLAdmin's own export applies only ``list_query``, loads every row into memory and writes CSV without
a BOM. Here the statement is built exactly as the list page builds it (the view's scoped
``list_query`` plus the request's filters, search and sort), rows are read in batches from a
server-side cursor and written as they arrive:

- CSV: UTF-8 with a BOM so that Chinese Excel opens it correctly, chunk by chunk.
- XLSX: written while it is sent (``core.xlsxstream``): the zip grows row by row, so the download
  starts at once and memory stays flat.

Text cells that a spreadsheet would treat as a formula (``= + - @``, tab, CR) are prefixed with ``'``.
Every export is a permission (``export`` on the view's resource, checked by SQLAdmin's route through
the gate) and is written to the audit log with its conditions.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from sqladmin.filters import OperationColumnFilter
from sqlalchemy import Select, inspect
from sqlalchemy.orm import aliased, joinedload, selectinload
from starlette.requests import Request
from starlette.responses import StreamingResponse

from crm_admin.core import audit, masking, sqladmin_compat, vocabulary
from crm_admin.core.context import current_actor
from crm_admin.core.formatting import DATETIME_FORMAT, format_datetime, local_now
from crm_admin.core.xlsxstream import xlsx_stream
from crm_admin.db import session_factory

EXPORT_TYPES = ("xlsx", "csv")
BATCH = 1000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_UNSET = object()


def neutralize(text: str) -> str:
    """Make a text cell inert in Excel/WPS: a leading formula character gets a ``'`` in front."""
    if text and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def format_local(value: dt.datetime | None, fmt: str = DATETIME_FORMAT) -> str:
    """A stored UTC datetime as the user reads it (the company's time zone)."""
    return format_datetime(value, fmt=fmt)


# ----- what the list page shows --------------------------------------------------------------

def list_query_string(view: Any, request: Request) -> str:
    """The list page's query string: the export URL's own, else the list page it was clicked on."""
    if request.url.query:
        return request.url.query
    referer = request.headers.get("referer", "")
    if referer:
        parts = urlsplit(referer)
        if parts.path.rstrip("/").endswith(f"/{view.identity}/list"):
            return parts.query
    return ""


def list_request(view: Any, request: Request) -> Request:
    """A request that carries the list page's query parameters (and the same user and state)."""
    query = list_query_string(view, request)
    if query == request.url.query:
        return request
    scope = dict(request.scope)
    scope["query_string"] = query.encode("latin-1", "ignore")
    return Request(scope, request.receive)


async def list_statement(view: Any, request: Request) -> Select[Any]:
    """The list page's statement without paging: scope, column filters, sort and search (the list page
    builds its statement here too). A view's statement may consult the database (the search index's
    plan, a department's tree), so those steps run off the event loop."""
    stmt: Select[Any] = await anyio.to_thread.run_sync(view.list_query, request)
    for filter_ in view.get_filters():
        name = filter_.parameter_name
        value = request.query_params.get(name)
        default = getattr(filter_, "default_value", _UNSET)
        if not value and default is _UNSET:
            continue
        if getattr(filter_, "has_operator", False):
            op = request.query_params.get(f"{name}_op")
            if op:
                assert isinstance(filter_, OperationColumnFilter)
                stmt = await filter_.get_filtered_query(stmt, op, value, view.model)
        else:
            stmt = await filter_.get_filtered_query(stmt, value, view.model)
    stmt = view.sort_query(stmt, request)
    search = request.query_params.get("search")
    if search:
        stmt = await anyio.to_thread.run_sync(lambda: view.search_query(stmt=stmt, term=search))
    return stmt


# ----- columns and cells ---------------------------------------------------------------------

def export_columns(view: Any) -> list[tuple[str, str]]:
    """(attribute, Chinese header) pairs: ``column_export_list`` or the list columns."""
    labels: dict[str, str] = {str(k): str(v) for k, v in sqladmin_compat.column_labels(view).items()}
    out = []
    for prop in view.get_export_columns():
        out.append((prop, labels.get(prop, prop)))
    return out


def _relations(view: Any, props: list[str]) -> list[Any]:
    mapper: Any = inspect(view.model)
    rels = []
    for prop in props:
        head = prop.split(".", 1)[0]
        if head in mapper.relationships:
            rels.append(getattr(view.model, head))
    return rels


def raw_value(obj: Any, prop: str) -> Any:
    for part in prop.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def cell_value(view: Any, obj: Any, prop: str) -> Any:
    """A cell as the user reads it: labels instead of codes, local times, 是/否."""
    formatter: Callable[[Any], Any] | None = (getattr(view, "export_formatters", None) or {}).get(prop)
    if formatter is not None:
        return formatter(obj)
    value = raw_value(obj, prop)
    dict_type = (getattr(view, "column_dict_types", None) or {}).get(prop)
    if dict_type and value not in (None, ""):
        return vocabulary.label(dict_type, value)
    choice_labels = (getattr(view, "column_choice_labels", None) or {}).get(prop)
    if choice_labels and value is not None:
        return choice_labels.get(value, value)
    return plain(value)


def plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dt.datetime):
        return format_local(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | int | float):
        return value
    if isinstance(value, list | tuple | set):
        return "、".join(str(v) for v in value)
    return str(value)


def safe(value: Any) -> Any:
    return neutralize(value) if isinstance(value, str) else value


# ----- writers ---------------------------------------------------------------------------------

def iter_rows(stmt: Select[Any], row: Callable[[Any], list[Any]]) -> Iterator[list[Any]]:
    """Rows in batches from a server-side cursor: memory stays flat whatever the row count."""
    with session_factory()() as session:
        result = session.execute(stmt.execution_options(yield_per=BATCH))
        # the identity map holds rows weakly: a finished batch is garbage once written
        for obj in result.scalars():
            yield row(obj)


def csv_chunks(headers: list[str], rows: Iterator[list[Any]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    buf.write("\ufeff")
    writer.writerow([safe(h) for h in headers])
    for n, values in enumerate(rows, 1):
        writer.writerow([safe(v) for v in values])
        if n % 500 == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _sheet_title(title: str) -> str:
    bad = set('[]:*?/\\')
    cleaned = "".join(ch for ch in title if ch not in bad).strip() or "Sheet1"
    return cleaned[:31]


def xlsx_chunks(title: str, headers: list[str], rows: Iterator[list[Any]]) -> Iterator[bytes]:
    return xlsx_stream(_sheet_title(title), [safe(h) for h in headers], ([safe(v) for v in values] for values in rows))


def attachment(filename: str) -> str:
    """A Content-Disposition that keeps a Chinese file name in every browser."""
    ascii_name = filename.encode("ascii", "ignore").decode() or "export"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def spreadsheet_response(
    export_type: str, title: str, headers: list[str], rows: Iterator[list[Any]], filename: str
) -> StreamingResponse:
    """Stream ``rows`` as .xlsx or CSV (UTF-8 with BOM); shared by list exports and error workbooks."""
    content = xlsx_chunks(title, headers, rows) if export_type == "xlsx" else csv_chunks(headers, rows)
    return StreamingResponse(
        content,
        media_type=MEDIA_TYPES[export_type],
        headers={"Content-Disposition": attachment(filename)},
    )


# ----- the fast path: selected columns instead of ORM objects -----------------------------------

# What a related row shows in a cell, per target table (else its first label-like column).
_DISPLAY_FIELDS = {"sys_user": ("real_name", "username"), "product": ("code", "name")}
_LABEL_FIELDS = ("name", "title", "order_no", "code", "username", "label")


def _display_fields(target: Any) -> tuple[str, ...]:
    table = str(getattr(target, "__tablename__", ""))
    if table in _DISPLAY_FIELDS:
        return _DISPLAY_FIELDS[table]
    columns = inspect(target).columns
    return next(((f,) for f in _LABEL_FIELDS if f in columns), ())


def _join_display(values: tuple[Any, ...], fields: tuple[str, ...]) -> Any:
    if fields == ("real_name", "username"):
        real, user = values
        return f"{real}({user})" if real else (user or "")
    return " ".join(str(v) for v in values if v not in (None, ""))


def converter(view: Any, prop: str) -> Callable[[Any], Any]:
    """value → cell for one column, decided once per export (not per cell)."""
    dict_type = (getattr(view, "column_dict_types", None) or {}).get(prop)
    if dict_type:
        return lambda v: vocabulary.label(dict_type, v) if v not in (None, "") else ""
    choice_labels = (getattr(view, "column_choice_labels", None) or {}).get(prop)
    if choice_labels:
        return lambda v: choice_labels.get(v, v) if v is not None else ""
    return plain


def column_rows(view: Any, stmt: Select[Any], props: list[str], extra: tuple[Any, ...] = ()
                ) -> tuple[Select[Any], Callable[[Any], list[Any]]] | None:
    """The statement narrowed to the exported columns (many-to-one relations joined for their
    display fields) and a row → cells function; None when a column needs the ORM object. The
    ``extra`` columns are read too, their values appended to each row's cells."""
    if getattr(view, "export_formatters", None):
        return None
    model = view.model
    mapper: Any = inspect(model)
    cols: list[Any] = []
    joins: list[tuple[Any, Any]] = []
    readers: list[Callable[[Any], Any]] = []
    for prop in props:
        if "." in prop:
            return None
        convert = converter(view, prop)
        if prop in mapper.column_attrs:
            i = len(cols)
            cols.append(getattr(model, prop))
            readers.append(partial(_read_column, i, convert))
        elif prop in mapper.relationships:
            rel = mapper.relationships[prop]
            if rel.direction.name != "MANYTOONE":
                return None
            target = rel.mapper.class_
            fields = _display_fields(target)
            if not fields:
                return None
            alias = aliased(target)
            joins.append((alias, getattr(model, prop).of_type(alias)))
            i = len(cols)
            cols.extend(getattr(alias, f) for f in fields)
            readers.append(partial(_read_relation, i, fields))
        else:
            return None
    first_extra = len(cols)
    cols.extend(extra)
    narrowed = stmt.with_only_columns(*cols, maintain_column_froms=True)
    for alias, onclause in joins:
        narrowed = narrowed.outerjoin(alias, onclause)

    def row(values: Any) -> list[Any]:
        return [read(values) for read in readers] + list(values[first_extra:])

    return narrowed, row


def _read_column(i: int, convert: Callable[[Any], Any], row: Any) -> Any:
    return convert(row[i])


def _read_relation(i: int, fields: tuple[str, ...], row: Any) -> Any:
    return _join_display(tuple(row[i:i + len(fields)]), fields)


def iter_column_rows(stmt: Select[Any], row: Callable[[Any], list[Any]]) -> Iterator[list[Any]]:
    with session_factory()() as session:
        for values in session.execute(stmt.execution_options(yield_per=BATCH)):
            yield row(values)


def masked_export_rows(rows: Iterator[list[Any]], shapes: dict[int, masking.Shape], principal: Any, *,
                       per_row: bool) -> Iterator[list[Any]]:
    """The exported rows with their personal cells masked as the user sees them on the list. Without
    the permission every row is masked (no database work); a holder's rows carry their customer's id as
    a last cell, and the customers masked for them are asked once per batch of rows."""

    def masked(values: list[Any]) -> list[Any]:
        for i, shape in shapes.items():
            if isinstance(values[i], str) and values[i]:
                values[i] = shape(values[i])
        return values

    if not per_row:
        for values in rows:
            yield masked(values)
        return
    batch: list[list[Any]] = []

    def flush() -> Iterator[list[Any]]:
        ids = {values[-1] for values in batch if values[-1] is not None}
        with session_factory()() as session:  # not the streaming connection
            hidden = masking.customers_masked_for(session, principal, ids)
        for values in batch:
            cid = values.pop()
            yield masked(values) if cid in hidden else values
        batch.clear()

    for values in rows:
        batch.append(values)
        if len(batch) >= BATCH:
            yield from flush()
    if batch:
        yield from flush()


async def export_response(view: Any, request: Request, export_type: str) -> StreamingResponse:
    """The export of ``view``'s list as the user sees it (called by the base view's ``export_data``)."""
    req = list_request(view, request)
    columns = export_columns(view)
    props = [p for p, _ in columns]
    stmt = base = await list_statement(view, req)
    rels = _relations(view, props)
    if rels:
        # Many-to-one relations are joined into the one streamed query: a selectinload would run a
        # second query on the connection that is still streaming (yield_per), and PyMySQL then
        # silently drops the rest of the result (MariaDB exports stopped after 1,000 rows).
        stmt = stmt.options(*(
            joinedload(r) if r.property.direction.name == "MANYTOONE" else selectinload(r) for r in rels
        ))
    query = req.url.query
    actor = current_actor()
    await anyio.to_thread.run_sync(
        partial(
            audit.record_now,
            "export",
            resource=view.resource,
            detail=f"导出{view.name_plural}({export_type}),条件:{query or '全部'}",
            actor=actor,
        )
    )

    principal = getattr(req.state, "principal", None)
    personal = masking.personal_data(view.model) if principal is not None else None
    shapes = {i: personal.fields[p] for i, p in enumerate(props) if personal and p in personal.fields}
    # a holder of the permission may still see some customers masked (a rule): each row's customer is read
    per_row = bool(shapes) and principal is not None and masking.sees_sensitive(principal)
    extra = (getattr(view.model, personal.customer_key),) if per_row and personal else ()
    fast = column_rows(view, base, props, extra)
    if fast is not None:
        rows = iter_column_rows(*fast)
    else:
        def row(obj: Any) -> list[Any]:
            cells = [cell_value(view, obj, p) for p in props]
            return [*cells, personal.customer_of(obj)] if per_row and personal else cells

        rows = iter_rows(stmt, row)
    if shapes:
        rows = masked_export_rows(rows, shapes, principal, per_row=per_row)
    stamp = local_now().strftime("%Y%m%d-%H%M%S")  # the company's clock, as the user reads it
    filename = f"{view.name_plural}-{stamp}.{export_type}"
    return spreadsheet_response(export_type, str(view.name_plural), [h for _, h in columns], rows, filename)
