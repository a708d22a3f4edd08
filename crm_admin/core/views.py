"""The base admin views every module inherits.

``CrmModelView`` puts the permission gate and the data scope on every path SQLAdmin offers (list,
count, search, details, edit GET/POST, delete single and bulk, export, ajax look-ups, submitted
foreign keys) and replaces SQLAdmin's save/delete with one transaction that carries its audit rows
and turns database refusals into messages a salesperson understands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import anyio
from sqladmin import BaseView, ModelView
from sqladmin.authorization import Action
from sqladmin.models import ModelViewMeta
from sqlalchemy import ColumnElement, Integer, Select, false, inspect, select, true
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import MANYTOONE, Session
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from crm_admin import retry
from crm_admin.core import limits, masking, personal, recycling, search, sqladmin_compat, vocabulary
from crm_admin.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    UserError,
    friendly_db_error,
)
from crm_admin.core.formatting import TYPE_FORMATTERS
from crm_admin.core.forms import CrmForm, CrmModelConverter
from crm_admin.core.i18n import tr
from crm_admin.core.listing import CappedListMixin, reads_by_owner
from crm_admin.core.params import parse_id, parse_int, parse_page
from crm_admin.core.principal import Principal
from crm_admin.core.scope import (
    ASSIGN,
    assignable_ids,
    check_assignee,
    in_scope,
    owner_scoped,
    scope_clause,
    scoped,
    sees_user,
)
from crm_admin.db import session_factory, transaction

log = logging.getLogger(__name__)

# SQLAdmin's action names → the permission actions of the policy
ACTION_MAP = {
    Action.LIST.value: "list",
    Action.DETAILS.value: "view",
    Action.CREATE.value: "create",
    Action.EDIT.value: "edit",
    Action.DELETE.value: "delete",
    Action.EXPORT.value: "export",
    Action.IMPORT.value: "import",
}


# SQLAdmin identity (URL segment) → permission resource, filled as views are created.
VIEW_RESOURCES: dict[str, str] = {}


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(status_code=401)
    return principal


def permission_action(action: str) -> str:
    if action.startswith("action:"):
        return action.split(":", 1)[1]
    return ACTION_MAP.get(action, action)


def scoped_ref(model: type, fields: list[str], **options: Any) -> dict[str, Any]:
    """A ``form_ajax_refs`` entry over ``model`` that only offers rows within the user's scope."""

    def where(request: Request, _term: str) -> list[ColumnElement[bool]]:
        clause = scope_clause(model, principal_of(request))
        return [clause if clause is not None else true()]

    where.__crm_scoped__ = True  # type: ignore[attr-defined]
    return {"fields": fields, "where": where, **options}


def narrowed_ref(model: type, fields: list[str], *, by: str, column: str, **options: Any) -> dict[str, Any]:
    """A scoped look-up offering only the rows that belong to the record chosen in the form's ``by``
    field (the contacts of the chosen customer): the picker sends that record's id as the ``by``
    parameter (static/js/crm-pages.js); nothing is chosen yet → nothing is offered. The form's save
    still checks that the submitted row belongs to the chosen one (each module's ``before_save``).
    """

    def where(request: Request, _term: str) -> list[ColumnElement[bool]]:
        chosen = parse_id(request.query_params.get(by))
        clause = scope_clause(model, principal_of(request))
        return [getattr(model, column) == chosen if chosen is not None else false(),
                clause if clause is not None else true()]

    where.__crm_scoped__ = True  # type: ignore[attr-defined]
    return {"fields": fields, "where": where, NARROW_BY: by, **options}


# the option of a ``narrowed_ref`` naming the field it follows (SQLAdmin's loader ignores unknown options)
NARROW_BY = "crm_narrow_by"


def assignable_ref(fields: list[str], *, purpose: str = ASSIGN, **options: Any) -> dict[str, Any]:
    """A ``form_ajax_refs`` entry over users that offers only whom the user may give work to
    (``core.scope.check_assignee`` checks the submitted id again on save)."""

    async def where(request: Request, _term: str) -> list[ColumnElement[bool]]:
        from crm_admin.core.models import SysUser

        principal = principal_of(request)

        def ids() -> list[int]:
            with session_factory()() as session:
                return assignable_ids(session, principal, purpose=purpose)

        found = await anyio.to_thread.run_sync(ids)
        return [SysUser.id.in_(found) if found else false()]

    return {"fields": fields, "where": where, **options}


# Columns offered as the search fields of an automatic look-up, best first.
_LOOKUP_FIELDS = ("name", "title", "order_no", "code", "username", "real_name", "label")


def _with_scope(model: type, options: dict[str, Any]) -> dict[str, Any]:
    """An ajax-ref option dict whose ``where`` also applies ``model``'s scope (whatever it had)."""
    where = options.get("where")
    if getattr(where, "__crm_scoped__", False):
        return options

    def scoped_where(request: Request, term: str) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if callable(where):
            got = where(request, term)
            clauses.extend(got if isinstance(got, list | tuple) else [got])
        elif isinstance(where, list | tuple):
            clauses.extend(where)
        elif where is not None:
            clauses.append(where)
        clause = scope_clause(model, principal_of(request))
        clauses.append(clause if clause is not None else true())
        return clauses

    scoped_where.__crm_scoped__ = True  # type: ignore[attr-defined]
    return {**options, "where": scoped_where}


def _lookup_fields(model: type) -> list[str]:
    columns: Any = inspect(model).columns  # type: ignore[union-attr]
    found = [name for name in _LOOKUP_FIELDS if name in columns]
    return found[:2] or ["id"]


class ScopedFilter:
    """A SQLAdmin side-bar filter whose offered values come only from rows within the user's scope.

    SQLAdmin builds the values with ``SELECT DISTINCT col`` over the whole table (or the whole
    referenced table); the statement is narrowed here before it runs.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def lookups(self, request: Request, model: Any, run_query: Callable[..., Any]) -> Any:
        clause = scope_clause(model, principal_of(request), "list")
        if clause is None:
            return await self._inner.lookups(request, model, run_query)

        async def scoped_run(stmt: Select[Any]) -> Any:
            return await run_query(_restrict_lookup(stmt, model, clause))

        return await self._inner.lookups(request, model, scoped_run)

    async def get_filtered_query(self, query: Select[Any], value: Any, model: Any) -> Select[Any]:
        return await self._inner.get_filtered_query(query, value, model)


def _restrict_lookup(stmt: Select[Any], model: Any, clause: ColumnElement[bool]) -> Select[Any]:
    table = model.__table__
    froms = set(stmt.get_final_froms())
    if table in froms:
        return stmt.where(clause)
    # values read from a referenced table: only those referenced by rows in scope
    for fk in table.foreign_keys:
        if fk.column.table in froms:
            return stmt.where(fk.column.in_(select(fk.parent).where(clause)))
    return stmt.where(false())  # unknown shape: offer nothing rather than everything


class ScopedAccess:
    """Permission answers shared by model views and custom pages."""

    resource: ClassVar[str] = ""

    def has_permission(self, request: Request, action: str, obj: Any | None = None) -> bool:
        """The permission, and for a row owned by a manager (its buttons, its edit and delete) also the
        permission's scope: a lead who sees the team's customers but edits only their own is offered
        "edit" on their own rows only."""
        principal = getattr(request.state, "principal", None)
        if principal is None:
            return False
        perm = permission_action(action)
        if not principal.can(self.resource, perm):
            return False
        if obj is not None and getattr(type(obj), "__scope__", "") == "owner":
            return sees_user(principal, getattr(obj, "manager_id", None), self.resource, perm)
        return True

    def is_visible(self, request: Request) -> bool:
        return self.has_permission(request, "list")

    def is_accessible(self, request: Request) -> bool:
        principal = getattr(request.state, "principal", None)
        if principal is None:
            return False
        return any(res == self.resource for res, _act in principal.permissions)


class CrmBaseView(ScopedAccess, BaseView):
    """A custom page: visible with the ``list`` permission on its resource."""

    def is_accessible(self, request: Request) -> bool:
        return self.has_permission(request, "list")


# the attribute of an opened row naming the personal fields its edit form shows masked
_MASKED_FIELDS = "_crm_masked_fields"

# the bookkeeping columns every table has, named the same way on every details page
DEFAULT_LABELS = {"created_at": "创建时间", "updated_at": "更新时间"}


class _CrmModelViewMeta(ModelViewMeta):
    """A view's plural name is its name unless it gives one (SQLAdmin appends an English "s")."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any) -> Any:
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        if kwargs.get("model") and "name_plural" not in attrs:
            cls.name_plural = cls.name
        return cls


class CrmModelView(ScopedAccess, CappedListMixin, ModelView, metaclass=_CrmModelViewMeta):
    page_size = 20
    page_size_options: ClassVar[list[int]] = [20, 50, 100]
    export_types: ClassVar[list[str]] = ["xlsx", "csv"]
    # message for an edit whose ``version`` is older than the row's (optimistic locking)
    stale_message = "保存失败:该记录已被他人修改,请刷新页面查看最新内容后再修改(您填写的内容仍保留在下方)。"
    use_pretty_export = True
    save_as = False
    # Chinese WTForms messages, local-time datetime inputs, Shanghai times / 1,234.56 / 是否 shown
    form_base_class = CrmForm
    form_converter = CrmModelConverter
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS

    def __init__(self) -> None:
        model: Any = self.model
        if not self.resource:
            # the permission resource defaults to the model's (SQLAdmin sets ``model`` after class creation)
            type(self).resource = getattr(model, "__resource__", "") or model.__tablename__
        type(self).form_ajax_refs = self._scoped_ajax_refs()
        type(self).form_widget_args = self._narrowed_widget_args()
        self._word_formatters()
        super().__init__()
        # pickers over searchable models find by any part of the name, pinyin, digits
        sqladmin_compat.search_lookups(self, lambda m: search.searchable(m) is not None, search.match_now)
        VIEW_RESOURCES[self.identity] = self.resource
        # the screen names of the fields, for messages raised where no form is at hand (core/limits.py)
        limits.register_labels(model, sqladmin_compat.column_labels(self))

    # A view whose records are created and edited on a page of its own (a header with its lines, say)
    # names that page's routes: (create route, edit route taking ``pk``). Every "new"/"edit" button and
    # link leads there, and SQLAdmin's own create/edit URLs redirect there once their gate has passed.
    own_form_routes: ClassVar[tuple[str, str] | None] = None

    def create_url(self, request: Request) -> str:
        """Where the list's "new" button leads."""
        if self.own_form_routes:
            return str(request.url_for(self.own_form_routes[0]))
        return str(request.url_for("admin:create", identity=self.identity))

    def edit_url(self, request: Request, obj: Any) -> str:
        """Where a row's "edit" link leads."""
        if self.own_form_routes:
            return str(request.url_for(self.own_form_routes[1], pk=obj.id))
        return str(sqladmin_compat.build_url_for(self, "admin:edit", request, obj))

    @classmethod
    def _word_formatters(cls) -> None:
        """A coded value reads as a word on the list and the details page alike: a dictionary column
        (``info={"dict": …}``) shows its label unless the view formats it, and the details page uses
        the list's formatters unless it has its own."""
        mapper: Any = inspect(cls.model)
        formatters: dict[Any, Any] = dict(cls.column_formatters or {})
        named = {getattr(key, "key", key) for key in formatters}
        for column in mapper.columns:
            type_code = column.info.get("dict")
            if type_code and column.key not in named:
                formatters[column.key] = (
                    lambda m, a, key=column.key, t=type_code: vocabulary.label(t, getattr(m, key) or ""))
        cls.column_formatters = formatters
        detail: dict[Any, Any] = dict(cls.column_formatters_detail or {})
        named_detail = {getattr(key, "key", key) for key in detail}
        for key, fn in formatters.items():
            if getattr(key, "key", key) not in named_detail:
                detail[key] = fn
        cls.column_formatters_detail = detail
        labels = dict(cls.column_labels or {})
        named_labels = {getattr(key, "key", key) for key in labels}
        for key, label in DEFAULT_LABELS.items():
            if key not in named_labels and key in mapper.columns:
                labels[key] = label
        cls.column_labels = labels

    # internal columns a person has no use for on a details page
    HIDDEN_DETAILS = frozenset({"version", "birthday_md", "name_key", "open_key", "task_key", "customer_manager_id"})

    def get_details_columns(self) -> list[str]:
        """SQLAdmin's details by default show every column, ids included ("manager_id 4", "id 57"): unless a
        view lists its details, the key and each foreign key whose relation is shown (by its name) are left
        out, with the bookkeeping columns."""
        names = super().get_details_columns()
        if getattr(self, "column_details_list", None):
            return names
        mapper: Any = inspect(self.model)
        shown_by_relation = {
            column.key for rel in mapper.relationships if rel.key in names for column in rel.local_columns
        }
        keys = {column.key for column in mapper.primary_key}
        return [n for n in names if n not in keys | shown_by_relation | self.HIDDEN_DETAILS]

    @classmethod
    def _scoped_ajax_refs(cls) -> dict[str, Any]:
        """Every relation to a scoped table becomes a scoped look-up.

        SQLAdmin fills a plain relation drop-down with the whole target table and checks no
        ``where`` unless given one; here each look-up over a scoped table gets the scope added,
        and each relation to a scoped table that has no look-up gets one.
        """
        refs: dict[str, Any] = dict(cls.form_ajax_refs or {})
        mapper: Any = inspect(cls.model)
        for rel in mapper.relationships:
            target = rel.mapper.class_
            if not _scoped_model(target):
                continue
            if rel.key in refs:
                refs[rel.key] = _with_scope(target, dict(refs[rel.key]))
            elif rel.direction.name == "MANYTOONE" and not rel.viewonly:
                refs[rel.key] = scoped_ref(target, _lookup_fields(target))
        return refs

    # ----- search: any part, pinyin, digits through the search index (core/search.py) -------------
    @property
    def search_hint(self) -> str:
        """What the search box finds, when the model is in the search index."""
        return tr("名称(任意部分)、拼音或首字母、电话或编号中的数字") if search.searchable(self.model) else ""

    def search_query(self, stmt: Select[Any], term: str) -> Select[Any]:
        if search.searchable(self.model) is None:
            return super().search_query(stmt, term)
        found = search.match_now(self.model, term)
        return stmt if found is None else stmt.where(found)

    def highlight_columns(self) -> frozenset[str]:
        """List columns in which the searched text is marked."""
        spec = search.searchable(self.model)
        return frozenset(spec.names + spec.digits + spec.prefixes) if spec else frozenset()

    @classmethod
    def _narrowed_widget_args(cls) -> dict[str, Any]:
        """A picker that follows another field (``narrowed_ref``) says which one in ``data-narrow-by``:
        the page's script sends that field's value with each look-up and asks to choose it first."""
        args: dict[str, Any] = {key: dict(value) for key, value in (cls.form_widget_args or {}).items()}
        for name, options in (cls.form_ajax_refs or {}).items():
            if isinstance(options, dict) and options.get(NARROW_BY):
                args.setdefault(name, {})["data-narrow-by"] = options[NARROW_BY]
        return args

    # ----- the scope, on every read path (each with the scope of its own permission) ---------
    def list_query(self, request: Request) -> Select[Any]:
        # the list and its export (which reads the list's statement) each have their permission's scope
        action = "export" if request.path_params.get("export_type") else "list"
        if reads_by_owner(request):
            # the list finds and counts a team's rows by the owner each carries; the rows it shows are
            # read through this method's scope (core.listing)
            return owner_scoped(super().list_query(request), self.model, principal_of(request), action)
        return scoped(super().list_query(request), self.model, principal_of(request), action)

    def details_query(self, request: Request) -> Select[Any]:
        # keeps SQLAdmin's primary-key condition and adds the scope to it
        return scoped(super().details_query(request), self.model, principal_of(request), "view")

    def form_edit_query(self, request: Request) -> Select[Any]:
        return scoped(super().form_edit_query(request), self.model, principal_of(request), "edit")

    def get_filters(self) -> list[Any]:
        return [ScopedFilter(f) for f in super().get_filters()]

    # ----- export: what the user sees, streamed (core/export.py); SQLAdmin's loads every row --------
    async def get_model_objects(self, request: Request, limit: int | None = 0) -> list[Any]:
        return []  # the export streams its own rows; nothing is loaded up front

    async def export_data(self, data: list[Any], export_type: str = "csv",
                          request: Request | None = None) -> Any:
        from crm_admin.core.export import export_response

        if request is None:
            raise HTTPException(status_code=400)
        return await export_response(self, request, export_type)

    def validate_page_number(self, number: str | None, default: int) -> int:
        """``page`` and ``pageSize`` of the list: malformed → the default, huge → bounded (never a 500)."""
        if not number:
            return default
        return parse_page(number) if parse_int(number) is not None or str(number).strip().isdigit() else default

    async def page_values(self, request: Request, context: dict[str, Any]) -> dict[str, Any]:
        """What SQLAdmin's list, details and form templates would otherwise await while rendering (its
        permission checks and cell values are coroutines), resolved before the page is rendered, so the
        page renders synchronously (``web/templating.py``). The templates read ``page_*`` when given."""
        values: dict[str, Any] = {
            "page_can_create": self.can_create and await self.check_can_create(request),
            "page_can_export": self.can_export and await self.check_can_export(request),
        }
        pagination = context.get("pagination")
        if pagination is not None:
            values["page_rows"] = await self.list_rows(request, pagination.rows)
        model = context.get("model")
        if model is not None:
            values["page_can_edit"] = await self.check_can_edit(request, model)
            values["page_can_delete"] = await self.check_can_delete(request, model)
            details = {name: await self.get_detail_value(model, name, request)
                       for name in sqladmin_compat.details_prop_names(self)}
            masked = await self.masked_page(request, [model])
            if masked:
                details = {name: (value, masked.shown(model, name, value)) if masked.masks(model, name)
                           else (value, shown) for name, (value, shown) in details.items()}
                values["page_reveal"] = await self.reveal_links(request, model, masked)
            values["page_details"] = details
            values["page_links"] = self.detail_links(request, model)
        return values

    def detail_links(self, request: Request, obj: Any) -> list[tuple[str, str]]:
        """(address, text) of more buttons on a row's details page (a module's own pages for the row)."""
        return []

    # ----- personal data: masked for whoever may not see it (core/masking.py) -------------------
    async def masked_page(self, request: Request, rows: Sequence[Any]) -> masking.MaskedRows:
        """Which of a page's rows the user sees masked: one question for the whole page (no database
        work at all for a user without the permission, who sees every row masked)."""
        if masking.personal_data(self.model) is None or not rows:
            return masking.NOTHING_MASKED
        principal = principal_of(request)
        if not masking.sees_sensitive(principal):
            return masking.masked_rows(None, principal, self.model, rows)
        return await anyio.to_thread.run_sync(masking.masked_rows, session_factory(), principal, self.model, rows)

    async def reveal_links(self, request: Request, obj: Any, masked: masking.MaskedRows) -> dict[str, str]:
        """Field → where its "show in full" button posts, for a holder of the permission who sees the
        row masked by a rule (a view whose module offers the reveal names the route)."""
        principal = principal_of(request)
        if not self.reveal_route or not masking.sees_sensitive(principal):
            return {}
        spec = masking.personal_data(self.model)
        fields = [name for name in (spec.fields if spec else ()) if masked.masks(obj, name) and getattr(obj, name, None)]
        if not fields:
            return {}

        def allowed() -> bool:
            with session_factory()() as session:
                return personal.may_reveal(session, principal, self.model, obj.id)

        if not await anyio.to_thread.run_sync(allowed):
            return {}
        url = str(request.url_for(self.reveal_route, pk=obj.id))
        return dict.fromkeys(fields, url)

    # the route (``admin:…`` name) that reveals one masked value of this view's rows, when there is one
    reveal_route: ClassVar[str] = ""

    async def reveal_response(self, request: Request) -> Response:
        """The body of a view's reveal route (declared by its module with the permission and the row):
        the one value asked for, on a page that is not cached, audited."""
        form = await request.form()
        field = str(form.get("field", ""))[:64]
        pk = int(request.path_params["pk"])
        back = str(form.get("back", ""))
        home = request.url_for("admin:index").path  # back only to a page of this site's admin
        if not back.startswith(home) or "//" in back or "\\" in back:
            back = str(request.url_for("admin:details", identity=self.identity, pk=pk))
        label = str(sqladmin_compat.column_labels(self).get(field, field))

        def run() -> tuple[str, str]:
            with transaction() as session:
                value = personal.reveal(session, principal_of(request), self.model, pk, field, label=label)
                record = session.get(self.model, pk)
                return value, str(record)

        try:
            value, record = await anyio.to_thread.run_sync(run)
        except NotFound:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。") from None
        except UserError as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None
        context = {"title": tr("查看完整信息"), "record": record, "field_label": label, "value": value,
                   "back": back}
        response = await self.templates.TemplateResponse(request, "crm/revealed.html", context)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def get_object_for_edit(self, request: Request) -> Any:
        """The row the edit form opens; its personal data is shown in the form as the user sees it
        elsewhere (masked, when masked), and a masked value posted back unchanged keeps the stored one
        (``_keep_masked``)."""
        if not self.valid_identifier(request.path_params.get("pk", "")):
            return None
        obj = await super().get_object_for_edit(request)
        if obj is not None:
            masked = await self.masked_page(request, [obj])
            obj.__dict__[_MASKED_FIELDS] = frozenset(
                name for name in (masked.spec.fields if masked.spec else ()) if masked.masks(obj, name))
        return obj

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        data = await super().get_form_data_for_edit(obj)
        for name in obj.__dict__.get(_MASKED_FIELDS, ()):
            if name in data:
                data[name] = masking.masked_value(self.model, name, data[name])
        return data

    def _keep_masked(self, obj: Any, data: dict[str, Any], is_created: bool) -> None:
        """A personal value posted exactly as it was shown masked leaves the stored value alone; any
        other masked-looking value is refused (a mask is never saved over a real value)."""
        spec = masking.personal_data(self.model)
        if spec is None:
            return
        labels = sqladmin_compat.column_labels(self)
        for name in spec.fields:
            posted = data.get(name)
            if not isinstance(posted, str) or not masking.is_masked(posted):
                continue
            if not is_created and masking.unchanged_if_masked(self.model, name, posted, getattr(obj, name, None)):
                data.pop(name)
                continue
            label = str(labels.get(name, name))
            raise UserError(f"“{label}”是脱敏显示的值,不能保存:请保持原样不改,或填写完整的新值。", field=name)

    async def _refuse_missing(self, model: Any) -> None:
        if model is None:
            raise HTTPException(status_code=404, detail="记录不存在或您无权访问。")

    async def check_can_view_details(self, request: Request, model: Any) -> bool:
        await self._refuse_missing(model)
        return await super().check_can_view_details(request, model)

    async def check_can_edit(self, request: Request, model: Any) -> bool:
        await self._refuse_missing(model)
        return await super().check_can_edit(request, model)

    async def check_can_delete(self, request: Request, model: Any) -> bool:
        await self._refuse_missing(model)
        return await super().check_can_delete(request, model)

    # ----- writes: one transaction, audit included, friendly errors -----------------------
    def before_save(
        self, session: Session, obj: Any, data: dict[str, Any], is_created: bool, request: Request
    ) -> None:
        """Module hook: validate and complete ``obj`` before it is flushed (raise UserError to refuse)."""

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        """Module hook: refuse a delete that would orphan or silently cascade (raise UserError)."""

    def check_foreign_keys(self, session: Session, data: dict[str, Any], request: Request) -> None:
        """Every submitted reference must point at a row the user may see."""
        principal = principal_of(request)
        mapper: Any = inspect(self.model)
        for rel in mapper.relationships:
            if rel.key not in data:
                continue
            value = data[rel.key]
            target = rel.mapper.class_
            if value in (None, "") or not _scoped_model(target):
                continue
            values = value if isinstance(value, list | tuple | set) else [value]
            for one in values:
                one = getattr(one, "id", one)
                if not in_scope(session, target, one, principal):
                    raise UserError("所选的关联记录不存在或不在您的数据范围内。", field=rel.key)
        for col in mapper.columns:
            if col.key not in data or not col.foreign_keys or col.key in mapper.relationships:
                continue
            fk = next(iter(col.foreign_keys))
            target_table = fk.column.table.name
            target = _model_for_table(target_table)
            if target is not None and _scoped_model(target) and not in_scope(
                session, target, data[col.key], principal
            ):
                raise UserError("所选的关联记录不存在或不在您的数据范围内。", field=col.key)

    def follow_chosen_relations(self, obj: Any) -> None:
        """A record picked in the form (``customer``) is set on the relationship, which wins over the
        foreign key only at the flush: copy it to the key (``customer_id``) so that every check before
        the flush sees the choice. The submitted id has already passed ``check_foreign_keys`` (the
        scope). The owner (``manager``) is not followed here: ``check_owner`` and the module settle it.
        """
        mapper: Any = inspect(type(obj))
        for rel in mapper.relationships:
            if rel.direction is not MANYTOONE or rel.key not in obj.__dict__:
                continue
            if any(local.key == "manager_id" for local, _remote in rel.local_remote_pairs):
                continue
            chosen = obj.__dict__[rel.key]
            for local, remote in rel.local_remote_pairs:
                value = None if chosen is None else getattr(chosen, rel.mapper.get_property_by_column(remote).key)
                setattr(obj, mapper.get_property_by_column(local).key, value)

    def check_owner(self, session: Session, obj: Any, owner_before: int | None, is_created: bool,
                    request: Request) -> None:
        """Rows owned by a manager (``__scope__ = "owner"``): who may set ``manager_id``.

        A new row defaults to the creating user; only a holder of ``assign`` on the resource may
        name someone else or change the owner of an existing row (otherwise that is a transfer), and
        the person named must pass the one rule for whom work may be given to (``check_assignee``).
        """
        if getattr(self.model, "__scope__", "") != "owner":
            return
        principal = principal_of(request)
        if is_created and obj.manager_id is None:
            obj.manager_id = principal.id
        wanted = principal.id if is_created else owner_before
        if obj.manager_id == wanted:
            return
        if not principal.can(self.resource, "assign"):
            raise Forbidden("您没有分配客户经理的权限:新建的记录归您本人负责,更换负责人请使用客户转移。")
        if obj.manager_id is not None:
            check_assignee(session, principal, obj.manager_id, field="manager")

    def check_version(self, obj: Any, data: dict[str, Any], is_created: bool) -> None:
        """Optimistic locking: the form carries the ``version`` it was opened with; an older one is refused."""
        if "version" not in data:
            return
        submitted = data.pop("version")
        if is_created or submitted in (None, ""):
            return
        try:
            stale = int(submitted) != int(obj.version)
        except (TypeError, ValueError):
            stale = True
        if stale:
            raise Conflict(self.stale_message)

    def _without_blank_owner(self, data: dict[str, Any], is_created: bool) -> dict[str, Any]:
        """A new owned row with no owner given: leave the owner fields alone so it defaults (check_owner)."""
        if not is_created or getattr(self.model, "__scope__", "") != "owner":
            return data
        mapper: Any = inspect(self.model)
        keys = {"manager_id"} | {
            rel.key for rel in mapper.relationships
            if any(col.key == "manager_id" for col in rel.local_columns)
        }
        if all(data.get(k) in (None, "") for k in keys):
            return {k: v for k, v in data.items() if k not in keys}
        return data

    def valid_identifier(self, value: Any) -> bool:
        """Whether ``value`` can be this model's primary key: an id that fits its ``INT`` column (a
        20-digit or NUL-carrying "id" from a URL opens nothing rather than failing in the driver)."""
        text = str(value).strip()
        if not text or "\x00" in text or len(text) > 255:
            return False
        column: Any = inspect(self.model).primary_key[0]  # type: ignore[union-attr]
        return not isinstance(column.type, Integer) or parse_id(text) is not None

    async def get_object_for_details(self, request: Request) -> Any:
        if not self.valid_identifier(request.path_params.get("pk", "")):
            return None
        try:
            return await super().get_object_for_details(request)
        except (TypeError, ValueError):  # a malformed primary key opens nothing
            return None

    def _scoped_object(self, session: Session, principal: Principal, pk: str, action: str) -> Any:
        """The row ``pk`` names, if ``principal`` may ``action`` it; NotFound otherwise."""
        if not self.valid_identifier(pk):
            raise NotFound()
        stmt = scoped(sqladmin_compat.stmt_by_identifier(self, pk), self.model, principal, action)
        obj = session.execute(stmt).scalars().first()
        if obj is None:
            raise NotFound()
        return obj

    def _save_sync(self, request: Request, pk: str | None, data: dict[str, Any]) -> Any:
        """Save as one transaction, run again from the start on a passing database error (a deadlock,
        a cluster node leaving: ``crm_admin/retry.py``): each attempt reads the row afresh, checks the
        submitted version against it, and writes its audit rows with it."""
        principal = principal_of(request)
        try:
            return retry.call(partial(self._save_once, request, principal, pk, data),
                              where=f"save:{self.identity}")
        except StaleDataError:
            raise Conflict("保存失败:该记录已被其他人修改,请刷新页面查看最新内容后再修改。") from None
        except SQLAlchemyError as exc:
            # unique keys and the like: an expected refusal; anything else is logged in full
            if isinstance(exc, IntegrityError):
                log.info("save refused by the database: %s", getattr(exc, "orig", exc))
            else:
                log.warning("save failed", exc_info=True)
            raise UserError(friendly_db_error(exc)) from None

    def _save_once(self, request: Request, principal: Principal, pk: str | None, submitted: dict[str, Any]) -> Any:
        data = dict(submitted)  # the checks below take values out of it: each attempt starts from the form
        with transaction() as session:
            if pk is None:
                obj = self.model()
            else:
                obj = self._scoped_object(session, principal, pk, "edit")
            self.check_foreign_keys(session, data, request)
            self._keep_masked(obj, data, pk is None)
            self.check_version(obj, data, pk is None)
            data = self._without_blank_owner(data, pk is None)
            owner_before = getattr(obj, "manager_id", None)
            try:
                obj = sqladmin_compat.set_attributes(self, session, obj, data)
            except (TypeError, ValueError):  # e.g. a relation picker posted something that is no id
                raise UserError("所选的关联记录不存在,请刷新页面后重新选择。") from None
            self.follow_chosen_relations(obj)
            self.check_owner(session, obj, owner_before, pk is None, request)
            self.before_save(session, obj, data, pk is None, request)
            if pk is None:
                session.add(obj)
            session.flush()
            # the saved row must be within the scope of what was done to it (e.g. not handed to
            # someone else, not a contact added to a customer the user may only look at)
            if not in_scope(session, self.model, obj.id, principal, "create" if pk is None else "edit"):
                raise UserError("保存后的记录将超出您的数据范围,操作已取消。")
            return obj

    def _delete_sync(self, request: Request, pk: str) -> None:
        principal = principal_of(request)
        obj: Any = None

        def delete_once() -> None:
            nonlocal obj
            with transaction() as session:
                obj = self._scoped_object(session, principal, pk, "delete")
                self.before_delete(session, obj, request)
                recycling.before_delete(session, obj)  # a customer, contact, opportunity, order: kept in the bin
                session.delete(obj)
                session.flush()

        try:
            retry.call(delete_once, where=f"delete:{self.identity}")
        except IntegrityError:
            raise UserError(f"无法删除“{obj}”:仍有其他数据引用它,请先处理这些数据。") from None
        except SQLAlchemyError as exc:
            log.warning("delete failed", exc_info=True)
            raise UserError(friendly_db_error(exc)) from None

    async def _in_thread[T](self, fn: Callable[[], T]) -> T:
        """Run a write in a worker thread; SQLAdmin shows ``str()`` of whatever escapes, so only a
        refusal meant for the user (or an HTTP error) leaves here, anything else as a plain message."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except (UserError, HTTPException):
            raise
        except Exception as exc:
            log.exception("write through %s failed", self.identity)
            raise UserError(friendly_db_error(exc)) from None

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        obj = await self._in_thread(partial(self._save_sync, request, None, data))
        await self.after_model_change(data, obj, True, request)
        return obj

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        obj = await self._in_thread(partial(self._save_sync, request, pk, data))
        await self.after_model_change(data, obj, False, request)
        return obj

    async def delete_model(self, request: Request, pk: Any) -> None:
        if str(pk).strip() == "":
            raise NotFound()
        await self._in_thread(partial(self._delete_sync, request, str(pk)))

    async def get_object_for_delete(self, value: Any) -> Any:
        # the route has already opened every pk through the scoped ``details_query``
        if not self.valid_identifier(value):
            return None
        return await super().get_object_for_delete(value)


_TABLE_MODELS: dict[str, type] = {}


class ReadOnlyModelView(CrmModelView):
    """Records the system writes (audit rows, job runs, transfers, policy lines …): listed, shown and
    exported through the view, never created, edited or deleted there."""

    can_create = False
    can_edit = False
    can_delete = False


def _scoped_model(model: type) -> bool:
    return bool(getattr(model, "__scope__", ""))


def _model_for_table(table: str) -> type | None:
    if not _TABLE_MODELS:
        from crm_admin.db import Base

        for mapper in Base.registry.mappers:
            _TABLE_MODELS[str(getattr(mapper.local_table, "name", ""))] = mapper.class_
    return _TABLE_MODELS.get(table)


RowFormatter = Callable[[Any, str], Any]
