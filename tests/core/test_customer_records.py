"""The registry of records hanging off a customer: a module registers a kind of record and it appears on
every path that deals with a whole customer — the 360° page, delete, merge, transfer — without a line
changed in the customer module."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import Integer, MetaData, String, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.core import customer_records
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.customer_records import (
    Contribution,
    HandOver,
    RecordKind,
    TimelineEntry,
    VisibleCustomer,
    of_customer,
)
from crm_admin.customers.models import Customer
from tests.customers.conftest import form_token, merge_through_preview


class _Base(DeclarativeBase):
    # a metadata of its own: the real schema (and the tests' clean-up of it) never sees this table
    metadata = MetaData()


class Visit(_Base):
    """A kind of record from a module the customer module has never heard of: on-site visits."""

    __tablename__ = "test_customer_visit"
    __resource__ = "customer_visit"
    __scope__ = "customer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    manager_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(64))
    visited_at: Mapped[dt.datetime] = mapped_column(db.UTCDateTime)


def _timeline(session: Session, customer: VisibleCustomer, limit: int) -> Contribution:
    visits = session.execute(of_customer(select(Visit), Visit, customer).limit(limit)).scalars()
    return Contribution(timeline=[
        TimelineEntry(at=v.visited_at, kind="上门拜访", icon="fa-walking", title=v.note, user_id=v.manager_id)
        for v in visits
    ])


def _visits_to(session: Session, customer_ids: list[int], manager_id: int | None, _now: dt.datetime) -> int:
    result: Any = session.execute(update(Visit).where(Visit.customer_id.in_(customer_ids))
                                  .values(manager_id=manager_id))
    return int(result.rowcount or 0)


VISITS = RecordKind(key="customer_visit", model=Visit, label="上门拜访", unit="次上门拜访", page=_timeline,
                    hand_over=(HandOver("visits", "次上门拜访", _visits_to),))


@pytest.fixture
def visits(engine: Any) -> Iterator[None]:
    _Base.metadata.create_all(engine)
    customer_records.register(VISITS)
    try:
        yield
    finally:
        customer_records.unregister(VISITS.key)
        _Base.metadata.drop_all(engine)


def _visit(customer_id: int, manager_id: int | None, note: str) -> None:
    with acting_as(SYSTEM), db.transaction() as s:
        s.add(Visit(customer_id=customer_id, manager_id=manager_id, note=note, visited_at=dt.datetime.now(dt.UTC)))


def _visits_of(customer_id: int) -> list[tuple[str, int | None]]:
    with db.session_factory()() as s:
        return [(v.note, v.manager_id) for v in s.execute(select(Visit).where(Visit.customer_id == customer_id)
                                                          .order_by(Visit.id)).scalars()]


def test_a_registered_kind_is_on_the_360_page_and_blocks_a_plain_delete(
        visits: None, admin_client: Any, make_customer: Any) -> None:
    cust = make_customer("拜访过的公司")
    _visit(cust.id, None, "带样品上门演示")
    page = admin_client.get(f"/admin/customer/360/{cust.id}")
    assert page.status_code == 200
    assert "上门拜访" in page.text and "带样品上门演示" in page.text
    assert "1 次上门拜访" in page.text  # the delete card names what is still there

    token = form_token(page.text)
    r = admin_client.delete(f"/admin/customer/delete?pks={cust.id}", headers={"X-CSRF-Token": token})
    assert "1 次上门拜访" in unquote_plus(r.text)
    r = admin_client.post(f"/admin/customer/360/{cust.id}/delete",
                          data={"csrf_token": token, "confirm_name": "拜访过的公司"}, follow_redirects=False)
    assert "1 次上门拜访" in unquote_plus(r.headers["location"])
    assert _visits_of(cust.id) and _customer_exists(cust.id)

    # the explicit cascade takes the visit with the customer, audited like every other row
    r = admin_client.post(f"/admin/customer/360/{cust.id}/delete",
                          data={"csrf_token": token, "confirm_name": "拜访过的公司", "cascade": "1"},
                          follow_redirects=False)
    assert r.status_code == 303 and "customer/list" in r.headers["location"]
    assert _visits_of(cust.id) == [] and not _customer_exists(cust.id)
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "delete", AuditLog.resource == "customer_visit")).scalar_one() == 1


def test_a_registered_kind_moves_in_a_merge(visits: None, admin_client: Any, make_customer: Any) -> None:
    keep = make_customer("保留公司")
    drop = make_customer("重复公司")
    _visit(drop.id, None, "重复客户的拜访")
    r = merge_through_preview(admin_client, str(keep.id), drop.id)
    assert r.status_code == 303, r.text[:500]
    assert _visits_of(keep.id) == [("重复客户的拜访", None)]
    assert not _customer_exists(drop.id)
    with db.session_factory()() as s:
        entry = s.execute(select(AuditLog).where(AuditLog.action == "merge")).scalar_one()
    assert entry.changes["moved"]["customer_visit"] == 1


def test_a_registered_kind_follows_the_manager_on_a_transfer(
        visits: None, admin_client: Any, make_user: Any, make_customer: Any) -> None:
    old = make_user("old_mgr")
    new = make_user("new_mgr")
    cust = make_customer("换人的公司", manager="old_mgr")
    _visit(cust.id, old.id, "老经理的拜访")
    page = admin_client.get(f"/admin/transfer?customer_id={cust.id}")
    r = admin_client.post("/admin/transfer/submit", data={
        "customer_id": str(cust.id), "new_manager_id": str(new.id), "reason": "区域调整",
        "csrf_token": form_token(page.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    assert _visits_of(cust.id) == [("老经理的拜访", new.id)]
    with db.session_factory()() as s:
        rows = s.execute(select(AuditLog).where(AuditLog.action == "transfer")).scalars().all()
    summary = next(r for r in rows if "customers" in (r.changes or {}))  # the batch's summary row
    assert summary.changes["visits"] == 1


def _customer_exists(customer_id: int) -> bool:
    with db.session_factory()() as s:
        return s.get(Customer, customer_id) is not None


def test_every_process_finds_the_same_kinds() -> None:
    """The command line and the scheduler read the registry without the web app having loaded it."""
    code = ("from crm_admin.core import customer_records as r; "
            "print(' '.join(k.key for k in r.kinds()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["linkman", "follow_up", "opportunity", "order", "customer_care", "care_plan", "transfer",
                   "pool_log", "churn_alert"]


def test_a_kind_is_registered_once() -> None:
    contacts = customer_records.kind("linkman")
    twin = RecordKind(key="linkman", model=contacts.model, label="联系人", unit="个联系人")
    with pytest.raises(ValueError, match="registered twice"):
        customer_records.register(twin)
    assert customer_records.kind("linkman") is contacts
