"""Customer master record (客户档案)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    and_,
    event,
    func,
    inspect,
    not_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.core import masking, search, totals
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.core.scope import (
    narrower_than_widest,
    owned_by,
    owner_clause,
    register_scope_kind,
    resource_of,
    sees_everyone,
    sees_user,
)
from crm_admin.db import Base, Timestamped

CUSTOMER_STATUSES = ("potential", "active", "at_risk", "lost")
STATUS_LABELS = Labels({"potential": "潜在客户", "active": "成交客户", "at_risk": "流失风险", "lost": "已流失"})


class Customer(Timestamped, Base):
    __tablename__ = "customer"
    __resource__ = "customer"
    __scope__ = "owner"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    # Normalised name (width, case, spaces, legal-form suffixes folded) for duplicate detection.
    name_key: Mapped[str] = mapped_column(String(128), default="", index=True)
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    industry: Mapped[str | None] = mapped_column(String(64), info={"dict": "industry"})
    source: Mapped[str | None] = mapped_column(String(64), info={"dict": "customer_source"})
    level: Mapped[str | None] = mapped_column(String(64), info={"dict": "customer_level"})
    status: Mapped[str] = mapped_column(String(16), default="potential")
    region: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(128))
    website: Mapped[str | None] = mapped_column(String(255))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    last_contact_at: Mapped[dt.datetime | None]
    last_order_at: Mapped[dt.datetime | None]
    remark: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # in a public pool (公海, crm_admin/pools): no manager meanwhile; since when (UTC)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("customer_pool.id"))
    pool_entered_at: Mapped[dt.datetime | None]

    manager: Mapped[SysUser | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_customer_manager_id_created_at", "manager_id", "created_at"),
        Index("ix_customer_manager_id_name", "manager_id", "name"),
        Index("ix_customer_name", "name"),
        Index("ix_customer_created_at", "created_at"),
        Index("ix_customer_last_contact_at", "last_contact_at"),
        Index("ix_customer_status", "status"),
        Index("ix_customer_level", "level"),
        # migration 0005 (performance): the combined query and the dashboard's at-risk list
        Index("ix_customer_industry_level_status_created_at", "industry", "level", "status", "created_at"),
        Index("ix_customer_manager_id_status_last_contact_at", "manager_id", "status", "last_contact_at"),
        # migration 0019 (public pools): a pool's customers, longest or newest in the pool first; the
        # pool page's filters and counts read the index alone
        Index("ix_customer_pool_id_pool_entered_at_covering", "pool_id", "pool_entered_at", "id", "industry", "level",
              "region"),
    )

    def __str__(self) -> str:
        return self.name


class SavedQuery(Timestamped, Base):
    """A user's named combined query (the list URL's query string), e.g. "我的 A 级 30 天未联系"."""

    __tablename__ = "saved_query"
    __resource__ = "saved_query"

    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"))
    resource: Mapped[str] = mapped_column(String(64), default="customer")
    name: Mapped[str] = mapped_column(String(64))
    query_string: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("user_id", "resource", "name"),)

    def __str__(self) -> str:
        return self.name


def _reached_through_customer(model: type, ids: frozenset[int] | None) -> ColumnElement[bool]:
    """Rows hanging off a customer (``customer_id``) are reached through the customer's manager."""
    return model.customer_id.in_(select(Customer.id).where(owned_by(Customer.manager_id, ids)))  # type: ignore[attr-defined]


register_scope_kind("customer", _reached_through_customer)


# found by any part of the name, its pinyin, and any 4+ digits (core/search.py)
search.register(Customer, kind=1, names=("name",), digits=("phone", "code"), prefixes=("code", "credit_code"))

# personal data shown masked to whoever may not see it in full (core/masking.py)
masking.register_personal(Customer, customer_key="id", phone=masking.mask_phone, email=masking.mask_email,
                          address=masking.mask_text)


def _outside_sensitive_scope(session: Session, principal: Principal, ids: Collection[int]) -> set[int]:
    """The permission to see personal data has a data scope of its own (a lead may see the team's
    customers and their contacts' phones only for their own): customers managed by someone outside it
    are masked. Customers without a manager (a pool's) are left to the rules of whoever holds them."""
    resource, action = masking.SENSITIVE_PERMISSION
    if not narrower_than_widest(principal, resource, action):
        return set()  # every customer the principal can reach is within the permission's scope
    rows = session.execute(select(Customer.id, Customer.manager_id).where(Customer.id.in_(sorted(ids)))).all()
    return {cid for cid, manager_id in rows
            if manager_id is not None and not sees_user(principal, manager_id, resource, action)}


def _outside_sensitive_scope_clause(principal: Principal, customer_id: Any) -> ColumnElement[bool] | None:
    """The same rule as a condition on a customer id column (what a search may match)."""
    resource, action = masking.SENSITIVE_PERMISSION
    if not narrower_than_widest(principal, resource, action):
        return None
    other = aliased(Customer)
    return customer_id.in_(
        select(other.id).where(other.manager_id.is_not(None),
                               not_(owner_clause(other.manager_id, principal, resource=resource, action=action)))
        .correlate(None))


masking.register_customer_rule(_outside_sensitive_scope, clause=_outside_sensitive_scope_clause)


class OfCustomer:
    """A record hanging off a customer (its contacts, follow-ups, care, opportunities, alerts …): the
    ``customer_id`` it hangs by (the table's first column) and the customer's scope — whoever sees the
    customer sees its records (a model may widen it with a kind of its own). Each model declares its
    ``customer`` relationship itself, first among its relations, as the pages list them."""

    __scope__ = "customer"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), sort_order=-1)


# ----- the customer's manager, carried by the records a team's counts read --------------------------
# A sales lead's scope reaches a record through its customer: ``customer_id IN (SELECT id FROM customer
# WHERE manager_id IN <the team>)``, one index probe per customer of the team (23,600 for a department of
# the standard data set: 40–100 ms per count). The records those counts read (open opportunities, due
# follow-ups, open churn alerts) also carry their customer's current manager, kept equal to it in the
# same transaction as every write that could change it, so that "the team's records" is one index range
# per manager.


class CarriesCustomerManager:
    """A record hanging off a customer that also carries the customer's manager (``customer_manager_id``).

    It always equals ``customer.manager_id`` of the row's customer (NULL when the customer has none):
    - a new row, or a row moved to another customer, takes it from the customer, read with a shared lock
      (a transfer committing meanwhile waits, or is waited for), whatever the caller set;
    - a flush that changes customers' managers (transfer, the customer form, a hand-over) rewrites it on
      their rows, in the same transaction;
    - writes that bypass the ORM set it themselves: a merge moving rows (``follow_customers``), the churn
      evaluation's bulk insert, ``crm-admin generate`` and the migration that added it.
    ``crm-admin manager-copies`` recomputes it from the customers and reports (``--fix``: corrects) any row
    that differs. A change of ``customer.manager_id`` by a plain SQL UPDATE must call
    ``follow_customers`` in the same transaction.

    Counting by it (``by_customer_manager``) gives exactly the rows of the customer scope; the rows
    themselves are still loaded through the customer scope.
    """

    customer_manager_id: Mapped[int | None] = mapped_column()
    # whom the customer scope goes through, carried on the row (``core.scope.owner_partition``): list
    # pages find a team's rows and count them by it, and read the rows shown through the customer scope
    __scope_owner__ = "customer_manager_id"


def carriers() -> list[type]:
    """Every model whose rows carry their customer's manager."""
    return sorted((m.class_ for m in Base.registry.mappers if issubclass(m.class_, CarriesCustomerManager)),
                  key=lambda cls: str(getattr(cls, "__tablename__", "")))


def _manager_of(conn: Connection, customer_id: int | None) -> int | None:
    if customer_id is None:
        return None
    return conn.execute(
        select(Customer.manager_id).where(Customer.id == customer_id).with_for_update(read=True)
    ).scalar()


@event.listens_for(CarriesCustomerManager, "before_insert", propagate=True)
def _takes_the_manager(_mapper: Any, conn: Connection, row: Any) -> None:
    row.customer_manager_id = _manager_of(conn, row.customer_id)


@event.listens_for(CarriesCustomerManager, "before_update", propagate=True)
def _takes_the_new_customers_manager(_mapper: Any, conn: Connection, row: Any) -> None:
    attrs = inspect(row).attrs
    if attrs.customer_id.history.has_changes() or attrs.customer_manager_id.history.has_changes():
        row.customer_manager_id = _manager_of(conn, row.customer_id)


def _carry(conn: Connection, managers: Mapping[int, int | None], chunk: int = 1000) -> None:
    """Rewrite the carried manager on every record of the customers in ``managers`` (id → manager)."""
    by_manager: dict[int | None, list[int]] = {}
    for customer_id, manager_id in managers.items():
        by_manager.setdefault(manager_id, []).append(customer_id)
    for model in carriers():
        table: Any = model.__table__  # type: ignore[attr-defined]
        for manager_id, ids in by_manager.items():
            ids.sort()
            for start in range(0, len(ids), chunk):
                where = and_(table.c.customer_id.in_(ids[start:start + chunk]),
                             table.c.customer_manager_id.is_distinct_from(manager_id))
                with totals.updating(conn, model, where):  # totals grouped by the carried manager follow
                    conn.execute(
                        update(table).where(where)
                        # an internal column: the row's update time and version stay as they are
                        .values(customer_manager_id=manager_id, updated_at=table.c.updated_at)
                    )


@event.listens_for(Session, "after_flush")
def _records_follow_their_customer(session: Session, _context: Any) -> None:
    changed = {
        obj.id: obj.manager_id for obj in session.dirty
        if isinstance(obj, Customer) and obj not in session.deleted
        and inspect(obj).attrs.manager_id.history.has_changes()
    }
    if changed:
        _carry(session.connection(), changed)


def follow_customers(conn: Connection, customer_ids: Iterable[int]) -> None:
    """After a write that bypassed the ORM (rows moved to another customer, a manager set by a plain
    UPDATE): the records of ``customer_ids`` carry their customer's current manager again."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    managers = dict(conn.execute(
        select(Customer.id, Customer.manager_id).where(Customer.id.in_(ids)).order_by(Customer.id)
        .with_for_update(read=True)
    ).tuples().all())
    _carry(conn, managers)


def manager_copy_differences(conn: Connection, *, fix: bool = False) -> dict[str, int]:
    """Table → rows whose carried manager differs from their customer's, recomputed from the customers
    (every table listed, 0 when all agree); ``fix`` rewrites those rows."""
    out: dict[str, int] = {}
    for model in carriers():
        table: Any = model.__table__  # type: ignore[attr-defined]
        differs = (select(Customer.manager_id).where(Customer.id == table.c.customer_id).scalar_subquery()
                   .is_distinct_from(table.c.customer_manager_id))
        out[table.name] = int(conn.execute(select(func.count()).select_from(table).where(differs)).scalar_one())
        if fix and out[table.name]:
            customers = conn.execute(select(table.c.customer_id).where(differs).distinct()).scalars().all()
            follow_customers(conn, customers)
    return out


def by_customer_manager[S: Select[*tuple[Any, ...]]](stmt: S, model: type, principal: Principal,
                                                      action: str = "view", *, resource: str | None = None) -> S:
    """``stmt`` limited to the rows of ``model`` the customer scope gives ``principal`` (as
    ``core.scope.scoped``), found by the manager each row carries: one index range per manager of the
    scope instead of one probe per customer. For counts and sums; load rows through the customer scope."""
    if not (issubclass(model, CarriesCustomerManager) and getattr(model, "__scope__", "") == "customer"):
        raise TypeError(f"{model.__name__} does not carry its customer's manager")
    resource = resource or resource_of(model)
    if sees_everyone(principal, resource, action):
        return stmt
    return stmt.where(owner_clause(model.customer_manager_id, principal, resource=resource, action=action))
