"""Imports: a number or text that does not fit its column is reported on its own row (issue 11, hole 8).

Rows go into the database by multi-row INSERT, past the ORM; without the check, MariaDB refuses the
whole batch with an error carrying the SQL, and SQLite keeps the value.
"""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, select

from crm_admin import db
from crm_admin.contacts.models import Linkman
from crm_admin.customers.models import Customer
from crm_admin.products.models import Product
from tests.conftest import without_tokens
from tests.customers.conftest import form_token
from tests.imports.jobs import wait, workbook

LEAKS = ("SQL", "INSERT", "pymysql", "sqlite3", "Traceback", "parameters", "DataError")


def _xlsx(headers: list[str], rows: list[list[Any]]) -> bytes:
    return workbook(headers, rows)


def _count(model: Any) -> int:
    with db.session_factory()() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _wait(client: Any, job_url: str) -> dict[str, Any]:
    return wait(client, job_url)


def _import(client: Any, kind: str, data: bytes) -> tuple[dict[str, Any], dict[int, str], str]:
    """Upload, dry run, apply: (final status, row number → reason of each refused row, job URL)."""
    page = client.get(f"/admin/import/{kind}")
    assert page.status_code == 200
    token = form_token(page.text)
    r = client.post(f"/admin/import/{kind}", data={"csrf_token": token}, files={"file": ("表.xlsx", data)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    job_url = r.headers["location"]
    status = _wait(client, job_url)
    assert status["status"] == "validated", status
    book = client.get(job_url + "/errors.xlsx")
    assert book.status_code == 200
    rows = load_workbook(io.BytesIO(book.content), read_only=True).active.iter_rows(min_row=2, values_only=True)
    reasons = {int(row[0]): str(row[1]) for row in rows}
    r = client.post(job_url + "/apply", data={"csrf_token": token}, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text[:500]
    final = _wait(client, job_url)
    for text in (str(final), *reasons.values(), client.get(job_url).text):
        assert not [leak for leak in LEAKS if leak in without_tokens(text)], text[:1000]
    return final, reasons, job_url


def test_product_import_reports_each_number_that_does_not_fit(admin_client: Any) -> None:
    headers = ["产品编号", "产品名称", "价格", "库存"]
    data = _xlsx(headers, [
        ["P1", "好产品", "1999.00", "10"],                     # row 2: fits
        ["P2", "天价", "1000000000000000", "1"],               # 3
        ["P3", "负价", "-1", "1"],                             # 4
        ["P4", "三位小数", "1.999", "1"],                      # 5
        ["P5", "库存过多", "1", "3000000000"],                 # 6
        ["P6", "半个", "1", "1.5"],                            # 7
        ["P7", "数字单元格", 1e20, 1],                         # 8: a number cell, not text
        ["P" + "9" * 40, "编号过长", "1", "1"],                # 9
        ["P8", "名" * 129, "1", "1"],                          # 10
        ["P9", "不是数字", "一千", "1"],                       # 11
    ])
    final, reasons, _url = _import(admin_client, "product", data)
    assert final["status"] == "done" and final["created"] == 1 and final["rejected"] == 9, final
    assert reasons[3] == "价格超出允许范围(0 ~ 999,999,999,999.99,最多 2 位小数)"
    assert reasons[4].startswith("价格不能为负数")
    assert reasons[5].startswith("价格最多只能有 2 位小数")
    assert reasons[6] == "库存超出允许范围(0 ~ 2,147,483,647)"
    assert reasons[7].startswith("库存必须是整数")
    assert reasons[8].startswith("价格超出允许范围")
    assert reasons[9].startswith("产品编号不能超过 32 个字符")
    assert reasons[10].startswith("产品名称不能超过 128 个字符")
    assert reasons[11].startswith("价格必须是数字")
    with db.session_factory()() as s:
        assert list(s.execute(select(Product.code)).scalars()) == ["P1"]


def test_customer_import_reports_each_text_that_does_not_fit(admin_client: Any) -> None:
    headers = ["客户名称", "地址", "网站", "备注"]
    data = _xlsx(headers, [
        ["好客户有限公司", "北京", None, None],                  # row 2: fits
        ["名" * 129, None, None, None],                        # 3
        ["地址过长有限公司", "路" * 256, None, None],           # 4
        ["网站过长有限公司", None, "w" * 256, None],            # 5
        ["备注过长有限公司", None, None, "备" * 21_846],        # 6: 65,538 bytes
    ])
    final, reasons, _url = _import(admin_client, "customer", data)
    assert final["status"] == "done" and final["created"] == 1 and final["rejected"] == 4, final
    assert "128" in reasons[3] and "客户名称" in reasons[3]
    assert reasons[4].startswith("地址不能超过 255 个字符")
    assert reasons[5].startswith("网站不能超过 255 个字符")
    assert reasons[6].startswith("备注过长(最多 65,535 字节")
    assert _count(Customer) == 1


def test_contact_import_reports_each_text_that_does_not_fit(admin_client: Any, make_customer: Any) -> None:
    make_customer("甲客户有限公司")
    headers = ["客户名称", "姓名", "职位", "邮箱", "备注"]
    data = _xlsx(headers, [
        ["甲客户有限公司", "张三", "经理", None, None],             # row 2: fits
        ["甲客户有限公司", "李四", "职" * 65, None, None],          # 3
        ["甲客户有限公司", "王五", None, "a" * 120 + "@example.com", None],  # 4: 132 characters
        ["甲客户有限公司", "赵六", None, None, "备" * 21_846],      # 5
        ["甲客户有限公司", "名" * 65, None, None, None],            # 6
    ])
    final, reasons, _url = _import(admin_client, "linkman", data)
    assert final["status"] == "done" and final["created"] == 1 and final["rejected"] == 4, final
    assert reasons[3].startswith("职位不能超过 64 个字符")
    assert "邮箱" in reasons[4]
    assert reasons[5].startswith("备注过长")
    assert "姓名" in reasons[6] and "64" in reasons[6]
    assert _count(Linkman) == 1
