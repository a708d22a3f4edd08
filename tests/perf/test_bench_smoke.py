"""The benchmark in smoke mode: tiny generated data, a real server process, every page once or twice.

Keeps the generator and the benchmark runner working as the pages change; says nothing about speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.core.audit import verify_chain
from crm_admin.perf.bench import MENU_ROLES, PAGES, machine, percentile, run_bench
from crm_admin.perf.generate import AlreadyGenerated, Plan, generate


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10
    assert percentile(values, 95) == 19
    assert percentile([5.0], 95) == 5


def test_plan_standard_scale_matches_the_issue() -> None:
    plan = Plan.for_scale(1.0)
    assert plan.departments == 10 and plan.users == 200 and plan.managers == 180
    assert plan.customers == 200_000 and plan.audit_rows == 2_000_000
    assert round(plan.customers * plan.linkmen_per_customer) == 600_000
    assert round(plan.customers * plan.follow_ups_per_customer) == 1_000_000


def test_generate_then_bench_smoke(engine: Any, tmp_path: Path) -> None:
    import crm_admin.models  # noqa: F401
    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.models import Customer, manager_copy_differences
    from crm_admin.opportunities.models import SalesOpportunity

    report = generate(engine, scale=0.0005, seed=7)
    assert report.rows["customer"] == 100
    with engine.connect() as conn:
        # ownership is skewed: the first manager owns the most customers
        per_manager = conn.execute(
            select(Customer.manager_id, func.count()).group_by(Customer.manager_id)
            .order_by(func.count().desc())
        ).all()
        assert len(per_manager) > 3 and per_manager[0][1] > per_manager[-1][1]
        assert conn.execute(select(func.count()).where(Linkman.birthday_md.is_(None))).scalar() == 0
        # opportunities, follow-ups and alerts are written with their customer's manager
        assert set(manager_copy_differences(conn).values()) == {0}
        assert conn.execute(select(func.count()).select_from(SalesOpportunity)
                            .where(SalesOpportunity.customer_manager_id.is_(None))).scalar() == 0
        # generated audit rows are written sealed, continuing the hash chain
        chain = verify_chain(conn)
        assert chain.intact and chain.checked >= report.rows["audit_log"]
    with pytest.raises(AlreadyGenerated):
        generate(engine, scale=0.0005)

    results = run_bench(str(engine.url.render_as_string(hide_password=False)), smoke=True, repeat=2,
                        out_dir=tmp_path, label="smoke", data_dir=tmp_path / "server",
                        throughput_clients=2, throughput_seconds=1)
    pages = {p["key"]: p for p in results["pages"]}
    assert {p.key for p in PAGES} <= set(pages)
    # besides the named pages, every menu entry of every role is measured once per role
    menu = {k: p for k, p in pages.items() if k.startswith("menu_")}
    for role in MENU_ROLES:
        assert any(p["role"] == role for p in menu.values()), role
    assert "menu_admin_audit_log_list" in menu or any(
        p["role"] == "admin" and p["path"].startswith("/admin/audit-log/") for p in pages.values())
    assert all(p["cpu_ms_per_request"] is not None for p in pages.values() if p["status"] == "ok")
    # closed-loop throughput of the list page, with the server's CPU per request
    assert results["throughput"]["requests"] > 0 and results["throughput"]["errors"] == 0
    assert results["throughput"]["server_cpu_ms_per_request"] is not None
    # wall times are reported with the machine's load next to them, and the machine read from the machine
    assert all(p["load_average"] is not None for p in pages.values() if p["status"] == "ok")
    assert results["machine"]["cpu_model"] == machine()["cpu_model"]
    # the administrator's care workbench, the read-only user, a form and a details page are measured
    for key in ("care_workbench_admin", "customer_list_viewer", "customer_edit_form", "customer_details"):
        assert pages[key]["status"] == "ok", (key, pages[key]["note"])
    errors = {k: p["note"] for k, p in pages.items() if p["status"] == "error"}
    assert not errors, errors
    assert pages["customer_list_admin"]["status"] == "ok"
    assert pages["customer_list_admin"]["n"] == 2
    saved = json.loads((tmp_path / "smoke.json").read_text(encoding="utf-8"))
    assert saved["pages"] and (tmp_path / "smoke.md").exists()
    db.get_engine().dispose()
