"""Admin views of the orders (transaction history).

An order is created and edited in one form with its lines (``order_form``): SQLAdmin's own
create/edit of orders lead there (``own_form_routes``). The order's details page shows its lines;
the line list (订单明细) is read-only — lines change only inside their order's form.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from sqlalchemy import Select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from crm_admin.core.errors import Conflict, UserError, friendly_db_error
from crm_admin.core.formatting import local_now
from crm_admin.core.pages import base_context, run_sync, url_path
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmModelView, ReadOnlyModelView, principal_of, scoped_ref
from crm_admin.customers.models import Customer
from crm_admin.db import run_in_transaction, session_factory
from crm_admin.orders import service
from crm_admin.orders.models import CustomerOrder, OrderItem

log = logging.getLogger(__name__)

LINE_FIELDS = ("item_id", "product_id", "quantity", "unit_price", "discount")
# header fields and five per line: a long order is one legitimate post
MAX_FORM_FIELDS = len(LINE_FIELDS) * service.MAX_LINES + 20
FORM_ROUTES = ("admin:view-customer-order-order_new", "admin:view-customer-order-order_edit")


def _money(value: Any) -> str:
    return f"{value:,.2f}"


class OrderAdmin(CrmModelView, model=CustomerOrder):
    name = "订单"
    name_plural = "交易历史"
    icon = "fa-solid fa-file-invoice"
    category = "客户管理"
    own_form_routes: ClassVar[tuple[str, str] | None] = FORM_ROUTES
    details_template = "orders/details.html"
    column_list = [CustomerOrder.order_no, CustomerOrder.customer, CustomerOrder.order_date,
                   CustomerOrder.amount, CustomerOrder.status, CustomerOrder.manager]
    column_export_list = ["order_no", "customer", "order_date", "amount", "status", "manager", "remark"]
    column_details_list = ["order_no", "customer", "order_date", "amount", "status", "manager", "remark",
                           "created_at"]
    column_labels = {
        "order_no": "订单号", "customer": "客户", "order_date": "下单日期", "amount": "金额",
        "status": "状态", "manager": "客户经理", "remark": "备注",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_choice_labels = {"status": service.STATUS_LABELS}
    column_formatters = {
        CustomerOrder.customer: lambda m, a: m.customer.name if m.customer else "",
        CustomerOrder.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        CustomerOrder.amount: lambda m, a: _money(m.amount),
    }
    column_formatters_detail = {
        CustomerOrder.status: lambda m, a: service.STATUS_LABELS.get(m.status, m.status),
        CustomerOrder.amount: lambda m, a: _money(m.amount),
    }
    column_searchable_list = [CustomerOrder.order_no]
    column_sortable_list = [CustomerOrder.order_date, CustomerOrder.amount]
    column_default_sort = [(CustomerOrder.order_date, True)]
    # SQLAdmin's form is not used (create/edit lead to the order form); the customer look-up is: the
    # order form's customer picker asks this view's scoped look-up
    form_columns = ["customer", "order_date", "status", "remark"]
    form_ajax_refs = {"customer": scoped_ref(Customer, ["name", "code"])}

    def details_query(self, request: Request) -> Select[Any]:
        return super().details_query(request).options(
            selectinload(CustomerOrder.items).selectinload(OrderItem.product))

    def order_lines(self, order: CustomerOrder) -> list[service.ShownLine]:
        """The details page's table of lines (``details_query`` loaded them with their products)."""
        return service.shown_lines(order)

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        session.refresh(obj, ["items"])  # the lines go with their order, each audited

    # ----- the order form ------------------------------------------------------------------------
    @route("/new", methods=["GET", "POST"], permission=("order", "create"))
    async def order_new(self, request: Request) -> Response:
        return await self._order_form(request, None)

    @route("/{pk:int}/form", methods=["GET", "POST"], permission=("order", "edit"), row=(CustomerOrder, "pk"))
    async def order_edit(self, request: Request) -> Response:
        return await self._order_form(request, int(request.path_params["pk"]))

    @route("/products", permission=(("order", "create"), ("order", "edit")))
    async def order_products(self, request: Request) -> Response:
        """The line's product picker: active products, with the list price the line takes."""
        term = str(request.query_params.get("term", ""))[:64]
        return JSONResponse({"results": await run_sync(_search_products, term)})

    async def _order_form(self, request: Request, order_id: int | None) -> Response:
        principal = principal_of(request)
        if request.method == "POST":
            data = _typed(await request.form(max_fields=MAX_FORM_FIELDS))
            try:
                saved = await run_sync(_save, principal, data, order_id)
            except UserError as exc:
                await run_sync(_fill_labels, principal, data)
                return await self._render(request, data, order_id, error=exc.message, field=exc.field,
                                          status=exc.status_code)
            return RedirectResponse(url_path(request, "admin:details", identity=self.identity, pk=saved,
                                             query={"saved": "1"}), status_code=303)
        if order_id is None:
            data = service.OrderInput(order_date=local_now().date().isoformat(), lines=[service.LineInput(quantity="1")])
        else:
            data = await run_sync(_load, principal, order_id)
        return await self._render(request, data, order_id)

    async def _render(self, request: Request, data: service.OrderInput, order_id: int | None, *,
                      error: str = "", field: str | None = None, status: int = 200) -> Response:
        order_no = await run_sync(_order_no, order_id) if order_id is not None else ""
        title = "编辑订单" if order_id is not None else "新建订单"
        if order_id is not None:
            action = url_path(request, FORM_ROUTES[1], pk=order_id)
            back = url_path(request, "admin:details", identity=self.identity, pk=order_id)
        else:
            action = url_path(request, FORM_ROUTES[0])
            back = url_path(request, "admin:list", identity=self.identity)
        ctx = base_context(
            request, title, order_no=order_no,
            form=data, error=error, error_field=field or "", statuses=list(service.STATUS_LABELS.items()),
            action=action, back=back, max_lines=service.MAX_LINES,
            customer_lookup=url_path(request, "admin:ajax_lookup", identity=self.identity),
            product_lookup=url_path(request, "admin:view-customer-order-order_products"),
        )
        return await self.templates.TemplateResponse(request, "orders/order_form.html", ctx, status_code=status)


def _typed(raw: FormData) -> service.OrderInput:
    """The posted form as typed (bounded), lines zipped field by field."""
    def text(key: str, limit: int = 64) -> str:
        return str(raw.get(key) or "")[:limit]

    columns = {name: [str(v)[:64] for v in raw.getlist(name)] for name in LINE_FIELDS}
    count = min(max((len(v) for v in columns.values()), default=0), service.MAX_LINES + 1)
    lines = [service.LineInput(**{name: (values[i] if i < len(values) else "") for name, values in columns.items()})
             for i in range(count)]
    return service.OrderInput(customer_id=text("customer"), order_date=text("order_date", 32),
                              status=text("status", 16), remark=text("remark", 70_000),
                              version=text("version", 16), lines=lines)


def _save(principal: Principal, data: service.OrderInput, order_id: int | None) -> int:
    """Save the order with its lines, run again on a passing database error (crm_admin/retry.py); a
    database error left after that becomes the form's message, like any other refusal."""
    try:
        return run_in_transaction(lambda session: service.save_order(session, principal, data, order_id=order_id).id,
                                  where="save:order")
    except UserError:
        raise
    except StaleDataError:
        raise Conflict(service.STALE_MESSAGE) from None
    except SQLAlchemyError as exc:
        log.warning("order save failed", exc_info=True)
        raise UserError(friendly_db_error(exc)) from None
    except Exception as exc:
        log.exception("order save failed")
        raise UserError(friendly_db_error(exc)) from None


def _load(principal: Principal, order_id: int) -> service.OrderInput:
    with session_factory()() as session:
        return service.load_form(session, principal, order_id)[1]


def _fill_labels(principal: Principal, data: service.OrderInput) -> None:
    with session_factory()() as session:
        service.labels_for(session, principal, data)


def _order_no(order_id: int) -> str:
    with session_factory()() as session:
        order = session.get(CustomerOrder, order_id)
        return order.order_no if order is not None else ""


def _search_products(term: str) -> list[dict[str, Any]]:
    with session_factory()() as session:
        return service.search_products(session, term)


def _discount(m: Any, _a: Any) -> str:
    return service.format_discount(m.discount)


class OrderItemAdmin(ReadOnlyModelView, model=OrderItem):
    """Every order line, read-only (what sold, to whom: filter, search, export); a line is changed in
    its order's form."""

    name = "订单明细"
    icon = "fa-solid fa-list"
    category = "客户管理"
    column_list = [OrderItem.order, OrderItem.product, OrderItem.quantity, OrderItem.unit_price,
                   OrderItem.discount]
    column_export_list = ["order", "product", "quantity", "unit_price", "discount"]
    column_details_list = ["order", "product", "quantity", "unit_price", "discount", "created_at"]
    column_labels = {"order": "订单", "product": "产品", "quantity": "数量", "unit_price": "单价",
                     "discount": "折扣(%)", "created_at": "创建时间", "updated_at": "更新时间"}
    column_formatters = {OrderItem.discount: _discount}
    column_formatters_detail = {OrderItem.discount: _discount}
    # a line carries no copy of its customer's manager: a team's lines are found by reading them in
    # key order, each checked against the scope (core/listing.py ``_walked_keys``)
    walk_max_examined = 40_000


VIEWS = [OrderAdmin, OrderItemAdmin]

