"""Reclaim rules through the browser's paths: the rule form, the preview page, the owner's warning on
the dashboard and its page, who may see what, and ``crm-admin reclaim`` from a shell."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.reclaim.models import ReclaimRule
from tests.cli.runner import run_cli
from tests.conftest import csrf_token
from tests.pools import factories as pf
from tests.pools.reclaim_helpers import count, customer, rule

NOW = dt.datetime.now(dt.UTC)


def _form(pool_id: int, **kw: Any) -> dict[str, str]:
    data = {"name": "A 级 30 天未跟进", "pool": str(pool_id), "level": "A", "days_without_follow_up": "30",
            "days_without_order": "", "warn_days": "3", "protect_from_stage": "negotiation",
            "protect_pending_care": "y", "priority": "10", "remark": ""}
    data.update(kw)
    return data


def test_admin_creates_a_rule_and_bad_input_changes_nothing(admin_client: Any) -> None:
    pool = pf.pool("华东公海")
    token = csrf_token(admin_client)
    assert "回收规则" in admin_client.get("/admin/reclaim-rule/list").text
    bad = admin_client.post("/admin/reclaim-rule/create", data={**_form(pool.id, days_without_follow_up=""),
                                                                "csrf_token": token})
    assert bad.status_code in (200, 400) and "未跟进天数和未下单天数至少填写一项" in bad.text
    assert count(ReclaimRule) == 0
    r = admin_client.post("/admin/reclaim-rule/create", data={**_form(pool.id), "csrf_token": token},
                          follow_redirects=False)
    assert r.status_code == 302, r.text
    with db.session_factory()() as s:
        made = s.execute(select(ReclaimRule)).scalar_one()
        assert (made.pool_id, made.level, made.days_without_follow_up, made.is_active) == (pool.id, "A", 30, False)
        assert s.execute(select(AuditLog).where(AuditLog.resource == "reclaim_rule",
                                                AuditLog.action == "create")).scalars().first() is not None
    listing = admin_client.get("/admin/reclaim-rule/list").text
    assert "华东公海" in listing and "30 天" in listing


def test_admin_edits_a_rule_enables_it_and_moves_it_to_another_pool(admin_client: Any) -> None:
    """Saving a stored rule reads its pool by id (its relation is never loaded lazily)."""
    first, second = pf.pool("华东公海"), pf.pool("华南公海")
    r = rule(first.id, active=False, name="改前规则")
    for pool_id, name in ((first.id, "启用规则"), (second.id, "换公海规则")):
        edit = admin_client.post(f"/admin/reclaim-rule/edit/{r.id}", data={
            **_form(pool_id, name=name, is_active="y", level=""), "csrf_token": csrf_token(admin_client)},
            follow_redirects=False)
        assert edit.status_code == 302, edit.text[-500:]
        with db.session_factory()() as s:
            saved = s.get(ReclaimRule, r.id)
            assert saved is not None and (saved.name, saved.pool_id, saved.is_active) == (name, pool_id, True)


def test_preview_page_shows_count_and_reasons(admin_client: Any, make_user: Any) -> None:
    mgr = make_user("rch_mgr", real_name="预览经理")
    pool = pf.pool("预览公海")
    r = rule(pool.id, active=False, days_without_follow_up=30)
    due = customer(mgr.id, contact=40, created=400, base=NOW, name="久未跟进公司")
    customer(mgr.id, contact=0, created=400, base=NOW, name="刚联系公司")
    page = admin_client.get(f"/admin/reclaim-rule/preview?rule={r.id}")
    assert page.status_code == 200
    assert 'id="reclaim-preview-count"' in page.text
    assert "现在运行将回收 1 个客户" in page.text
    assert "久未跟进公司" in page.text and "刚联系公司" not in page.text
    assert "自动回收:30 天未跟进" in page.text and "预览经理" in page.text
    assert f.get_customer(due.id).manager_id == mgr.id  # the preview changed nothing
    # a malformed or unknown rule id shows the page without a preview, never an error
    for q in ("abc", "987654", "-1"):
        assert admin_client.get(f"/admin/reclaim-rule/preview?rule={q}").status_code == 200


class f:
    @staticmethod
    def get_customer(pk: int) -> Any:
        from crm_admin.customers.models import Customer

        with db.session_factory()() as s:
            return s.get(Customer, pk)


def test_managers_cannot_see_or_change_rules(make_user: Any, login_as: Any) -> None:
    make_user("rch_plain")
    pool = pf.pool("禁入公海")
    r = rule(pool.id, active=False)
    mgr = login_as("rch_plain")
    token = csrf_token(mgr)
    assert mgr.get("/admin/reclaim-rule/list").status_code == 403
    assert mgr.get(f"/admin/reclaim-rule/details/{r.id}").status_code == 403
    assert mgr.get(f"/admin/reclaim-rule/preview?rule={r.id}").status_code == 403
    made = mgr.post("/admin/reclaim-rule/create", data={**_form(pool.id, name="偷偷建的"), "csrf_token": token},
                    follow_redirects=False)
    assert made.status_code == 403
    edit = mgr.post(f"/admin/reclaim-rule/edit/{r.id}", data={**_form(pool.id, name="改名"), "csrf_token": token},
                    follow_redirects=False)
    assert edit.status_code == 403
    assert count(ReclaimRule) == 1
    with db.session_factory()() as s:
        assert s.get(ReclaimRule, r.id).name != "改名"  # type: ignore[union-attr]
    menu = mgr.get("/admin/").text
    assert "回收规则" not in menu and "回收预览" not in menu


def test_owner_sees_the_warning_on_the_dashboard_and_its_page(make_user: Any, login_as: Any) -> None:
    me = make_user("rch_owner")
    other = make_user("rch_other")
    pool = pf.pool("提醒公海")
    rule(pool.id, days_without_follow_up=30, warn_days=5)
    mine = customer(me.id, contact=27.5, created=400, base=NOW, name="快到期公司")
    customer(other.id, contact=27.5, created=400, base=NOW, name="别人的快到期公司")
    client = login_as("rch_owner")
    home = client.get("/admin/").text
    assert "即将被回收的客户" in home and "快到期公司" in home and "别人的快到期公司" not in home
    assert "3 天后回收" in home
    page = client.get("/admin/customer/reclaim-upcoming")
    assert page.status_code == 200
    assert "快到期公司" in page.text and "别人的快到期公司" not in page.text
    assert 'id="reclaim-upcoming-total"' in page.text and "30 天未跟进" in page.text
    assert str(mine.id) in page.text


def test_no_block_without_enabled_rules(make_user: Any, login_as: Any) -> None:
    me = make_user("rch_quiet")
    customer(me.id, contact=28, created=400, base=NOW)
    assert "即将被回收的客户" not in login_as("rch_quiet").get("/admin/").text


@pytest.mark.cli_command("reclaim")
def test_cli_dry_run_reports_and_changes_nothing_then_runs(make_user: Any) -> None:
    mgr = make_user("rch_cli")
    pool = pf.pool("命令行公海")
    rule(pool.id, name="命令行规则", days_without_follow_up=30)
    c = customer(mgr.id, contact=400, created=800, base=NOW)
    dry = run_cli("reclaim", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "命令行规则" in dry.stdout and "1 个客户" in dry.stdout and "未做任何改动" in dry.stdout
    assert f.get_customer(c.id).pool_id is None
    done = run_cli("reclaim")
    assert done.exit_code == 0, done.output
    assert "自动回收 1 个客户" in done.stdout
    assert f.get_customer(c.id).pool_id == pool.id
