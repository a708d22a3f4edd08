"""The base admin views every module inherits.

``CrmModelView`` puts the permission gate and the data scope on every path SQLAdmin offers (list,
count, search, details, edit GET/POST, delete single and bulk, export, ajax look-ups, submitted
foreign keys) and replaces SQLAdmin's save/delete with one transaction that carries its audit rows
and turns database refusals into messages a salesperson understands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import anyio
from sqladmin import BaseView, ModelView
from sqladmin._queries import Query
from sqladmin.authorization import Action
from sqlalchemy import ColumnElement, Select, inspect, true
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from crm_admin.core.errors import Conflict, NotFound, UserError
from crm_admin.core.listing import CappedListMixin
from crm_admin.core.principal import Principal
from crm_admin.core.scope import in_scope, scope_clause, scoped
from crm_admin.db import transaction

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


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(status_code=401)
    return principal


def friendly_integrity_message(exc: IntegrityError) -> str:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    if "unique" in text or "duplicate" in text:
        return "保存失败:存在重复的数据(如编号、名称或信用代码已被使用),请检查后重试。"
    if "foreign key" in text or "a foreign key constraint fails" in text:
        return "操作失败:该记录仍被其他数据引用,或引用的数据不存在。"
    if "not null" in text or "cannot be null" in text:
        return "保存失败:有必填项未填写。"
    return "保存失败:数据不符合要求,请检查后重试。"


def permission_action(action: str) -> str:
    if action.startswith("action:"):
        return action.split(":", 1)[1]
    return ACTION_MAP.get(action, action)


def scoped_ref(model: type, fields: list[str], **options: Any) -> dict[str, Any]:
    """A ``form_ajax_refs`` entry over ``model`` that only offers rows within the user's scope."""

    def where(request: Request, _term: str) -> list[ColumnElement[bool]]:
        clause = scope_clause(model, principal_of(request))
        return [clause if clause is not None else true()]

    return {"fields": fields, "where": where, **options}


class ScopedAccess:
    """Permission answers shared by model views and custom pages."""

    resource: ClassVar[str] = ""

    def has_permission(self, request: Request, action: str, obj: Any | None = None) -> bool:
        principal = getattr(request.state, "principal", None)
        if principal is None:
            return False
        return principal.can(self.resource, permission_action(action))

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


class CrmModelView(ScopedAccess, CappedListMixin, ModelView):
    page_size = 20
    page_size_options: ClassVar[list[int]] = [20, 50, 100]
    export_types: ClassVar[list[str]] = ["csv"]
    use_pretty_export = True
    save_as = False

    def __init__(self) -> None:
        if not self.resource:
            # the permission resource defaults to the model's (SQLAdmin sets ``model`` after class creation)
            model: Any = self.model
            type(self).resource = getattr(model, "__resource__", "") or model.__tablename__
        super().__init__()

    # ----- the scope, on every read path -------------------------------------------------
    def scope(self, request: Request) -> ColumnElement[bool] | None:
        return scope_clause(self.model, principal_of(request))

    def list_query(self, request: Request) -> Select[Any]:
        return scoped(super().list_query(request), self.model, principal_of(request))

    def details_query(self, request: Request) -> Select[Any]:
        # keeps SQLAdmin's primary-key condition and adds the scope to it
        return scoped(super().details_query(request), self.model, principal_of(request))

    def form_edit_query(self, request: Request) -> Select[Any]:
        return scoped(super().form_edit_query(request), self.model, principal_of(request))

    def count_query(self, request: Request) -> Select[Any]:
        return scoped(super().count_query(request), self.model, principal_of(request))

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
            if rel.key not in data or rel.direction.name != "MANYTOONE":
                continue
            value = data[rel.key]
            target = rel.mapper.class_
            if value in (None, "") or not _scoped_model(target):
                continue
            if not in_scope(session, target, value, principal):
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

    def _save_sync(self, request: Request, pk: str | None, data: dict[str, Any]) -> Any:
        principal = principal_of(request)
        try:
            with transaction() as session:
                if pk is None:
                    obj = self.model()
                else:
                    stmt = scoped(self._stmt_by_identifier(pk), self.model, principal)
                    obj = session.execute(stmt).scalars().first()
                    if obj is None:
                        raise NotFound()
                self.check_foreign_keys(session, data, request)
                obj = Query(self)._set_attributes_sync(session, obj, data)
                self.before_save(session, obj, data, pk is None, request)
                if pk is None:
                    session.add(obj)
                session.flush()
                # the saved row must still be within the user's scope (e.g. not handed to someone else)
                if not in_scope(session, self.model, obj.id, principal):
                    raise UserError("保存后的记录将超出您的数据范围,操作已取消。")
                return obj
        except IntegrityError as exc:
            log.info("save refused by the database: %s", exc.orig)
            raise UserError(friendly_integrity_message(exc)) from None
        except StaleDataError:
            raise Conflict("保存失败:该记录已被其他人修改,请刷新页面查看最新内容后再修改。") from None
        except OperationalError as exc:
            log.warning("save failed: %s", exc.orig)
            raise UserError("数据库暂时繁忙,请稍后重试。") from None

    def _delete_sync(self, request: Request, pk: str) -> None:
        principal = principal_of(request)
        obj: Any = None
        try:
            with transaction() as session:
                stmt = scoped(self._stmt_by_identifier(pk), self.model, principal)
                obj = session.execute(stmt).scalars().first()
                if obj is None:
                    raise NotFound()
                self.before_delete(session, obj, request)
                session.delete(obj)
                session.flush()
        except IntegrityError:
            raise UserError(f"无法删除“{obj}”:仍有其他数据引用它,请先处理这些数据。") from None

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        obj = await anyio.to_thread.run_sync(partial(self._save_sync, request, None, data))
        await self.after_model_change(data, obj, True, request)
        return obj

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        obj = await anyio.to_thread.run_sync(partial(self._save_sync, request, pk, data))
        await self.after_model_change(data, obj, False, request)
        return obj

    async def delete_model(self, request: Request, pk: Any) -> None:
        await anyio.to_thread.run_sync(partial(self._delete_sync, request, str(pk)))


_TABLE_MODELS: dict[str, type] = {}


def _scoped_model(model: type) -> bool:
    return bool(getattr(model, "__scope__", ""))


def _model_for_table(table: str) -> type | None:
    if not _TABLE_MODELS:
        from crm_admin.db import Base

        for mapper in Base.registry.mappers:
            _TABLE_MODELS[str(getattr(mapper.local_table, "name", ""))] = mapper.class_
    return _TABLE_MODELS.get(table)


RowFormatter = Callable[[Any, str], Any]
