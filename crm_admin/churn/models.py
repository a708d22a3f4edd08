"""Churn warning (客户流失): rules and the alerts they open."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_admin.accounts.models import SysUser
from crm_admin.customers.models import CarriesCustomerManager, Customer, OfCustomer
from crm_admin.db import Base, Timestamped, utcnow

CHURN_METRICS = ("days_since_contact", "days_since_order", "order_amount_drop_pct")
RISK_LEVELS = ("medium", "high")
ALERT_STATUSES = ("open", "following", "retained", "lost", "dismissed")


class ChurnRule(Timestamped, Base):
    __tablename__ = "churn_rule"
    __resource__ = "churn_rule"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    metric: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[Decimal] = mapped_column(Numeric(10, 2), info={"min": 0})
    risk_level: Mapped[str] = mapped_column(String(16), default="medium")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    def __str__(self) -> str:
        return self.name


class ChurnAlert(OfCustomer, CarriesCustomerManager, Timestamped, Base):
    __tablename__ = "churn_alert"
    __resource__ = "churn_alert"

    rule_id: Mapped[int] = mapped_column(ForeignKey("churn_rule.id"))
    risk_level: Mapped[str] = mapped_column(String(16))
    detected_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="open")
    # 1 while the alert is open or being followed, NULL once closed: one open alert per customer and rule.
    # Set from the status before every ORM write (below); no column default, which the ORM would apply
    # to an explicit None.
    open_key: Mapped[int | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(64), info={"dict": "churn_reason"})
    analysis: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[str | None] = mapped_column(Text)
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    handled_at: Mapped[dt.datetime | None]

    customer: Mapped[Customer] = relationship(lazy="raise")
    rule: Mapped[ChurnRule] = relationship(lazy="raise")
    handler: Mapped[SysUser | None] = relationship(lazy="raise")

    __table_args__ = (
        UniqueConstraint("customer_id", "rule_id", "open_key", name="uq_churn_alert_open"),
        Index("ix_churn_alert_status_detected_at", "status", "detected_at"),
        # the daily evaluation reads each rule's open alerts
        Index("ix_churn_alert_rule_id_open_key", "rule_id", "open_key"),
        # migration 0014: a team's open alerts by risk level, one range per manager of the customers;
        # migration 0017: newest first within each (the handling page reads the first of each range)
        Index("ix_churn_alert_customer_manager_id_open_key_risk_detected_at", "customer_manager_id",
              "open_key", "risk_level", "detected_at"),
        # migration 0017: everyone's open alerts, newest first within each risk level
        Index("ix_churn_alert_open_key_risk_level_detected_at", "open_key", "risk_level", "detected_at"),
        # migration 0018: the analysis page counts in an index alone: a team's alerts are one range of
        # the first per manager, everyone's lost (or closed) alerts one range of the second
        Index("ix_churn_alert_customer_manager_id_status", "customer_manager_id", "status", "risk_level",
              "reason", "handled_at"),
        Index("ix_churn_alert_status_risk_level", "status", "risk_level", "reason", "customer_manager_id",
              "handled_at"),
    )


OPEN_STATUSES = ("open", "following")


@event.listens_for(ChurnAlert, "before_insert")
@event.listens_for(ChurnAlert, "before_update")
def _open_key_follows_status(_mapper: Any, _connection: Any, alert: ChurnAlert) -> None:
    """``open_key`` is 1 exactly while the alert is open or followed, whatever a caller set (a closed alert
    written with ``open_key=None`` would otherwise take the column's default and count as open)."""
    alert.open_key = 1 if (alert.status or "open") in OPEN_STATUSES else None
