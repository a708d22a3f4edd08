"""Opportunities: validation, stage history, optimistic locking, pipeline totals and moves, scope."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.core.errors import UserError
from crm_admin.opportunities.models import OpportunityStageHistory, SalesOpportunity
from crm_admin.opportunities.service import PipelineFilter, create_opportunity, move_stage, pipeline
from tests.customers.conftest import form_token


def _opp(principal: Any, customer_id: int, **fields: Any) -> SalesOpportunity:
    data = {"title": "项目", "stage": "initial", "amount": "1000.50", "probability": 50, **fields}
    with db.transaction() as s:
        return create_opportunity(s, principal, customer_id=customer_id, **data)


@pytest.mark.parametrize("fields, message", [
    ({"amount": "-1"}, "不能为负数"),
    ({"amount": "abc"}, "必须是数字"),
    ({"probability": 101}, "0–100"),
    ({"probability": -1}, "0–100"),
    ({"stage": "dreaming"}, "不是有效的选项"),
    ({"status": "lost"}, "丢单原因"),
    ({"title": ""}, "名称不能为空"),
])
def test_bad_opportunities(make_user: Any, make_customer: Any, principal: Any, fields: dict[str, Any],
                           message: str) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    with pytest.raises(UserError) as err:
        _opp(principal("wang"), cust.id, **fields)
    assert message in err.value.message


def test_amount_is_decimal_and_history_kept(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    cust = make_customer("甲", manager="wang")
    p = principal("wang")
    opp = _opp(p, cust.id, amount="1234.5")
    assert opp.amount == Decimal("1234.50")
    with db.transaction() as s:
        move_stage(s, p, opportunity_id=opp.id, stage="proposal")
    with db.session_factory()() as s:
        rows = s.execute(select(OpportunityStageHistory.from_stage, OpportunityStageHistory.to_stage)
                         .order_by(OpportunityStageHistory.id)).all()
        assert [tuple(r) for r in rows] == [(None, "initial"), ("initial", "proposal")]
        assert s.execute(select(AuditLog).where(AuditLog.resource == "opportunity",
                                                AuditLog.action == "update")).first() is not None


def test_pipeline_totals_and_scope(make_user: Any, make_customer: Any, principal: Any) -> None:
    make_user("wang")
    make_user("li")
    mine = make_customer("甲", manager="wang")
    theirs = make_customer("乙", manager="li")
    _opp(principal("wang"), mine.id, amount="1000", probability=50)
    _opp(principal("wang"), mine.id, amount="3000", probability=10)
    _opp(principal("wang"), mine.id, amount="500", probability=90, stage="proposal")
    _opp(principal("li"), theirs.id, amount="99999", probability=100)
    with db.session_factory()() as s:
        cols = {c.value: c for c in pipeline(s, principal("wang"), PipelineFilter())}
    assert cols["initial"].count == 2
    assert cols["initial"].total == Decimal("4000.00")
    assert cols["initial"].weighted == Decimal("800.00")
    assert cols["proposal"].weighted == Decimal("450.00")
    assert list(cols) [:3] == ["initial", "requirement", "proposal"]


def test_pipeline_page_move_and_foreign_move(make_user: Any, make_customer: Any, principal: Any,
                                             login_as: Any) -> None:
    make_user("wang")
    make_user("li")
    mine = make_customer("甲", manager="wang")
    theirs = make_customer("乙", manager="li")
    opp = _opp(principal("wang"), mine.id, title="我的项目")
    other = _opp(principal("li"), theirs.id, title="李的项目")
    c = login_as("wang")
    page = c.get("/admin/pipeline")
    assert page.status_code == 200 and "我的项目" in page.text and "李的项目" not in page.text
    assert f"/admin/sales-opportunity/details/{opp.id}" in page.text  # a card opens its opportunity
    token = form_token(page.text)
    r = c.post("/admin/pipeline/move", data={"csrf_token": token, "opportunity_id": str(opp.id),
                                             "stage": "negotiation", "version": str(opp.version)},
               headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json()["ok"]
    r = c.post("/admin/pipeline/move", data={"csrf_token": token, "opportunity_id": str(other.id),
                                             "stage": "negotiation"}, headers={"accept": "application/json"})
    assert r.status_code == 404
    # a stale version is refused
    r = c.post("/admin/pipeline/move", data={"csrf_token": token, "opportunity_id": str(opp.id),
                                             "stage": "contract", "version": str(opp.version)},
               headers={"accept": "application/json"})
    assert r.status_code == 409
    with db.session_factory()() as s:
        assert s.get(SalesOpportunity, opp.id).stage == "negotiation"
        assert s.get(SalesOpportunity, other.id).stage == "initial"


def test_readonly_cannot_move(make_user: Any, make_customer: Any, principal: Any, login_as: Any) -> None:
    make_user("wang")
    make_user("ro", ("readonly",))
    mine = make_customer("甲", manager="wang")
    opp = _opp(principal("wang"), mine.id)
    c = login_as("ro")
    page = c.get("/admin/pipeline")
    assert page.status_code == 200 and "move-form" not in page.text
    r = c.post("/admin/pipeline/move", data={"csrf_token": form_token(page.text), "opportunity_id": str(opp.id),
                                             "stage": "contract"})
    assert r.status_code == 403


def test_edit_form_lost_needs_reason_and_stale_refused(make_user: Any, make_customer: Any, principal: Any,
                                                       login_as: Any) -> None:
    make_user("wang")
    mine = make_customer("甲", manager="wang")
    opp = _opp(principal("wang"), mine.id)
    c = login_as("wang")
    token = form_token(c.get(f"/admin/sales-opportunity/edit/{opp.id}").text)
    base = {"customer": str(mine.id), "title": "项目", "stage": "initial", "amount": "10", "probability": "5",
            "version": str(opp.version), "csrf_token": token}
    r = c.post(f"/admin/sales-opportunity/edit/{opp.id}", data={**base, "status": "lost"})
    assert r.status_code == 400 and "丢单原因" in r.text
    r = c.post(f"/admin/sales-opportunity/edit/{opp.id}", data={**base, "status": "open", "stage": "proposal"},
               follow_redirects=False)
    assert r.status_code == 302, r.text[:1000]
    r = c.post(f"/admin/sales-opportunity/edit/{opp.id}", data={**base, "status": "open", "next_step": "我的输入"})
    assert r.status_code == 400 and "已被他人修改" in r.text and "我的输入" in r.text


def test_pipeline_of_a_scope_and_of_everyone_agree_beyond_the_shown_items(
        make_user: Any, make_customer: Any, principal: Any) -> None:
    """A scope's columns come from its managers' ranges, everyone's from the whole index: same numbers,
    same biggest items, and the sums cover the rows not shown."""
    make_user("wang")
    mine = make_customer("甲", manager="wang")
    for amount, probability, stage in (("100", 10, "initial"), ("300.50", 30, "initial"), ("200", 20, "initial"),
                                       ("50", 50, "proposal"), ("70", 100, "proposal")):
        _opp(principal("wang"), mine.id, amount=amount, probability=probability, stage=stage)
    with db.session_factory()() as s:
        scoped_cols = pipeline(s, principal("wang"), PipelineFilter(), items_per_stage=2)
        everyone = pipeline(s, principal("admin"), PipelineFilter(), items_per_stage=2)

    def shape(cols: Any) -> list[Any]:
        return [(c.value, c.count, c.total, c.weighted, [i["amount"] for i in c.items]) for c in cols]

    assert shape(scoped_cols) == shape(everyone)
    initial = next(c for c in scoped_cols if c.value == "initial")
    assert (initial.count, initial.total, initial.weighted) == (3, Decimal("600.50"), Decimal("140.15"))
    assert [i["amount"] for i in initial.items] == [Decimal("300.50"), Decimal("200.00")]
