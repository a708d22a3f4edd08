"""Customer transfer (客户转移): hand one or many customers to another manager in one transaction.

The customer row is the lock: it is read ``FOR UPDATE`` within the operator's scope and written with
its optimistic ``version``, so of two transfers of the same customer at once exactly one wins and the
other is refused with a message. Everything that follows the manager (what the modules register as
``hand_over`` in ``core.customer_records``: pending care tasks, care plans, open opportunities …) moves
with the customer in the same transaction, with audit rows labelled ``transfer``. Services never
commit: the caller owns the unit of work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.exc import StaleDataError

from crm_admin.accounts.models import SysUser
from crm_admin.core import audit, customer_records, notify, search
from crm_admin.core.errors import Conflict, Forbidden, NotFound, UserError
from crm_admin.core.principal import Principal
from crm_admin.core.scope import TRANSFER, check_assignee, scoped, sees_user
from crm_admin.customers.models import Customer
from crm_admin.db import utcnow
from crm_admin.transfers.models import CustomerTransfer

REASON_MIN = 2
REASON_MAX = 500
MAX_BATCH = 5000  # a hand-over larger than this is split by the caller


@dataclass
class TransferResult:
    transfers: list[int] = field(default_factory=list)  # customer_transfer ids
    customers: list[int] = field(default_factory=list)
    # what followed the manager: hand-over key ("care_tasks") → rows
    handed_over: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.customers)

    def add(self, other: TransferResult) -> None:
        self.transfers += other.transfers
        self.customers += other.customers
        for key, n in other.handed_over.items():
            self.handed_over[key] = self.handed_over.get(key, 0) + n

    def handed_over_lines(self) -> list[tuple[int, str]]:
        """(rows, unit) of what moved with the customers: (3, "条待办关怀")."""
        units = customer_records.hand_over_units()
        return [(n, units.get(key, key)) for key, n in self.handed_over.items()]


def clean_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if len(text) < REASON_MIN:
        raise UserError(f"请填写转移原因(至少 {REASON_MIN} 个字)。", field="reason")
    if len(text) > REASON_MAX:
        raise UserError(f"转移原因不能超过 {REASON_MAX} 个字。", field="reason")
    return text


FORM_REASON = "在客户资料中更换客户经理"


def reassign_in_form(
    session: Session, principal: Principal, customer: Customer, old_manager_id: int | None,
    new_manager: SysUser | None,
) -> None:
    """An administrator changed the manager in the customer form: the same hand-over as a transfer.

    The new manager must be able to own customers; a ``customer_transfer`` row keeps the history
    complete (none when the customer is left without a manager) and the open work follows.
    """
    if new_manager is not None:
        check_assignee(session, principal, new_manager.id, field="manager")
    now = utcnow()
    new_id = new_manager.id if new_manager is not None else None
    if new_id is not None:
        session.add(CustomerTransfer(customer_id=customer.id, old_manager_id=old_manager_id, new_manager_id=new_id,
                                     reason=FORM_REASON, transferred_at=now, operator_id=principal.id))
    handed = customer_records.hand_over_open_work(session, [customer.id], new_id, now)
    audit.record(
        session, "transfer", resource="customer", resource_id=customer.id,
        changes={"customers": [customer.id], "old_manager_ids": {str(customer.id): old_manager_id},
                 "new_manager_id": new_id, "reason": FORM_REASON, **handed},
        detail=f"在客户资料中把“{customer.name}”交给 {new_manager}" if new_manager is not None
        else f"在客户资料中取消“{customer.name}”的客户经理",
    )


def _check_operator(principal: Principal) -> None:
    if not principal.can("customer", "transfer"):
        raise Forbidden("您没有转移客户的权限。")


def _new_manager(session: Session, principal: Principal, new_manager_id: int | None) -> SysUser:
    if not new_manager_id:
        raise UserError("请选择新的客户经理。", field="new_manager_id")
    user: SysUser = check_assignee(session, principal, new_manager_id, purpose=TRANSFER,
                                   field="new_manager_id", label="新客户经理")
    return user


def transfer_customers(
    session: Session,
    principal: Principal,
    *,
    customer_ids: Iterable[int],
    new_manager_id: int | None,
    reason: str | None,
    expected_versions: Mapping[int, int] | None = None,
    now: dt.datetime | None = None,
) -> TransferResult:
    """Move ``customer_ids`` to ``new_manager_id``; all of them or none.

    ``expected_versions`` (customer id → the ``version`` the operator saw) makes a transfer of a
    customer someone else changed or moved meanwhile fail instead of silently applying twice.
    """
    _check_operator(principal)
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise UserError("请至少选择一个客户。", field="customer_id")
    if len(ids) > MAX_BATCH:
        raise UserError(f"一次最多转移 {MAX_BATCH} 个客户。")
    text = clean_reason(reason)
    target = _new_manager(session, principal, new_manager_id)
    now = now or utcnow()

    rows = _lock_customers(session, principal, ids, target, expected_versions or {})
    session.info[audit.INFO_ACTION] = "transfer"
    result = TransferResult()
    olds = {customer.id: customer.manager_id for customer in rows}
    result.transfers = _move(session, principal, rows, target, text, now)
    result.customers = [customer.id for customer in rows]

    # What follows the manager moves in bulk: the audit rows above carry the customer change, one
    # summary row per batch records what moved with it.
    result.handed_over = customer_records.hand_over_open_work(session, ids, target.id, now)
    audit.record(
        session,
        "transfer",
        resource="customer",
        resource_id=",".join(str(i) for i in ids)[:64],
        changes={
            "customers": ids,
            "old_manager_ids": {str(k): v for k, v in olds.items()},
            "new_manager_id": target.id,
            "reason": text,
            **result.handed_over,
        },
        detail=f"转移 {len(ids)} 个客户给 {target}",
    )
    session.flush()
    if target.id != principal.id and result.transfers:
        names = [c.name for c in rows]
        link = (notify.Link("admin:view-customer-customer_360", {"pk": ids[0]}) if len(ids) == 1
                else notify.Link("admin:list", {"identity": "customer"}))
        body = "、".join(names[:10]) + (f" 等 {len(names)} 个客户" if len(names) > 10 else "")
        notify.notify(session, "transferred", [target.id], f"{principal.username} 转给您 {len(ids)} 个客户",
                      f"{body}\n原因:{text}", link, dedupe_key=f"transferred:{result.transfers[0]}")
    return result


def _lock_customers(session: Session, principal: Principal, ids: list[int], target: SysUser,
                    expected_versions: Mapping[int, int]) -> list[Customer]:
    """The customers, locked in id order (two batches overlapping cannot deadlock), each checked on
    its locked, current version: a customer just moved away is no longer the operator's."""
    rows = list(session.execute(
        # a customer in a public pool leaves it by a claim or an assignment (crm_admin/pools)
        scoped(select(Customer).where(Customer.id.in_(ids), Customer.pool_id.is_(None)), Customer, principal,
               "transfer")
        .order_by(Customer.id)
        .with_for_update()
    ).scalars().all())
    found = {c.id for c in rows}
    if any(i not in found for i in ids):
        raise NotFound("所选客户不存在、已被转移,或不在您的数据范围内,请刷新页面后重试。")
    for customer in rows:
        seen = expected_versions.get(customer.id)
        if seen is not None and int(seen) != customer.version:
            raise Conflict(
                f"客户“{customer.name}”刚刚已被其他人转移或修改,本次转移未执行,请刷新页面后重试。"
            )
        if customer.manager_id == target.id:
            raise UserError(f"客户“{customer.name}”已由 {target} 负责,无需转移。")
    return rows


def _move(session: Session, principal: Principal, rows: list[Customer], target: SysUser,
          reason: str | None, now: dt.datetime) -> list[int]:
    """Give each customer to ``target`` with its transfer record; the records' ids."""
    records: list[CustomerTransfer] = []
    try:
        for customer in rows:
            record = CustomerTransfer(
                customer_id=customer.id, old_manager_id=customer.manager_id, new_manager_id=target.id,
                reason=reason, transferred_at=now, operator_id=principal.id,
            )
            customer.manager_id = target.id
            session.add(record)
            records.append(record)
        session.flush()
    except StaleDataError:
        raise Conflict("所选客户刚刚已被其他人转移或修改,本次转移未执行,请刷新页面后重试。") from None
    return [r.id for r in records]


def hand_over_customers(
    session: Session,
    principal: Principal,
    *,
    from_user_id: int,
    to_user_id: int,
    reason: str | None,
) -> TransferResult:
    """Hand every customer of ``from_user_id`` (e.g. an employee who leaves) to ``to_user_id``.

    Whoever may transfer all of that employee's customers may hand them over: the employee is within
    the scope of the operator's ``customer`` / ``transfer`` permission (an administrator: anyone; a sales
    lead with that scope: their team).
    """
    _check_operator(principal)
    if from_user_id == to_user_id:
        raise UserError("交接双方不能是同一个人。", field="to_user_id")
    if session.get(SysUser, from_user_id) is None:
        raise UserError("请选择要交接客户的员工。", field="from_user_id")
    if not sees_user(principal, from_user_id, "customer", "transfer"):
        raise Forbidden("该员工不在您转移客户的数据范围内,不能交接其客户。")
    ids = list(
        session.execute(select(Customer.id).where(Customer.manager_id == from_user_id)).scalars()
    )
    if not ids:
        raise UserError("该员工名下没有客户,无需交接。")
    result = TransferResult()
    # Batches keep each IN list and lock set bounded; they share the one transaction.
    for start in range(0, len(ids), MAX_BATCH):
        part = transfer_customers(
            session, principal, customer_ids=ids[start:start + MAX_BATCH],
            new_manager_id=to_user_id, reason=reason,
        )
        result.add(part)
    # their open work on customers someone else manages goes to each customer's current manager
    customer_records.hand_over_leftovers(session, from_user_id, utcnow())
    return result


# ----- reading -------------------------------------------------------------------------------

@dataclass
class TransferFilter:
    customer_id: int | None = None
    customer: str = ""  # name or code contains
    old_manager_id: int | None = None
    new_manager_id: int | None = None
    operator_id: int | None = None
    date_from: dt.datetime | None = None  # UTC bounds
    date_to: dt.datetime | None = None


def transfer_query(principal: Principal, flt: TransferFilter | None = None) -> Select[*tuple[Any, ...]]:
    """Transfer records within the principal's scope (they follow the customer), newest first."""
    flt = flt or TransferFilter()
    old = aliased(SysUser)
    new = aliased(SysUser)
    op = aliased(SysUser)
    stmt = (
        select(
            CustomerTransfer.id,
            CustomerTransfer.customer_id,
            Customer.code.label("customer_code"),
            Customer.name.label("customer_name"),
            func.coalesce(func.nullif(old.real_name, ""), old.username).label("old_manager"),
            func.coalesce(func.nullif(new.real_name, ""), new.username).label("new_manager"),
            func.coalesce(func.nullif(op.real_name, ""), op.username).label("operator"),
            CustomerTransfer.reason,
            CustomerTransfer.transferred_at,
        )
        .join(Customer, Customer.id == CustomerTransfer.customer_id)
        .outerjoin(old, old.id == CustomerTransfer.old_manager_id)
        .outerjoin(new, new.id == CustomerTransfer.new_manager_id)  # none: returned to a public pool
        .outerjoin(op, op.id == CustomerTransfer.operator_id)
    )
    stmt = scoped(stmt, CustomerTransfer, principal, "list")
    conds = []
    if flt.customer_id:
        conds.append(CustomerTransfer.customer_id == flt.customer_id)
    if flt.customer and (found := search.match_now(Customer, flt.customer)) is not None:
        conds.append(found)
    if flt.old_manager_id:
        conds.append(CustomerTransfer.old_manager_id == flt.old_manager_id)
    if flt.new_manager_id:
        conds.append(CustomerTransfer.new_manager_id == flt.new_manager_id)
    if flt.operator_id:
        conds.append(CustomerTransfer.operator_id == flt.operator_id)
    if flt.date_from:
        conds.append(CustomerTransfer.transferred_at >= flt.date_from)
    if flt.date_to:
        conds.append(CustomerTransfer.transferred_at < flt.date_to)
    if conds:
        stmt = stmt.where(and_(*conds))
    return stmt.order_by(CustomerTransfer.transferred_at.desc(), CustomerTransfer.id.desc())


def list_transfers(
    session: Session, principal: Principal, flt: TransferFilter, *, page: int = 1, page_size: int = 50
) -> tuple[list[Any], int]:
    stmt = transfer_query(principal, flt)
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = session.execute(stmt.limit(page_size).offset((max(page, 1) - 1) * page_size)).all()
    return list(rows), int(total)
