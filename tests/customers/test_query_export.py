"""Combined query, saved queries and the streamed export (filters, scope, BOM, formula injection)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select, update

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.customers.models import Customer, SavedQuery
from tests.customers.conftest import form_token


def _names(html: str, candidates: list[str]) -> set[str]:
    html = html.replace("<mark>", "").replace("</mark>", "")  # the searched part is marked
    return {n for n in candidates if f">{n}<" in html}


def _seed(make_user: Any, make_customer: Any) -> list[str]:
    make_user("wang")
    make_user("li")
    make_customer("华东机械有限公司", manager="wang", industry="manufacturing", level="A", region="上海")
    make_customer("华南软件有限公司", manager="wang", industry="it", level="B", region="广州")
    make_customer("北方物流有限公司", manager="wang", industry="logistics", level="A", region="北京")
    make_customer("华北李氏贸易", manager="li", industry="retail", level="A", region="北京")
    return ["华东机械有限公司", "华南软件有限公司", "北方物流有限公司", "华北李氏贸易"]


def test_prefix_query_and_dictionary_filters_compose_with_scope(make_user: Any, make_customer: Any,
                                                                login_as: Any) -> None:
    names = _seed(make_user, make_customer)
    c = login_as("wang")
    assert _names(c.get("/admin/customer/list?q=华").text, names) == {"华东机械有限公司", "华南软件有限公司"}
    assert _names(c.get("/admin/customer/list?q=机械").text, names) == {"华东机械有限公司"}  # any part
    assert _names(c.get("/admin/customer/list?level=A").text, names) == {"华东机械有限公司", "北方物流有限公司"}
    assert _names(c.get("/admin/customer/list?level=A&region=北京").text, names) == {"北方物流有限公司"}
    r = c.get("/admin/customer/list?q=华&industry=it&sortBy=name&sort=asc")
    assert _names(r.text, names) == {"华南软件有限公司"}
    # the other manager's customer never shows, whatever the conditions
    assert "华北李氏贸易" not in c.get("/admin/customer/list?q=华北").text


def test_wildcards_are_literal(make_user: Any, make_customer: Any, login_as: Any) -> None:
    _seed(make_user, make_customer)
    c = login_as("wang")
    assert "华东机械" not in c.get("/admin/customer/list?q=%25").text
    assert "华东机械" not in c.get("/admin/customer/list?q=_").text


def test_contact_ranges_and_open_opportunity(make_user: Any, make_customer: Any, login_as: Any) -> None:
    from crm_admin.opportunities.models import SalesOpportunity

    names = _seed(make_user, make_customer)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with db.transaction() as s:
        s.execute(update(Customer).where(Customer.name == "华东机械有限公司").values(last_contact_at=old))
        s.execute(update(Customer).where(Customer.name == "华南软件有限公司")
                  .values(last_contact_at=dt.datetime.now(dt.UTC)))
        cid = s.execute(select(Customer.id).where(Customer.name == "北方物流有限公司")).scalar_one()
        s.add(SalesOpportunity(customer_id=cid, title="仓储项目", stage="initial", status="open"))
    c = login_as("wang")
    got = _names(c.get("/admin/customer/list?no_contact_days=30").text, names)
    assert got == {"华东机械有限公司", "北方物流有限公司"}
    got = _names(c.get("/admin/customer/list?no_contact_days=30&level=A&has_open_opp=0").text, names)
    assert got == {"华东机械有限公司"}
    assert _names(c.get("/admin/customer/list?has_open_opp=1").text, names) == {"北方物流有限公司"}
    from zoneinfo import ZoneInfo

    day = old.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()  # ranges are local dates
    assert _names(c.get(f"/admin/customer/list?contact_from={day}&contact_to={day}").text, names) == {
        "华东机械有限公司"}
    r = c.get("/admin/customer/list?created_from=not-a-date")
    assert r.status_code == 200 and "格式不正确" in r.text


def test_saved_queries_are_per_user(make_user: Any, make_customer: Any, login_as: Any) -> None:
    _seed(make_user, make_customer)
    c = login_as("wang")
    token = form_token(c.get("/admin/customer/list").text)
    r = c.post("/admin/customer/saved-queries", data={"name": "我的重点客户查询", "csrf_token": token,
                                                      "query": "level=A&no_contact_days=30&page=3&evil=1"},
               follow_redirects=False)
    assert r.status_code == 302
    with db.session_factory()() as s:
        row = s.execute(select(SavedQuery)).scalar_one()
    assert row.query_string == "level=A&no_contact_days=30"
    assert "我的重点客户查询" in c.get("/admin/customer/list").text
    other = login_as("li")
    assert "我的重点客户查询" not in other.get("/admin/customer/list").text
    # someone else's saved query cannot be deleted
    r = other.post(f"/admin/customer/saved-queries/{row.id}/delete",
                   data={"csrf_token": form_token(other.get("/admin/customer/list").text)})
    with db.session_factory()() as s:
        assert s.get(SavedQuery, row.id) is not None


def test_csv_export_follows_filters_scope_and_is_safe(make_user: Any, make_customer: Any, login_as: Any) -> None:
    _seed(make_user, make_customer)
    make_customer("=HYPERLINK(\"http://evil\",\"x\")", manager="wang", level="A", remark="+cmd|' /C calc'!A0")
    c = login_as("wang")
    r = c.get("/admin/customer/export/csv?level=A")
    assert r.status_code == 200
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "客户编号" and rows[0][1] == "客户名称"
    names = {row[1] for row in rows[1:]}
    assert "华东机械有限公司" in names and "北方物流有限公司" in names
    assert "华南软件有限公司" not in names and "华北李氏贸易" not in names
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in names
    assert any(row[-1] == "'+cmd|' /C calc'!A0" for row in rows[1:])
    assert "A 级(重点客户)" in {row[5] for row in rows[1:]}
    assert {row[12] for row in rows[1:]} == {"wang(wang)"}  # the manager column: real name (user name)
    with db.session_factory()() as s:
        entry = s.execute(select(AuditLog).where(AuditLog.action == "export")).scalars().all()
    assert entry and "level=A" in (entry[-1].detail or "")


def test_xlsx_export_uses_the_list_page_filters_from_referer(make_user: Any, make_customer: Any,
                                                             login_as: Any) -> None:
    _seed(make_user, make_customer)
    c = login_as("wang")
    r = c.get("/admin/customer/export/xlsx",
              headers={"referer": "http://testserver/admin/customer/list?q=%E5%8D%8E&sortBy=name&sort=desc"})
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    ws = wb.active
    values = [row[1] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert set(values) == {"华东机械有限公司", "华南软件有限公司"}


def test_readonly_cannot_export(make_user: Any, make_customer: Any, login_as: Any) -> None:
    _seed(make_user, make_customer)
    make_user("ro", ("readonly",))
    c = login_as("ro")
    assert c.get("/admin/customer/export/csv").status_code == 403


def test_every_list_exports_with_bom(make_user: Any, make_customer: Any, admin_client: Any) -> None:
    _seed(make_user, make_customer)
    for identity in ("customer", "linkman", "follow-up", "sales-opportunity", "product", "customer-order"):
        r = admin_client.get(f"/admin/{identity}/export/csv")
        if r.status_code == 404:
            continue
        assert r.status_code == 200, identity
        assert r.content.startswith(b"\xef\xbb\xbf"), identity


def test_export_streams_every_row_past_one_batch(make_user: Any, admin_client: Any) -> None:
    from sqlalchemy import insert

    from crm_admin.customers.service import name_key

    user = make_user("wang")
    now = db.utcnow()
    with db.transaction() as s:
        s.execute(insert(Customer), [
            {"code": f"B{i:06d}", "name": f"批量{i}", "name_key": name_key(f"批量{i}"), "manager_id": user.id,
             "status": "active", "version": 1, "created_at": now, "updated_at": now} for i in range(2_500)])
    for fmt in ("csv", "xlsx"):
        r = admin_client.get(f"/admin/customer/export/{fmt}")
        assert r.status_code == 200
        if fmt == "csv":
            rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:]
        else:
            rows = list(load_workbook(io.BytesIO(r.content), read_only=True).active.iter_rows(
                min_row=2, values_only=True))
        assert len(rows) == 2_500, fmt
        assert len({row[0] for row in rows}) == 2_500
