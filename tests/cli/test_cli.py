"""The ``crm-admin`` command, run as the installed script in a process of its own: serve (in an empty
folder and on the configured database), migrate/seed idempotence, users, demo data, generated data and
the benchmark's smoke mode. Backup and restore: ``tests/backup``; ``audit verify``: ``tests/audit``."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm_admin import db
from tests.cli.runner import cli_env, free_port, run_cli, start_cli, stop_cli, wait_for
from tests.conftest import IS_MYSQL, PASSWORD, login

# `serve` in an empty folder always runs on the embedded SQLite: once per suite run is enough.
serve_test = pytest.mark.skipif(IS_MYSQL, reason="an empty folder means SQLite: runs in the SQLite pass")


def _counts(*models: Any) -> list[int]:
    with db.transaction() as session:
        return [int(session.execute(select(func.count()).select_from(m)).scalar() or 0) for m in models]


@pytest.mark.cli_command("migrate")
@pytest.mark.cli_command("seed")
def test_migrate_and_seed_are_idempotent(engine: Any) -> None:
    from crm_admin.accounts.models import CasbinRule, SysRole, SysUser
    from crm_admin.dictionary.models import DictItem, DictType

    models = (SysRole, DictType, DictItem, CasbinRule, SysUser)
    before = _counts(*models)
    result = run_cli("migrate")
    assert result.exit_code == 0 and "最新结构" in result.output
    for _ in range(2):
        result = run_cli("seed")
        assert result.exit_code == 0, result.output
        assert "初始数据已就绪" in result.output
        assert "密码" not in result.output  # the administrator exists: no new one
        assert _counts(*models) == before


@pytest.mark.cli_command("create-user")
@pytest.mark.cli_command("reset-password")
def test_create_user_and_reset_password(engine: Any, make_client: Any) -> None:
    result = run_cli("create-user", "--username", "wanglei", "--real-name", "王磊", "--password", PASSWORD,
                     "--no-must-change")
    assert result.exit_code == 0, result.output
    assert login(make_client(), "wanglei", PASSWORD).status_code == 302
    result = run_cli("create-user", "--username", "wanglei", "--password", PASSWORD)
    assert result.exit_code == 1 and "已存在" in result.output
    # run from a script with nothing to read: a sentence, not click's bare "Aborted!" (run_cli checks)
    result = run_cli("create-user", "--username", "zhaomin")
    assert result.exit_code == 1 and "操作已取消" in result.output
    typed = run_cli("create-user", "--username", "zhaomin", "--no-must-change",
                    stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert typed.exit_code == 0, typed.output
    assert login(make_client(), "zhaomin", PASSWORD).status_code == 302

    result = run_cli("reset-password", "wanglei")
    assert result.exit_code == 0, result.output
    new = re.search(r"密码:(\S+)", result.output)
    assert new
    assert login(make_client(), "wanglei", PASSWORD).status_code != 302
    c = make_client()
    r = login(c, "wanglei", new.group(1))
    assert r.status_code == 302
    assert "/admin/account/password" in c.get("/admin/customer/list", follow_redirects=False).headers.get(
        "location", "/admin/account/password")
    nobody = run_cli("reset-password", "nobody")
    assert nobody.exit_code == 1 and "用户不存在" in nobody.output


def test_unreachable_database_is_one_clear_line() -> None:
    result = run_cli("migrate", env=cli_env(CRM_DATABASE_URL="mysql+pymysql://nobody:secret@127.0.0.1:1/crm"))
    assert result.exit_code == 3
    assert "无法连接数据库" in result.output and "secret" not in result.output


@pytest.mark.cli_command("demo")
@pytest.mark.usefixtures("demo_cleanup")
def test_demo_data_is_realistic_and_not_loaded_twice(engine: Any) -> None:
    from crm_admin.accounts.models import SysDept, SysUser
    from crm_admin.care.models import CarePlan, CustomerCare
    from crm_admin.churn.models import ChurnAlert, ChurnRule
    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.codes import is_valid_credit_code
    from crm_admin.customers.models import Customer
    from crm_admin.opportunities.models import SalesOpportunity
    from crm_admin.orders.models import CustomerOrder, OrderItem
    from crm_admin.products.models import Product
    from crm_admin.settings import get_settings
    from crm_admin.transfers.models import CustomerTransfer

    result = run_cli("demo", "--password", "Demo12345")
    assert result.exit_code == 0, result.output
    assert "zhangwei" in result.output and "Demo12345" in result.output

    today = dt.datetime.now(ZoneInfo(get_settings().timezone)).date()
    with db.transaction() as s:
        depts = s.execute(select(SysDept.name)).scalars().all()
        assert len(depts) >= 3 and "销售一部" in depts
        managers = s.execute(select(SysUser).where(SysUser.username != "admin")).scalars().all()
        assert 5 <= len(managers) <= 8
        assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", u.real_name) for u in managers)

        customers = s.execute(select(Customer)).scalars().all()
        assert 50 <= len(customers) <= 80
        assert len({c.name for c in customers}) == len(customers)
        assert all(c.name.endswith("公司") for c in customers)
        codes = [c.credit_code for c in customers if c.credit_code]
        assert len(codes) >= 40 and all(is_valid_credit_code(c) for c in codes)
        assert len(set(codes)) == len(codes)
        assert {c.status for c in customers} >= {"potential", "active"}

        # made through the services, so it obeys the same rules: the last contact is the newest follow-up,
        # a customer at risk has not been contacted for over 60 days, a closed alert is not an open one
        from crm_admin.followups.models import FollowUp

        newest = dict(s.execute(select(FollowUp.customer_id, func.max(FollowUp.contacted_at))
                                .group_by(FollowUp.customer_id)).tuples().all())
        assert all(c.last_contact_at == newest.get(c.id) for c in customers)
        now = dt.datetime.now(dt.UTC)
        assert all((now - c.last_contact_at).days > 60 for c in customers
                   if c.status == "at_risk" and c.last_contact_at)
        alerts = s.execute(select(ChurnAlert.status, ChurnAlert.open_key)).tuples().all()
        assert all((key == 1) == (status in ("open", "following")) for status, key in alerts)

        linkmen = s.execute(select(Linkman)).scalars().all()
        assert all(re.fullmatch(r"1[3-9]\d{9}", m.mobile or "") for m in linkmen)
        birthdays_today = [m for m in linkmen if m.birthday and (m.birthday.month, m.birthday.day)
                           == (today.month, today.day)]
        if (today.month, today.day) != (2, 29):
            assert len(birthdays_today) >= 3

        pending_today = s.execute(select(func.count()).select_from(CustomerCare).where(
            CustomerCare.status == "pending", CustomerCare.due_date == today)).scalar()
        assert pending_today and pending_today >= 3
        assert s.execute(select(func.count()).select_from(CustomerCare).where(
            CustomerCare.status == "done", CustomerCare.feedback.is_not(None))).scalar()
        assert s.execute(select(func.count()).select_from(CarePlan)).scalar()

        opportunities = s.execute(select(SalesOpportunity)).scalars().all()
        stages = {o.stage for o in opportunities if o.status == "open"}
        assert stages == {"initial", "requirement", "proposal", "negotiation", "contract"}
        assert {o.status for o in opportunities} == {"open", "won", "lost"}
        assert all(isinstance(o.amount, Decimal) and o.amount > 0 for o in opportunities)

        categories = set(s.execute(select(Product.category)).scalars())
        assert categories == {"hardware", "software", "service", "consumable", "solution"}
        orders = s.execute(select(CustomerOrder)).scalars().all()
        assert orders
        totals = Counter[int]()
        for item in s.execute(select(OrderItem)).scalars():
            totals[item.order_id] += item.unit_price * item.quantity
        assert all(o.amount == totals[o.id] for o in orders)

        assert s.execute(select(func.count()).select_from(CustomerTransfer)).scalar() == 2
        assert s.execute(select(func.count()).select_from(ChurnRule)).scalar()
        assert s.execute(select(func.count()).select_from(ChurnAlert)).scalar()
        count_before = len(customers)

    result = run_cli("demo")
    assert result.exit_code == 1
    assert "不会再次写入" in result.output
    assert _counts(Customer) == [count_before]


def _clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["HOME"] = str(folder)
    return env


@serve_test
@pytest.mark.cli_command("serve")
def test_serve_in_an_empty_folder_gives_a_chinese_login_page(tmp_path: Path) -> None:
    port = free_port()
    proc = start_cli("serve", "--port", str(port), cwd=tmp_path, env=_clean_env(tmp_path))
    try:
        page = wait_for(f"http://127.0.0.1:{port}/admin/login", proc)
    finally:
        out = stop_cli(proc)
    assert "登录" in page and 'name="username"' in page
    assert f"http://127.0.0.1:{port}/admin/" in out
    assert "用户名:admin" in out and re.search(r"密码:\s+\S{10,}", out)
    assert "Traceback" not in out
    assert (tmp_path / "data" / "crm.sqlite3").exists()
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o777 == 0o600

    # A second start finds everything in place: no new administrator, no password printed.
    proc = start_cli("serve", "--port", str(port), cwd=tmp_path, env=_clean_env(tmp_path))
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
    finally:
        out = stop_cli(proc, ctrl_c=True)
    assert "已启动" in out and "用户名:admin" not in out
    # Ctrl+C stops it cleanly: one sentence, exit 0, no library chatter before the banner
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("服务已停止。"), out
    assert "Aborted" not in out and "Traceback" not in out and "apscheduler" not in out


@serve_test
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test certificate")
def test_serve_https_with_certfile_and_keyfile(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    env = _clean_env(tmp_path)
    env["CRM_ADMIN_PASSWORD"] = "Initial12345"
    proc = start_cli("serve", "--port", str(port), "--certfile", str(cert), "--keyfile", str(key), cwd=tmp_path,
                     env=env)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        page = wait_for(f"https://127.0.0.1:{port}/admin/login", proc, context=context)
    finally:
        out = stop_cli(proc)
    assert "登录" in page
    assert f"https://127.0.0.1:{port}/admin/" in out
    assert "CRM_ADMIN_PASSWORD" in out and "Initial12345" not in out


@serve_test
def test_serve_with_two_workers_answers_small_requests_without_delay(tmp_path: Path) -> None:
    """With several workers uvicorn binds the socket itself; Nagle's algorithm must still be off, or every
    small answer waits ~40 ms for the client's delayed acknowledgement."""
    import http.client

    port = free_port()
    proc = start_cli("serve", "--port", str(port), "--workers", "2", cwd=tmp_path, env=_clean_env(tmp_path))
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one kept-alive connection
        times = []
        for number in range(24):  # the first 12 only warm up (the other worker may still be starting)
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            assert reply.status == 200 and reply.read()
            if number >= 12:
                times.append(time.perf_counter() - started)
        conn.close()
    finally:
        stop_cli(proc)
    assert sorted(times)[6] < 0.025, [round(t * 1000) for t in times]  # median well under the 40 ms


@pytest.mark.cli_command("serve")
def test_serve_on_the_configured_database_answers_health_checks(engine: Any, tmp_path: Path) -> None:
    """The way production starts: CRM_DATABASE_URL names the database (SQLite or MariaDB)."""
    port = free_port()
    proc = start_cli("serve", "--port", str(port), cwd=tmp_path)
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        ready = wait_for(f"http://127.0.0.1:{port}/readyz", proc)
        login_page = wait_for(f"http://127.0.0.1:{port}/admin/login", proc)
    finally:
        out = stop_cli(proc)
    assert json.loads(health) and "登录" in login_page and ready
    assert "已启动" in out and "Traceback" not in out
    assert "用户名:admin" not in out  # the administrator exists already: no new password printed


@pytest.mark.cli_command("generate")
def test_generate_at_a_tiny_scale(engine: Any) -> None:
    from crm_admin.customers.models import Customer

    result = run_cli("generate", "--scale", "0.0005", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "customer: 100" in result.output
    assert _counts(Customer) == [100]
    again = run_cli("generate", "--scale", "0.0005")
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert _counts(Customer) == [100]


@pytest.mark.cli_command("bench")
@pytest.mark.skipif(IS_MYSQL, reason="--smoke uses its own temporary SQLite whatever the database: "
                                     "once per suite run is enough")
def test_bench_smoke_runs_every_page(tmp_path: Path) -> None:
    from crm_admin.perf.bench import PAGES

    # TMPDIR: the smoke run's own database and server folder land in the test's folder, not /tmp
    result = run_cli("bench", "--smoke", "--repeat", "1", "--out", str(tmp_path / "results"),
                     "--label", "smoke", env=cli_env(TMPDIR=str(tmp_path)), timeout=600)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results" / "smoke.json").read_text(encoding="utf-8"))
    keys = {p["key"] for p in data["pages"]}
    # the named pages, then every menu entry of each role
    assert {p.key for p in PAGES} <= keys and any(k.startswith("menu_") for k in keys)
    assert all(p["status"] != "error" for p in data["pages"])


@pytest.mark.cli_command("search-index")
def test_search_index_rebuilds_what_was_lost(engine: Any) -> None:
    from sqlalchemy import delete

    from crm_admin.core import search
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.core.models import SearchDoc, SearchGram
    from crm_admin.customers import service
    from crm_admin.customers.models import Customer

    with acting_as(SYSTEM), db.transaction() as session:
        obj = Customer(name="洱海重建索引有限公司")
        obj.code = service.next_customer_codes(session)[0]
        session.add(obj)
    with db.get_engine().begin() as conn:  # the index lost (e.g. rows written by another tool)
        conn.execute(delete(SearchGram))
        conn.execute(delete(SearchDoc))
        assert conn.execute(select(Customer.id).where(search.match(conn, Customer, "erhai"))).all() == []
    result = run_cli("search-index")
    assert result.exit_code == 0, result.output
    assert "搜索索引已重建" in result.output and "customer:" in result.output
    with db.get_engine().connect() as conn:
        assert conn.execute(select(Customer.name).where(search.match(conn, Customer, "erhai"))).all() == [
            ("洱海重建索引有限公司",)]
