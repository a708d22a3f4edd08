"""Sales opportunities (销售机会)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.core import totals
from crm_admin.core.totals import cents
from crm_admin.customers.models import CarriesCustomerManager, Customer, OfCustomer
from crm_admin.db import ZERO, Base, Timestamped

OPPORTUNITY_STATUSES = ("open", "won", "lost")


class SalesOpportunity(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "sales_opportunity"
    __resource__ = "opportunity"

    title: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(64), info={"dict": "opportunity_stage"})
    amount: Mapped[Decimal] = mapped_column(default=ZERO, info={"min": 0})
    probability: Mapped[int] = mapped_column(Integer, default=0, info={"min": 0, "max": 100})
    expected_close_date: Mapped[dt.date | None] = mapped_column(Date)
    next_step: Mapped[str | None] = mapped_column(String(255))
    next_follow_up_at: Mapped[dt.datetime | None]
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    lost_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)

    customer: Mapped[Customer] = relationship(lazy="raise")
    manager: Mapped[SysUser | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_sales_opportunity_manager_id_status_stage", "manager_id", "status", "stage"),
        Index("ix_sales_opportunity_status_stage", "status", "stage"),
        Index("ix_sales_opportunity_expected_close_date", "expected_close_date"),
        # migration 0006 (performance): everything the pipeline reads within the scope's customer_id join
        Index("ix_sales_opportunity_customer_id_status_stage_covering", "customer_id", "status", "stage",
              "amount", "probability"),
        Index("ix_sales_opportunity_status_stage_amount_probability", "status", "stage", "amount", "probability"),
        # migration 0014: a team's pipeline and dashboard sums per stage, one range per manager
        Index("ix_sales_opportunity_customer_manager_id_status_stage_covering", "customer_manager_id", "status",
              "stage", "amount", "probability"),
        # migration 0017: the list, newest first, for everyone and per manager of a team
        Index("ix_sales_opportunity_created_at", "created_at"),
        Index("ix_sales_opportunity_customer_manager_id_created_at", "customer_manager_id", "created_at"),
    )

    def __str__(self) -> str:
        return self.title


class OpportunityStageHistory(Timestamped, Base):
    """One row per stage (or status) change of an opportunity: who moved it, from where, to where."""

    __tablename__ = "opportunity_stage_history"
    __resource__ = "opportunity"
    # Not listed on its own: read only through an opportunity the user may see (scope checked there).
    __scope__ = ""

    opportunity_id: Mapped[int] = mapped_column(
        ForeignKey("sales_opportunity.id", ondelete="CASCADE")
    )
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    changed_at: Mapped[dt.datetime]

    __table_args__ = (Index("ix_opportunity_stage_history_opportunity_id", "opportunity_id"),)


class OpportunityOpenTotal(Base):
    """The open opportunities per customer manager (0: a customer without one) and stage: how many,
    their amounts and amounts × probability (in cents, exact on every database). Kept by
    ``core.totals`` in the transaction of every write; the pipeline and the home page read their sums
    here instead of adding up 180,000 open opportunities."""

    __tablename__ = "opportunity_open_total"

    customer_manager_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    open_count: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    weighted_cents: Mapped[int] = mapped_column(BigInteger, default=0)  # amount × probability (percent)


OPEN_TOTALS = totals.register(totals.Totals(
    name="opportunity_open_total", model=SalesOpportunity, table=OpportunityOpenTotal.__table__,
    keys=("customer_manager_id", "stage"), count="open_count",
    sums=(("amount_cents", lambda t: cents(t.c.amount)),
          ("weighted_cents", lambda t: cents(t.c.amount) * t.c.probability)),
    counted=lambda t: t.c.status == "open", zero_for_null=frozenset({"customer_manager_id"}),
    watched=("status", "stage", "amount", "probability", "customer_id", "customer", "customer_manager_id"),
))
