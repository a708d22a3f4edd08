"""Public pools (公海): customers nobody works, waiting to be claimed (领取) or assigned (分配).

A customer in a pool has ``customer.pool_id`` set and no manager. Who may see and claim from a pool is
``customer_pool_access`` (departments, roles; none: everyone who may claim); how many customers a user
may hold and claim per day is ``customer_pool_limit`` per role, else the pool's own numbers. Every
move in or out of a pool is a ``customer_pool_log`` row (history, daily claim counts, the report).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, aliased, mapped_column
from sqlalchemy.orm.util import identity_key

from crm_admin.core import masking
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.customers.models import Customer, OfCustomer
from crm_admin.db import Base, Timestamped, utcnow

# how a customer entered or left a pool
RETURN = "return"  # 退回: its manager (or a lead) gave it back, with a reason
RECLAIM = "reclaim"  # 自动回收: a reclaim rule moved it
CLAIM = "claim"  # 领取: a user took it
ASSIGN = "assign"  # 分配: a lead or an administrator gave it to someone
KINDS_IN = (RETURN, RECLAIM)
KINDS_OUT = (CLAIM, ASSIGN)
LOG_KIND_LABELS = Labels({RETURN: "退回", RECLAIM: "自动回收", CLAIM: "领取", ASSIGN: "分配"})


class CustomerPool(Timestamped, Base):
    __tablename__ = "customer_pool"
    __resource__ = "pool"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    remark: Mapped[str | None] = mapped_column(String(500))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # the customers' phone numbers and contacts are masked for everyone while they are in the pool
    mask_contacts: Mapped[bool] = mapped_column(Boolean, default=True)
    # the pool's default limits (a role without a customer_pool_limit row); None: unlimited
    hold_limit: Mapped[int | None] = mapped_column(Integer)  # customers a user may manage in all
    daily_claim_limit: Mapped[int | None] = mapped_column(Integer)  # claims from this pool per company day

    def __str__(self) -> str:
        return self.name


class CustomerPoolAccess(Timestamped, Base):
    """One department (with its sub-departments) or one role allowed on a pool. A pool without rows is
    open to everyone who may claim; with department rows the user's department must be one of them (or
    under one), with role rows the user must hold one of the roles."""

    __tablename__ = "customer_pool_access"
    __resource__ = "pool"

    pool_id: Mapped[int] = mapped_column(ForeignKey("customer_pool.id"), index=True)
    dept_id: Mapped[int | None] = mapped_column(ForeignKey("sys_dept.id"))
    role_id: Mapped[int | None] = mapped_column(ForeignKey("sys_role.id"))


class CustomerPoolLimit(Timestamped, Base):
    """A role's limits on a pool (None: unlimited), instead of the pool's defaults."""

    __tablename__ = "customer_pool_limit"
    __resource__ = "pool"

    pool_id: Mapped[int] = mapped_column(ForeignKey("customer_pool.id"))
    role_id: Mapped[int] = mapped_column(ForeignKey("sys_role.id"))
    hold_limit: Mapped[int | None] = mapped_column(Integer)
    daily_claim_limit: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("pool_id", "role_id"),)


class CustomerPoolLog(OfCustomer, Timestamped, Base):
    """A customer entering (return, reclaim) or leaving (claim, assign) a pool."""

    __tablename__ = "customer_pool_log"
    __resource__ = "pool"

    pool_id: Mapped[int] = mapped_column(ForeignKey("customer_pool.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # whose customer it was (return, reclaim) or who got it (claim, assign)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))  # None: a job
    reason: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_customer_pool_log_customer_id_at", "customer_id", "at"),
        Index("ix_customer_pool_log_pool_id_at_kind", "pool_id", "at", "kind"),
        Index("ix_customer_pool_log_user_id_kind_at", "user_id", "kind", "at", "pool_id"),
    )


def _masked_in_pools(session: Any, _principal: Principal, customer_ids: Collection[int]) -> set[int]:
    """Customers in a pool whose ``mask_contacts`` is on are masked for everyone until claimed."""
    ids = sorted(_maybe_in_a_pool(session, customer_ids))
    out: set[int] = set()
    for start in range(0, len(ids), 1000):
        out.update(session.execute(
            select(Customer.id).join(CustomerPool, CustomerPool.id == Customer.pool_id)
            .where(Customer.id.in_(ids[start:start + 1000]), CustomerPool.mask_contacts.is_(True))
        ).scalars())
    return out


def _maybe_in_a_pool(session: Any, customer_ids: Collection[int]) -> list[int]:
    """The ids not already known (loaded in ``session``) to be outside every pool: a page showing
    customers it has loaded (the 360° page, a details page) costs no statement for the rule."""
    identity_map = getattr(session, "identity_map", None)
    if identity_map is None:
        return list(customer_ids)
    unknown = []
    for customer_id in customer_ids:
        loaded = identity_map.get(identity_key(Customer, customer_id))
        if loaded is None or loaded.pool_id is not None:
            unknown.append(customer_id)
    return unknown


def _masked_in_pools_clause(_principal: Principal, customer_id: Any) -> Any:
    """The same rule as a condition on a customer id column (what a search may match)."""
    pooled = aliased(Customer)
    return customer_id.in_(
        select(pooled.id).join(CustomerPool, CustomerPool.id == pooled.pool_id)
        .where(CustomerPool.mask_contacts.is_(True)).correlate(None))


masking.register_customer_rule(_masked_in_pools, clause=_masked_in_pools_clause)
