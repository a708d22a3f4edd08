"""The routes of ``/api/v1`` made from the collections' declarations, and what they share.

Every collection is declared once (``collections.py``: model, permission resource, fields, filters);
the routes below are made from the declarations. Reads go through the data scope module
(``core.scope.scoped``) with the action they perform; writes go through the very save path of the
admin form of the same model (the model view's ``_save_sync`` / ``_delete_sync``: the module's
validation, owner and foreign-key checks, optimistic locking, the recycle bin, the audit rows), so the
API and the pages cannot disagree.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, which name the
# models made for each collection at run time

import json
from typing import Annotated, Any, Literal

import anyio
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel
from sqlalchemy import select
from starlette.responses import Response

from crm_admin.api import idempotency, rows
from crm_admin.api.auth import requires
from crm_admin.api.problems import Problem
from crm_admin.api.rows import Spec
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.core.scope import scoped
from crm_admin.db import session_factory

API_PREFIX = "/api/v1"
PRECONDITION_REQUIRED = "修改和删除须带 If-Match 头(取自该记录的 ETag)。"
STALE = "该记录已被其他人修改(版本不一致),请重新读取后再修改。"
NOT_FOUND = "记录不存在或您无权访问。"


class FieldError(BaseModel):
    field: str
    message: str


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


def _problems(described: tuple[tuple[int, str], ...]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": text}
            for status, text in described}


PROBLEMS = _problems(((400, "请求无效"), (401, "未认证(缺少、无效、过期或撤销的令牌)"), (403, "没有权限"),
                      (404, "记录不存在或不在您的数据范围内"), (422, "数据校验失败"), (429, "请求过于频繁")))
WRITE_PROBLEMS = {**PROBLEMS, **_problems(((409, "冲突"), (412, "版本不一致"), (428, "缺少 If-Match")))}


def permission_extra(resource: str, action: str, kind: str = "") -> dict[str, Any]:
    """What the route needs, written into the document (the route test reads it from there too)."""
    extra: dict[str, Any] = {"x-permission": f"{resource}:{action}"}
    if kind:
        extra["x-row-kind"] = kind
    return extra


SIGNED_IN_EXTRA = {"x-permission": "signed-in"}


# ----- helpers shared by the routes ---------------------------------------------------------------

def view_of(request: Request, model: type) -> Any:
    """The admin view that saves ``model`` (its form's path is the API's write path)."""
    admin = request.app.state.admin
    for view in admin.views:
        if getattr(view, "model", None) is model:
            return view
    raise LookupError(f"no admin view for {model.__name__}")


def load_row(spec: Spec, principal: Principal, pk: int, action: str = "view") -> Any:
    with session_factory()() as session:
        stmt: Any = scoped(select(spec.model).where(spec.model.id == pk), spec.model,  # type: ignore[attr-defined]
                      principal, action, resource=spec.resource)
        row = session.execute(stmt).scalars().first()
        if row is None:
            raise Problem(404, NOT_FOUND)
        return row


def row_in_scope(spec: Spec, action: str) -> Any:
    """A dependency: ``(principal, row)`` for the row the path's ``{id}`` names, within the scope of
    (spec's resource, ``action``) — resolved before the body is read, so another manager's row answers
    404 whatever was sent."""
    permission = requires(spec.resource, action)

    async def load(principal: Annotated[Principal, permission],
                   pk: Annotated[int, PathParam(alias="id", ge=1, le=2**31 - 1)]) -> tuple[Principal, Any]:
        return principal, await anyio.to_thread.run_sync(load_row, spec, principal, pk, action)

    return Depends(load)


def one_response(spec: Spec, principal: Principal, pk: int, status: int = 200,
                 location: str | None = None) -> Response:
    with session_factory()() as session:
        stmt: Any = scoped(select(spec.model).where(spec.model.id == pk), spec.model,  # type: ignore[attr-defined]
                      principal, "view", resource=spec.resource)
        row = session.execute(stmt).scalars().first()
        if row is None:
            raise Problem(404, NOT_FOUND)
        body = rows.serialize(spec, [row], session, principal)[0]
    headers = {"ETag": rows.etag_of(row)}
    if location:
        headers["Location"] = location
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers=headers)


def relation_keys(model: type) -> dict[str, str]:
    """Foreign-key column → the relationship the form posts it as (``customer_id`` → ``customer``)."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import MANYTOONE

    out: dict[str, str] = {}
    rel: Any
    for rel in inspect(model).relationships:  # type: ignore[union-attr]
        if rel.direction is MANYTOONE and len(rel.local_columns) == 1:
            out[next(iter(rel.local_columns)).key] = rel.key
    return out


def form_data(spec: Spec, data: dict[str, Any]) -> dict[str, Any]:
    """The API's fields as the form posts them: references by their relationship, ids as text."""
    keys = relation_keys(spec.model)
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in keys:
            out[keys[name]] = None if value is None else str(value)
        else:
            out[name] = value
    return out


def field_name(spec: Spec, name: str | None) -> str:
    keys = {rel: col for col, rel in relation_keys(spec.model).items()}
    return keys.get(name or "", name or "")


def refusal(spec: Spec, exc: UserError, *, default: int = 422) -> Problem:
    """A service's refusal as a problem: the form's sentence, with the field it concerns."""
    if isinstance(exc, NotFound):
        return Problem(404, NOT_FOUND)
    if isinstance(exc, Forbidden):
        return Problem(403, exc.message)
    if isinstance(exc, Conflict):
        return Problem(409, exc.message)
    if exc.field:
        return Problem(422, exc.message, errors=[{"field": field_name(spec, exc.field), "message": exc.message}])
    return Problem(default, exc.message)


def check_if_match(row: Any, if_match: str | None) -> None:
    if not if_match:
        raise Problem(428, PRECONDITION_REQUIRED)
    if not rows.matches(if_match, rows.etag_of(row)):
        raise Problem(412, STALE, headers={"ETag": rows.etag_of(row)})


def is_stale(view: Any, exc: Conflict) -> bool:
    return exc.message == getattr(view, "stale_message", None) or exc.message.startswith("保存失败:该记录已被")


# ----- the routes of one collection -----------------------------------------------------------------

def add_collection(api: FastAPI, spec: Spec) -> None:
    item = rows.output_model(spec)
    page = rows.page_model(spec, item)
    base = f"/{spec.path}"
    tag = spec.title
    filter_params = [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
                      "description": getattr(fn, "__doc__", "") or name}
                     for name, fn in spec.filters.items()]

    def list_rows(request: Request, principal: Annotated[Principal, requires(spec.resource, "list")],
                  limit: Annotated[int, Query(ge=1, le=rows.MAX_LIMIT)] = rows.DEFAULT_LIMIT,
                  cursor: Annotated[str | None, Query(max_length=512)] = None,
                  sort: Annotated[Literal["id", "-id", "updated", "-updated"], Query()] = "-id") -> Response:
        stmt: Any = scoped(select(spec.model), spec.model, principal, "list", resource=spec.resource)
        for name, build in spec.filters.items():
            value = request.query_params.get(name)
            if value not in (None, ""):
                clause = build(str(value)[:128], principal)
                if clause is not None:
                    stmt = stmt.where(clause)
        stmt = rows.keyset(stmt, spec.model, sort, cursor, limit)
        with session_factory()() as session:
            found = list(session.execute(stmt).scalars())
            more = len(found) > limit
            found = found[:limit]
            body = {"items": rows.serialize(spec, found, session, principal),
                    "next_cursor": rows.encode_cursor(sort, found[-1]) if more and found else None}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    api.add_api_route(base, list_rows, methods=["GET"], tags=[tag], summary=f"{spec.title}列表",
                      response_model=None, responses={200: {"model": page}, **PROBLEMS},
                      openapi_extra={**permission_extra(spec.resource, "list"), "parameters": filter_params},
                      operation_id=f"list_{spec.path}")

    def get_row(principal: Annotated[Principal, requires(spec.resource, "view")],
                pk: Annotated[int, PathParam(alias="id", ge=1, le=2**31 - 1)]) -> Response:
        return one_response(spec, principal, pk)

    api.add_api_route(base + "/{id}", get_row, methods=["GET"], tags=[tag], summary=f"读取一条{spec.title}",
                      response_model=None, responses={200: {"model": item}, **PROBLEMS},
                      openapi_extra=permission_extra(spec.resource, "view", spec.kind),
                      operation_id=f"get_{spec.path}")

    if not spec.writable:
        return
    create_in = rows.input_model(spec, partial=False)
    patch_in = rows.input_model(spec, partial=True)

    def create_row(request: Request, principal: Annotated[Principal, requires(spec.resource, "create")],
                   body: Annotated[create_in, Body()],  # type: ignore[valid-type]
                   idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
                   ) -> Response:
        data = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]

        def run() -> Response:
            view = view_of(request, spec.model)
            try:
                obj = view._save_sync(request, None, form_data(spec, data))
            except UserError as exc:
                raise refusal(spec, exc) from None
            return one_response(spec, principal, int(obj.id), 201, location=f"{API_PREFIX}{base}/{obj.id}")

        return idempotency.once(request, principal, idempotency_key, data, run)

    api.add_api_route(base, create_row, methods=["POST"], tags=[tag], summary=f"新增{spec.title}",
                      status_code=201, response_model=None, responses={201: {"model": item}, **WRITE_PROBLEMS},
                      openapi_extra=permission_extra(spec.resource, "create"), operation_id=f"create_{spec.path}")

    def update_row(request: Request, principal: Annotated[Principal, requires(spec.resource, "edit")],
                   pk: Annotated[int, PathParam(alias="id", ge=1, le=2**31 - 1)],
                   body: Annotated[patch_in, Body()],  # type: ignore[valid-type]
                   if_match: Annotated[str | None, Header(alias="If-Match", max_length=128)] = None) -> Response:
        row = load_row(spec, principal, pk, "edit")
        check_if_match(row, if_match)
        data = form_data(spec, body.model_dump(exclude_unset=True))  # type: ignore[attr-defined]
        for name in spec.required:
            if name in data and data[name] in (None, ""):
                raise Problem(422, "请求的数据不符合要求。", errors=[{"field": name, "message": "缺少必填字段。"}])
        if spec.versioned:
            data["version"] = str(row.version)  # a change since the read is refused in the save itself
        view = view_of(request, spec.model)
        try:
            view._save_sync(request, str(pk), data)
        except Conflict as exc:
            if is_stale(view, exc):
                raise Problem(412, STALE) from None
            raise refusal(spec, exc) from None
        except UserError as exc:
            raise refusal(spec, exc) from None
        return one_response(spec, principal, pk)

    api.add_api_route(base + "/{id}", update_row, methods=["PATCH"], tags=[tag], summary=f"修改{spec.title}",
                      response_model=None, responses={200: {"model": item}, **WRITE_PROBLEMS},
                      openapi_extra=permission_extra(spec.resource, "edit", spec.kind),
                      operation_id=f"update_{spec.path}")

    if not spec.deletable:
        return

    def delete_row(request: Request, principal: Annotated[Principal, requires(spec.resource, "delete")],
                   pk: Annotated[int, PathParam(alias="id", ge=1, le=2**31 - 1)],
                   if_match: Annotated[str | None, Header(alias="If-Match", max_length=128)] = None) -> Response:
        row = load_row(spec, principal, pk, "delete")
        check_if_match(row, if_match)
        try:
            view_of(request, spec.model)._delete_sync(request, str(pk))
        except UserError as exc:
            raise refusal(spec, exc, default=409) from None
        return Response(status_code=204)

    api.add_api_route(base + "/{id}", delete_row, methods=["DELETE"], tags=[tag],
                      summary=f"删除{spec.title}(移入回收站)", status_code=204, response_model=None,
                      responses={204: {"description": "已删除,可在回收站恢复"}, **WRITE_PROBLEMS},
                      openapi_extra=permission_extra(spec.resource, "delete", spec.kind),
                      operation_id=f"delete_{spec.path}")
