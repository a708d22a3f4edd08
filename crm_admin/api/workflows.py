"""Routes that are not a plain collection: the caller, dictionaries, public pools (claim and return
through ``crm_admin.pools.service``, as the pool pages do)."""

# no ``from __future__ import annotations``: FastAPI reads these annotations at run time

import json
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.responses import Response

from crm_admin.api.auth import Caller, requires
from crm_admin.api.problems import Problem
from crm_admin.api.routes import PROBLEMS, SIGNED_IN_EXTRA, WRITE_PROBLEMS, permission_extra
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.db import run_in_transaction, session_factory
from crm_admin.dictionary.models import DictItem, DictType
from crm_admin.pools import service as pools


class MeOut(BaseModel):
    id: int
    username: str
    real_name: str | None
    dept_id: int | None
    roles: list[str]
    data_scope: str
    permissions: list[str]


class DictItemOut(BaseModel):
    value: str
    label: str
    label_en: str | None
    sort: int
    is_active: bool


class DictTypeOut(BaseModel):
    code: str
    name: str
    items: list[DictItemOut]


class DictList(BaseModel):
    items: list[DictTypeOut]


class PoolOut(BaseModel):
    id: int
    name: str
    remark: str | None
    customers: int


class PoolList(BaseModel):
    items: list[PoolOut]


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: list[int] = Field(min_length=1, max_length=500)


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: list[int] = Field(min_length=1, max_length=500)
    reason: str = Field(max_length=500)


class PoolResultOut(BaseModel):
    pool_id: int
    customers: list[int]
    handed_over: dict[str, int]


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json")


def _dictionaries(type_code: str | None) -> list[dict[str, Any]]:
    with session_factory()() as session:
        types = select(DictType).order_by(DictType.code)
        if type_code is not None:
            types = types.where(DictType.code == type_code)
        found = list(session.execute(types).scalars())
        items = select(DictItem).where(DictItem.type_code.in_([t.code for t in found])).order_by(
            DictItem.type_code, DictItem.sort, DictItem.id)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for item in session.execute(items).scalars():
            by_type.setdefault(item.type_code, []).append(
                {"value": item.value, "label": item.label, "label_en": item.label_en, "sort": item.sort,
                 "is_active": item.is_active})
    return [{"code": t.code, "name": t.name, "items": by_type.get(t.code, [])} for t in found]


def _pool_problem(exc: UserError) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "记录不存在或您无权访问。")
    if isinstance(exc, Forbidden):
        return Problem(403, exc.message)
    if isinstance(exc, Conflict):
        return Problem(409, exc.message)
    errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
    return Problem(422, exc.message, errors=errors)


def register(api: FastAPI) -> None:
    @api.get("/me", tags=["当前用户"], summary="令牌所属的用户、角色、数据范围和权限", response_model=None,
             responses={200: {"model": MeOut}, **PROBLEMS}, openapi_extra=SIGNED_IN_EXTRA, operation_id="get_me")
    def me(who: Caller) -> Response:
        p = who.principal
        return _json({"id": p.id, "username": p.username, "real_name": p.real_name, "dept_id": p.dept_id,
                      "roles": sorted(p.roles), "data_scope": p.scope,
                      "permissions": sorted(f"{r}:{a}" for r, a in p.permissions)})

    # the values the forms offer: what a client needs to fill industry, level, stage…
    @api.get("/dictionaries", tags=["数据字典"], summary="全部字典及其取值", response_model=None,
             responses={200: {"model": DictList}, **PROBLEMS}, openapi_extra=SIGNED_IN_EXTRA,
             operation_id="list_dictionaries")
    def dictionaries(who: Caller) -> Response:
        return _json({"items": _dictionaries(None)})

    @api.get("/dictionaries/{type_code}", tags=["数据字典"], summary="一个字典及其取值", response_model=None,
             responses={200: {"model": DictTypeOut}, **PROBLEMS}, openapi_extra=SIGNED_IN_EXTRA,
             operation_id="get_dictionary")
    def dictionary(who: Caller, type_code: Annotated[str, PathParam(max_length=32)]) -> Response:
        found = _dictionaries(type_code)
        if not found:
            raise Problem(404, "记录不存在或您无权访问。")
        return _json(found[0])

    @api.get("/pools", tags=["公海"], summary="我可以使用的公海", response_model=None,
             responses={200: {"model": PoolList}, **PROBLEMS}, openapi_extra=permission_extra("pool", "list"),
             operation_id="list_pools")
    def pool_list(principal: Annotated[Principal, requires("pool", "list")]) -> Response:
        with session_factory()() as session:
            usable = pools.usable_pools(session, principal)
            counts = pools.pool_counts(session, [p.id for p in usable])
            body = [{"id": p.id, "name": p.name, "remark": p.remark, "customers": counts.get(p.id, 0)}
                    for p in usable]
        return _json({"items": body})

    def _run(fn: Any) -> Response:
        try:
            result = run_in_transaction(fn, where="api:pool")
        except UserError as exc:
            raise _pool_problem(exc) from None
        return _json({"pool_id": result.pool_id, "customers": result.customers,
                      "handed_over": dict(result.handed_over)})

    @api.post("/pools/{pool_id}/claim", tags=["公海"], summary="从公海领取客户(全部成功或全部不变)",
              response_model=None, responses={200: {"model": PoolResultOut}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("pool", "claim", "pool"), operation_id="claim_from_pool")
    def claim(request: Request, principal: Annotated[Principal, requires("pool", "claim")],
              pool_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], body: Annotated[ClaimIn, Body()]) -> Response:
        return _run(lambda session: pools.claim_customers(session, principal, pool_id=pool_id,
                                                          customer_ids=body.customer_ids))

    @api.post("/pools/{pool_id}/return", tags=["公海"], summary="把客户退回公海(须填原因)",
              response_model=None, responses={200: {"model": PoolResultOut}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("pool", "return", "pool"), operation_id="return_to_pool")
    def give_back(request: Request, principal: Annotated[Principal, requires("pool", "return")],
                  pool_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
                  body: Annotated[ReturnIn, Body()]) -> Response:
        return _run(lambda session: pools.return_to_pool(session, principal, pool_id=pool_id,
                                                         customer_ids=body.customer_ids, reason=body.reason))
