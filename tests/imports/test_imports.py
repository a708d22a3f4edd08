"""Import: templates, dry run, apply in one transaction, error workbook, encodings, bad files, scale."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.contacts.models import Linkman
from crm_admin.core.context import Actor
from crm_admin.core.errors import UserError
from crm_admin.customers.codes import make_credit_code
from crm_admin.customers.importing import SPEC as CUSTOMERS
from crm_admin.customers.models import Customer
from crm_admin.imports import chunks, reading, runner
from crm_admin.products.importing import SPEC as PRODUCTS
from crm_admin.products.models import Product
from tests.customers.conftest import form_token
from tests.imports.jobs import workbook

HEADERS = ["客户名称", "统一社会信用代码", "行业", "客户等级", "电话"]


def _xlsx(rows: list[list[Any]], headers: list[str] = HEADERS) -> bytes:
    return workbook(headers, rows)


def _csv(rows: list[list[Any]], encoding: str, headers: list[str] = HEADERS) -> bytes:
    lines = [",".join(headers)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def _count(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _run(tmp_path: Any, principal: Any, data: bytes, spec: Any = CUSTOMERS, apply: bool = True) -> Any:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    job = runner.start_job(spec, principal, Actor(principal.id, principal.username), path=str(path),
                              filename="客户.xlsx", run_async=False)
    if apply and job.status == "validated" and job.valid:
        runner.apply_job(job, principal, Actor(principal.id, principal.username), run_async=False)
    return job


def _errors(job: Any) -> list[tuple[Any, ...]]:
    assert job.errors_size is not None, job.message
    wb = load_workbook(io.BytesIO(b"".join(chunks.pieces(job.id, chunks.ERRORS))), read_only=True)
    return [tuple(r) for r in wb.active.iter_rows(min_row=2, values_only=True)]


def test_dry_run_validates_every_row_and_applies_valid_ones(tmp_path: Any, make_user: Any, principal: Any,
                                                           make_customer: Any) -> None:
    make_user("wang")
    make_user("li", real_name="李经理")
    make_customer("已存在贸易有限公司", manager="li", address="李的秘密")
    good = make_credit_code()
    rows = [
        ["甲科技有限公司", good, "信息技术", "A 级(重点客户)", "13900000001"],
        ["甲科技", None, None, None, None],  # same company in the file
        ["乙公司", "91110000XXXXXXXXXX", None, None, None],  # bad credit code
        ["丙公司", None, "造火箭", None, None],  # not a dictionary label
        [None, None, None, None, None],  # blank: skipped
        ["丁公司", None, None, None, "12345"],  # bad phone
        ["已存在贸易(中国)有限责任公司", None, None, None, None],  # duplicate of another manager's
        ["+cmd|calc!A0", None, None, "B", "010-12345678"],
    ]
    p = principal("wang")
    job = _run(tmp_path, p, _xlsx(rows), apply=False)
    assert job.status == "validated", job.message
    assert (job.valid, job.rejected) == (2, 5), _errors(job)
    assert _count(Customer) == 1  # the dry run wrote nothing
    errors = {r[0]: r[1] for r in _errors(job)}
    assert "第 2 行" in errors[3]
    assert "统一社会信用代码" in errors[4]
    assert "不在字典中" in errors[5]
    assert "电话格式" in errors[7]
    assert "李经理" in errors[8] and "李的秘密" not in errors[8]
    runner.apply_job(job, p, Actor(p.id, p.username), run_async=False)
    assert job.status == "done" and job.created == 2
    with db.session_factory()() as s:
        made = s.execute(select(Customer).where(Customer.manager_id == p.id)).scalars().all()
        assert {c.name for c in made} == {"甲科技有限公司", "+cmd|calc!A0"}
        assert all(c.code.startswith("C") for c in made) and len({c.code for c in made}) == 2
        first = next(c for c in made if c.name == "甲科技有限公司")
        assert (first.industry, first.level, first.credit_code) == ("it", "A", good)
        audit_rows = s.execute(select(AuditLog).where(AuditLog.action == "import")).scalars().all()
        assert len(audit_rows) == 1 and "成功 2 行" in (audit_rows[0].detail or "")
        assert s.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "create", AuditLog.resource == "customer")).scalar_one() == 1  # the fixture's


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings(tmp_path: Any, make_user: Any, principal: Any, encoding: str) -> None:
    make_user("wang")
    job = _run(tmp_path, principal("wang"), _csv([["广州粤海物流有限公司", "", "交通物流", "", ""]], encoding))
    assert job.status == "done", job.message
    with db.session_factory()() as s:
        c = s.execute(select(Customer)).scalar_one()
    assert c.name == "广州粤海物流有限公司" and c.industry == "logistics"
    assert (c.status, c.level, c.credit_code, c.phone) == ("potential", None, None, None)


@pytest.mark.parametrize("data, message", [
    (b"", "空的"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "不是 Excel"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ".xls"),
    (b"PK\x03\x04garbage", "损坏"),
])
def test_bad_files_are_refused(tmp_path: Any, make_user: Any, principal: Any, data: bytes, message: str) -> None:
    make_user("wang")
    with pytest.raises(UserError) as err:
        _run(tmp_path, principal("wang"), data)
    assert message in err.value.message


def test_missing_required_header(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    job = _run(tmp_path, principal("wang"), _xlsx([["x"]], headers=["名字"]))
    assert job.status == "failed" and "客户名称" in job.message


def test_ten_thousand_bad_rows(tmp_path: Any, make_user: Any, principal: Any) -> None:
    make_user("wang")
    rows = [[f"坏客户{i}", "91110000OOOOOOOOOO", None, None, None] for i in range(10_000)]
    started = time.perf_counter()
    job = _run(tmp_path, principal("wang"), _csv(rows, "utf-8"))
    elapsed = time.perf_counter() - started
    assert job.status == "validated" and job.valid == 0 and job.rejected == 10_000
    assert len(_errors(job)) == 10_000
    assert _count(Customer) == 0
    assert elapsed < 60


def test_contacts_import_scope_and_primary(tmp_path: Any, make_user: Any, principal: Any,
                                           make_customer: Any) -> None:
    from crm_admin.contacts.importing import SPEC as CONTACTS

    make_user("wang")
    make_user("li")
    mine = make_customer("甲", manager="wang")
    make_customer("乙", manager="li")
    headers = ["客户编号", "客户名称", "姓名", "手机", "生日", "主联系人"]
    rows = [
        [mine.code, None, "张三", "13800000000", "1990-02-28", "是"],
        [None, "甲", "李四", "13800000001", "1990/3/1", "是"],  # second primary in file
        [None, "乙", "王五", None, None, None],  # another manager's customer
        [mine.code, None, "赵六", "1380000", None, None],  # bad mobile
        [mine.code, None, "钱七", None, "去年", None],  # bad date
    ]
    job = _run(tmp_path, principal("wang"), _xlsx(rows, headers), spec=CONTACTS)
    assert job.status == "done", job.message
    assert job.created == 1 and job.rejected == 4
    with db.session_factory()() as s:
        lm = s.execute(select(Linkman)).scalar_one()
    assert (lm.name, lm.is_primary, lm.birthday_md) == ("张三", True, 228)


def test_products_import_admin_only_over_http(make_user: Any, login_as: Any, admin_client: Any) -> None:
    make_user("wang")
    assert login_as("wang").get("/admin/import/product").status_code == 403
    page = admin_client.get("/admin/import/product")
    assert page.status_code == 200
    data = _xlsx([["P1", "路由器", "硬件设备", "300.5", "3", "是"], ["P1", "重复", None, None, None, None],
                  ["P2", "坏价格", None, "abc", None, None]],
                 headers=["产品编号", "产品名称", "类别", "价格", "库存", "在售"])
    r = admin_client.post("/admin/import/product", data={"csrf_token": form_token(page.text)},
                          files={"file": ("产品.xlsx", data)}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    job_url = r.headers["location"]
    for _ in range(100):
        status = admin_client.get(job_url + "/status").json()
        if not status["running"]:
            break
        time.sleep(0.1)
    assert status["status"] == "validated" and status["valid"] == 1 and status["rejected"] == 2
    assert admin_client.get(job_url + "/errors.xlsx").status_code == 200
    r = admin_client.post(job_url + "/apply", data={"csrf_token": form_token(page.text)},
                          headers={"accept": "application/json"})
    assert r.status_code == 200
    for _ in range(100):
        status = admin_client.get(job_url + "/status").json()
        if not status["running"]:
            break
        time.sleep(0.1)
    assert status["status"] == "done" and status["created"] == 1
    with db.session_factory()() as s:
        assert str(s.execute(select(Product.price)).scalar_one()) == "300.50"
    # a job is private to its owner
    assert login_as("wang").get(job_url + "/status").status_code in (403, 404)


def test_templates_have_chinese_headers(admin_client: Any) -> None:
    r = admin_client.get("/admin/import/customer/template.xlsx")
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content)).worksheets[0]
    assert ws.cell(1, 1).value == "客户名称*"
    r = admin_client.get("/admin/import/customer/template.csv")
    assert r.content.startswith(b"\xef\xbb\xbf") and "客户名称*" in r.content.decode("utf-8-sig")


def test_readonly_has_no_import(make_user: Any, login_as: Any) -> None:
    make_user("ro", ("readonly",))
    assert login_as("ro").get("/admin/import/customer").status_code == 403


def test_size_known_when_reading_starts(tmp_path: Any) -> None:
    """Progress has a total even for files written in streaming mode (no size in the sheet header)."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet()
    ws.append(HEADERS)
    for i in range(1234):
        ws.append([f"客户{i}", None, None, None, None])
    path = tmp_path / "streamed.xlsx"
    wb.save(path)
    (tmp_path / "rows.csv").write_bytes(_csv([["甲"], ["乙"], ["丙"]], "utf-8", headers=["客户名称"]))
    sizes: list[int | None] = []
    rows = reading.read_rows(str(path), "xlsx", CUSTOMERS, sizes.append)
    assert next(rows).raw["name"] == "客户0" and sizes == [1234]
    assert len(list(reading.read_rows(str(tmp_path / "rows.csv"), "csv", CUSTOMERS, sizes.append))) == 3
    assert sizes == [1234, 3]


def test_unused_products_spec() -> None:
    assert PRODUCTS.key == "product"


def test_importers_register_themselves_in_page_order(admin_client: Any) -> None:
    """The import package imports no importer (a contract in pyproject.toml): each registers its spec,
    and the page shows them in their own order."""
    from crm_admin.imports import registry

    assert list(registry.specs()) == ["customer", "linkman", "product"]
    assert registry.spec("customer") is CUSTOMERS and registry.spec("nothing") is None
    page = admin_client.get("/admin/import/linkman").text
    tabs = [page.index(f'href="http://testserver/admin/import/{key}"') for key in ("customer", "linkman", "product")]
    assert tabs == sorted(tabs)
    assert admin_client.get("/admin/import", follow_redirects=False).headers["location"].endswith("/admin/import/customer")
    assert admin_client.get("/admin/import/nothing").status_code == 404
