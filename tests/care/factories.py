"""Rows for the workflow tests (care, transfer, churn, scheduler, dashboard), written as the system."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from crm_admin import db
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from crm_admin.opportunities.models import SalesOpportunity

_seq = itertools.count(1)


def add(obj: Any) -> Any:
    with acting_as(SYSTEM), db.transaction() as session:
        session.add(obj)
        session.flush()
        session.expunge(obj)
    return obj


def customer(manager_id: int | None, name: str | None = None, **kw: Any) -> Customer:
    n = next(_seq)
    kw.setdefault("status", "active")
    return add(Customer(code=f"WF{n:06d}", name=name or f"测试客户{n}", name_key=f"wf{n}",
                        manager_id=manager_id, **kw))


def linkman(customer_id: int, birthday: dt.date | None = None, name: str | None = None) -> Linkman:
    md = birthday.month * 100 + birthday.day if birthday else None
    return add(Linkman(customer_id=customer_id, name=name or f"联系人{next(_seq)}", birthday=birthday,
                       birthday_md=md))


def care(customer_id: int, manager_id: int | None, **kw: Any) -> CustomerCare:
    kw.setdefault("care_type", "phone_call")
    kw.setdefault("status", "pending")
    kw.setdefault("origin", "manual")
    return add(CustomerCare(customer_id=customer_id, manager_id=manager_id, **kw))


def plan(customer_id: int, manager_id: int | None, next_date: dt.date, interval_days: int = 30,
         **kw: Any) -> CarePlan:
    kw.setdefault("care_type", "phone_call")
    return add(CarePlan(customer_id=customer_id, manager_id=manager_id, next_date=next_date,
                        interval_days=interval_days, **kw))


def opportunity(customer_id: int, manager_id: int | None, status: str = "open",
                amount: str = "1000.00", stage: str = "initial") -> SalesOpportunity:
    return add(SalesOpportunity(customer_id=customer_id, manager_id=manager_id, title=f"商机{next(_seq)}",
                                stage=stage, amount=Decimal(amount), status=status))


def get(model: type, pk: int) -> Any:
    with db.session_factory()() as session:
        return session.get(model, pk)
