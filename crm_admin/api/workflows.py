"""Routes that are not a plain collection: the caller, dictionaries, public pools (claim and return
through ``crm_admin.pools.service``, as the pool pages do)."""

# no ``from __future__ import annotations``: FastAPI reads these annotations at run time

import datetime as dt
import json
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Header, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from starlette.responses import Response

from crm_admin.api import collections, idempotency, rows
from crm_admin.api.auth import Caller, requires
from crm_admin.api.problems import Problem
from crm_admin.api.routes import (
    API_PREFIX,
    PROBLEMS,
    SIGNED_IN_EXTRA,
    STALE,
    WRITE_PROBLEMS,
    check_if_match,
    load_row,
    one_response,
    permission_extra,
    refusal,
    row_in_scope,
)
from crm_admin.api.rows import Spec
from crm_admin.care import service as care_service
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.db import run_in_transaction, session_factory
from crm_admin.dictionary.models import DictItem, DictType
from crm_admin.opportunities import service as opportunity_service
from crm_admin.orders import service as order_service
from crm_admin.orders.models import OrderItem
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


# ----- opportunities, care tasks, orders: the services the pages call -----------------------------

class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str = Field(min_length=1, max_length=64)


class ExecuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    care_type: str = Field(min_length=1, max_length=64)
    care_time: dt.datetime | None = None
    detail: str = Field(max_length=70_000)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feedback: str = Field(max_length=70_000)
    status: Literal["done", "cancelled"] = "done"


class ManualCareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int = Field(ge=1, le=2**31 - 1)
    linkman_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    care_type: str = Field(min_length=1, max_length=64)
    care_time: dt.datetime | None = None
    detail: str = Field(max_length=70_000)
    feedback: str | None = Field(default=None, max_length=70_000)


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: int = Field(ge=1, le=2**31 - 1)
    quantity: int = Field(ge=1, le=2**31 - 1)
    unit_price: Decimal | None = None  # none: the product's list price
    discount: Decimal | None = None  # percent of the price paid (100: none)


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int = Field(ge=1, le=2**31 - 1)
    order_date: dt.date
    status: str = Field(default="confirmed", max_length=16)
    remark: str | None = Field(default=None, max_length=70_000)
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)


class OrderLineOut(BaseModel):
    id: int
    product_id: int
    quantity: int
    unit_price: str
    discount: str


class OrderLines(BaseModel):
    items: list[OrderLineOut]


def _service(spec: Spec, principal: Principal, fn: Any, *, status: int = 200, location: bool = False) -> Response:
    """``fn(session)`` (a service of the module, returning the row) as one transaction; the row as answered."""
    try:
        row_id = run_in_transaction(lambda session: int(fn(session).id), where=f"api:{spec.path}")
    except StaleDataError:
        raise Problem(412, STALE) from None
    except UserError as exc:
        raise refusal(spec, exc) from None
    return one_response(spec, principal, row_id, status,
                        location=f"{API_PREFIX}/{spec.path}/{row_id}" if location else None)


def _money(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def register_services(api: FastAPI) -> None:
    opportunities, care, orders = collections.OPPORTUNITIES, collections.CARE_TASKS, collections.ORDERS

    @api.post("/opportunities/{id}/stage", tags=[opportunities.title], summary="调整销售机会阶段(须带 If-Match)",
              response_model=None, responses={200: {"model": rows.output_model(opportunities)}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("opportunity", "edit", "opportunity"), operation_id="move_stage")
    def move_stage(found: Annotated[tuple[Principal, Any], row_in_scope(opportunities, "edit")],
                   body: Annotated[StageIn, Body()],
                   if_match: Annotated[str | None, Header(alias="If-Match", max_length=128)] = None) -> Response:
        principal, row = found
        pk = int(row.id)
        check_if_match(row, if_match)
        try:
            return _service(opportunities, principal, lambda session: opportunity_service.move_stage(
                session, principal, opportunity_id=pk, stage=body.stage, version=int(row.version)))
        except Problem as problem:
            if problem.status == 409:  # changed since it was read: the version did not match
                raise Problem(412, STALE) from None
            raise

    @api.post("/care-tasks", tags=[care.title], summary="手工登记客户关怀", status_code=201, response_model=None,
              responses={201: {"model": rows.output_model(care)}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("customer_care", "create"), operation_id="create_care")
    def create_care(request: Request, principal: Annotated[Principal, requires("customer_care", "create")],
                    body: Annotated[ManualCareIn, Body()],
                    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
                    ) -> Response:
        return idempotency.once(request, principal, idempotency_key, body.model_dump(mode="json"), lambda: _service(
            care, principal, lambda session: care_service.create_manual_care(
                session, principal, customer_id=body.customer_id, linkman_id=body.linkman_id,
                care_type=body.care_type, care_time=body.care_time, detail=body.detail, feedback=body.feedback),
            status=201, location=True))

    @api.post("/care-tasks/{id}/execute", tags=[care.title], summary="执行关怀任务(记录关怀类型、时间和内容)",
              response_model=None, responses={200: {"model": rows.output_model(care)}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("customer_care", "edit", "customer_care"), operation_id="execute_care")
    def execute(found: Annotated[tuple[Principal, Any], row_in_scope(care, "edit")],
                body: Annotated[ExecuteIn, Body()]) -> Response:
        principal, pk = found[0], int(found[1].id)
        return _service(care, principal, lambda session: care_service.execute_care(
            session, principal, pk, care_type=body.care_type, care_time=body.care_time, detail=body.detail))

    @api.post("/care-tasks/{id}/feedback", tags=[care.title], summary="记录客户反馈并结束关怀任务",
              response_model=None, responses={200: {"model": rows.output_model(care)}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("customer_care", "edit", "customer_care"), operation_id="care_feedback")
    def feedback(found: Annotated[tuple[Principal, Any], row_in_scope(care, "edit")],
                 body: Annotated[FeedbackIn, Body()]) -> Response:
        principal, pk = found[0], int(found[1].id)
        return _service(care, principal, lambda session: care_service.record_feedback(
            session, principal, pk, feedback=body.feedback, status=body.status))

    @api.post("/orders", tags=[orders.title], summary="新增订单(含明细;金额为明细合计)", status_code=201,
              response_model=None, responses={201: {"model": rows.output_model(orders)}, **WRITE_PROBLEMS},
              openapi_extra=permission_extra("order", "create"), operation_id="create_order")
    def create_order(request: Request, principal: Annotated[Principal, requires("order", "create")],
                     body: Annotated[OrderIn, Body()],
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
                     ) -> Response:
        typed = order_service.OrderInput(
            customer_id=str(body.customer_id), order_date=body.order_date.isoformat(), status=body.status,
            remark=body.remark or "",
            lines=[order_service.LineInput(product_id=str(line.product_id), quantity=str(line.quantity),
                                           unit_price=_money(line.unit_price), discount=_money(line.discount))
                   for line in body.lines])
        return idempotency.once(request, principal, idempotency_key, body.model_dump(mode="json"), lambda: _service(
            orders, principal, lambda session: order_service.save_order(session, principal, typed),
            status=201, location=True))

    @api.get("/orders/{id}/lines", tags=[orders.title], summary="订单明细", response_model=None,
             responses={200: {"model": OrderLines}, **PROBLEMS},
             openapi_extra=permission_extra("order", "view", "order"), operation_id="order_lines")
    def order_lines(principal: Annotated[Principal, requires("order", "view")],
                    pk: Annotated[int, PathParam(alias="id", ge=1, le=2**31 - 1)]) -> Response:
        load_row(orders, principal, pk, "view")
        with session_factory()() as session:
            items = session.execute(select(OrderItem).where(OrderItem.order_id == pk).order_by(OrderItem.id)).scalars()
            body = [{"id": i.id, "product_id": i.product_id, "quantity": i.quantity,
                     "unit_price": _money(i.unit_price), "discount": _money(i.discount)} for i in items]
        return _json({"items": body})
