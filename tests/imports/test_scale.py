"""Scale checks (run with CRM_SCALE=1): 50,000-row customer and contact imports, a 200,000-row streamed export.

They print the measured time and memory; run them on purpose, not in every test run:
``CRM_SCALE=1 .venv/bin/pytest tests/imports/test_scale.py -q -s``
"""

from __future__ import annotations

import csv
import io
import os
import resource
import time
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from crm_admin import db
from crm_admin.core.context import Actor
from crm_admin.customers.importing import SPEC as CUSTOMERS
from crm_admin.customers.models import Customer
from crm_admin.customers.service import name_key
from crm_admin.imports import runner

pytestmark = pytest.mark.skipif(os.environ.get("CRM_SCALE") != "1", reason="scale check: set CRM_SCALE=1")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_import_50000_rows(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["客户名称", "行业", "客户等级", "电话", "地区"])
    for i in range(50_000):
        w.writerow([f"规模测试客户{i:05d}有限公司", "制造业", "B", f"139{i:08d}", "上海"])
    path = tmp_path / "big.csv"
    path.write_bytes(buf.getvalue().encode("gb18030"))
    _import_all(CUSTOMERS, principal("wang"), path, "rows")


def test_import_50000_rows_xlsx(tmp_path: Any, make_user: Any, principal: Any) -> None:
    """The benchmark's workbook (every template column, as a sales assistant fills it in) is within
    the upload limits and imports whole."""
    from crm_admin.perf.import_bench import build_workbook

    make_user("wang")
    path = tmp_path / "big.xlsx"
    build_workbook(path, 50_000, tag="规模", run=7, managers=["wang"])
    _import_all(CUSTOMERS, principal("wang"), path, "rows (.xlsx)")


def _import_all(spec: Any, p: Any, path: Any, what: str) -> None:
    """Dry run and apply ``path`` as ``p``; all 50,000 rows must be imported; prints the times."""
    t0 = time.perf_counter()
    job = runner.start_job(spec, p, Actor(p.id, p.username), path=str(path), filename=path.name,
                              run_async=False)
    t1 = time.perf_counter()
    runner.apply_job(job, p, Actor(p.id, p.username), run_async=False)
    t2 = time.perf_counter()
    assert job.status == "done", job.message
    assert job.created == 50_000
    print(f"\nimport 50,000 {what}: dry run {t1 - t0:.1f}s, apply {t2 - t1:.1f}s, max RSS {_rss_mb():.0f} MB",
          flush=True)


def test_import_50000_contacts(tmp_path: Any, make_user: Any, principal: Any) -> None:
    from crm_admin.contacts.importing import SPEC as CONTACTS

    make_user("wang")
    wang = principal("wang")
    now = db.utcnow()
    with db.transaction() as s:
        s.execute(insert(Customer), [
            {"code": f"K{i:08d}", "name": f"联系人测试客户{i}", "name_key": name_key(f"联系人测试客户{i}"),
             "status": "active", "manager_id": wang.id, "version": 1, "created_at": now, "updated_at": now}
            for i in range(5_000)])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["客户编号", "姓名", "性别", "手机", "邮箱", "生日", "备注"])
    for i in range(50_000):  # empty cells vary from row to row, as in a real sheet
        w.writerow([f"K{i % 5_000:08d}", f"联系人{i:05d}", ("男", "女", "")[i % 3], f"139{i:08d}",
                    "" if i % 3 else f"c{i}@example.com", "" if i % 4 else "1985-06-18", "" if i % 2 else "老客户"])
    path = tmp_path / "contacts.csv"
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))
    _import_all(CONTACTS, wang, path, "contacts")


def test_export_200000_rows(make_user: Any, admin_client: Any) -> None:
    now = db.utcnow()
    with db.transaction() as s:
        for start in range(0, 200_000, 10_000):
            s.execute(insert(Customer), [
                {"code": f"X{i:08d}", "name": f"导出测试{i}", "name_key": name_key(f"导出测试{i}"),
                 "status": "active", "version": 1, "created_at": now, "updated_at": now}
                for i in range(start, start + 10_000)])
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(Customer)).scalar_one() == 200_000
    for fmt in ("csv", "xlsx"):
        t0 = time.perf_counter()
        size = 0
        with admin_client.stream("GET", f"/admin/customer/export/{fmt}") as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                size += len(chunk)
        elapsed = time.perf_counter() - t0
        print(f"\nexport 200,000 rows as {fmt}: {elapsed:.1f}s, {size / 1e6:.1f} MB, "
              f"max RSS so far {_rss_mb():.0f} MB", flush=True)


def test_update_10000_customers(tmp_path: Any, make_user: Any, principal: Any) -> None:
    """An import that updates (issue 16): 10,000 existing customers matched by credit code, three columns
    picked, each row changing two of them; every customer updated with its field-level audit row."""
    from crm_admin.audit.models import AuditLog
    from crm_admin.perf.import_bench import _credit_code

    make_user("wang")
    wang = principal("wang")
    now = db.utcnow()
    with db.transaction() as s:
        s.execute(insert(Customer), [
            {"code": f"U{i:08d}", "name": f"更新测试客户{i:05d}有限公司", "name_key": name_key(f"更新测试客户{i:05d}"),
             "credit_code": _credit_code(3, i), "phone": f"139{i:08d}", "level": "B", "region": "北京",
             "status": "active", "manager_id": wang.id, "version": 1, "created_at": now, "updated_at": now}
            for i in range(10_000)])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["统一社会信用代码", "客户名称", "电话", "客户等级", "地区"])
    for i in range(10_000):
        w.writerow([_credit_code(3, i), "", f"137{i:08d}", "A", "北京" if i % 2 else "上海"])
    path = tmp_path / "update.csv"
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))
    t0 = time.perf_counter()
    job = runner.start_job(CUSTOMERS, wang, Actor(wang.id, wang.username), path=str(path), filename=path.name,
                           options={"match_by": "credit_code", "update_columns": ["phone", "level", "region"]},
                           run_async=False)
    t1 = time.perf_counter()
    assert job.status == "validated" and job.updated == 10_000, job.message
    runner.apply_job(job, wang, Actor(wang.id, wang.username), run_async=False)
    t2 = time.perf_counter()
    assert job.status == "done" and job.updated == 10_000, job.message
    with db.session_factory()() as s:
        assert s.execute(select(func.count()).select_from(Customer).where(Customer.level == "A",
                                                                          Customer.version == 2)).scalar_one() == 10_000
        assert s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == "update")).scalar_one() == 10_000
    print(f"\nupdate import of 10,000 customers: dry run {t1 - t0:.1f}s, apply {t2 - t1:.1f}s, "
          f"max RSS {_rss_mb():.0f} MB", flush=True)
