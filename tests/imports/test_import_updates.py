"""Import that updates existing customers (issue 16): matched by credit code or customer code, only the
columns the user picked change, through the customer form's validation, version check and field-level
audit; a customer outside the importer's edit scope is never matched for an update."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from crm_admin import db
from crm_admin.audit.models import AuditLog
from crm_admin.customers.codes import make_credit_code
from crm_admin.customers.models import Customer
from crm_admin.transfers.models import CustomerTransfer
from tests.company import World
from tests.conftest import csrf_token
from tests.imports.jobs import wait, workbook

RNG = random.Random(16)


def _code() -> str:
    return make_credit_code(RNG)


def _upload(client: Any, headers: list[str], rows: list[list[Any]], **form: Any) -> Any:
    data = {"csrf_token": csrf_token(client), **form}
    return client.post("/admin/import/customer", data=data,
                       files={"file": ("客户.xlsx", workbook(headers, rows))}, follow_redirects=False)


def _dry_run(client: Any, headers: list[str], rows: list[list[Any]], **form: Any) -> tuple[str, dict[str, Any]]:
    response = _upload(client, headers, rows, **form)
    assert response.status_code == 303, response.text[-2000:]
    url = response.headers["location"]
    return url, wait(client, url)


def _apply(client: Any, url: str) -> dict[str, Any]:
    r = client.post(url + "/apply", data={"csrf_token": csrf_token(client)}, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    return wait(client, url)


def _customer(customer_id: int) -> Customer:
    with db.session_factory()() as session:
        found = session.get(Customer, customer_id)
        assert found is not None
        session.expunge(found)
        return found


def _make(name: str, manager_id: int, **fields: Any) -> int:
    from crm_admin.customers import service

    with db.transaction() as session:
        obj = Customer(name=name, manager_id=manager_id, **fields)
        service.validate_customer(obj)
        obj.code = service.next_customer_codes(session)[0]
        session.add(obj)
        session.flush()
        return int(obj.id)


def _audit(action: str, customer_id: int) -> list[dict[str, Any]]:
    with db.session_factory()() as session:
        return [dict(c or {}) for c in session.execute(
            select(AuditLog.changes).where(AuditLog.action == action, AuditLog.resource == "customer",
                                           AuditLog.resource_id == str(customer_id)).order_by(AuditLog.id)).scalars()]


def _errors(client: Any, url: str) -> list[tuple[Any, ...]]:
    r = client.get(url + "/errors.xlsx")
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content), read_only=True).active
    return [tuple(row) for row in ws.iter_rows(min_row=2, values_only=True)]


HEADERS = ["客户名称", "统一社会信用代码", "电话", "地区", "客户等级"]


def test_dry_run_shows_each_row_and_apply_changes_only_the_picked_columns(world: World, login_as: Any) -> None:
    a_code, b_code, c_code, new_code = _code(), _code(), _code(), _code()
    a = _make("更新甲有限公司", world.users["mgr_a"], credit_code=a_code, phone="13900000001", region="北京",
              level="B")
    b = _make("更新乙有限公司", world.users["mgr_b"], credit_code=b_code, phone="13900000002", level="A")
    c = _make("更新丙有限公司", world.users["mgr_c"], credit_code=c_code, phone="13900000003", level="C")
    lead = login_as("lead")
    url, status = _dry_run(lead, HEADERS, [
        ["更新甲有限公司", a_code, "13911112222", "上海", "A"],  # phone and level change; region not picked
        ["更新乙有限公司", b_code, "13900000002", "", "A"],  # as it is: unchanged
        ["更新丁有限公司", new_code, "13900000004", "广州", "B"],  # not in the system: created
        ["更新甲有限公司", a_code, "13933334444", "", ""],  # the same customer again: refused
        ["更新丙有限公司", c_code, "13955556666", "", "A"],  # another team's customer: refused, untouched
    ], match_by="credit_code", update_columns=["phone", "level"])
    assert status["status"] == "validated", status
    assert (status["valid"], status["updated"], status["unchanged"], status["rejected"]) == (2, 1, 1, 2)
    assert "新建 1 行,更新 1 行,无变化 1 行,有问题 2 行" in status["message"]
    page = lead.get(url).text
    assert 'id="import-plan"' in page
    assert "13900000001 → 13911112222" in page
    assert "上海" not in page  # a column not picked is not shown, nor changed
    assert "与第 2 行的统一社会信用代码重复" in page
    assert "由 mgr_c 负责" in page and "13955556666" not in page
    updates = lead.get(url, params={"show": "update"}).text
    assert "13911112222" in updates and "更新乙有限公司" not in updates
    # nothing written by the dry run
    assert _customer(a).phone == "13900000001"

    done = _apply(lead, url)
    assert done["status"] == "done", done
    assert (done["created"], done["updated"], done["unchanged"], done["rejected"]) == (1, 1, 1, 2)
    after = _customer(a)
    assert (after.phone, after.level, after.region, after.name) == ("13911112222", "A", "北京", "更新甲有限公司")
    assert after.version == 2
    assert _customer(b).version == 1
    untouched = _customer(c)
    assert (untouched.phone, untouched.level, untouched.version) == ("13900000003", "C", 1)
    # the form's audit: one update row with the fields that changed, before and after
    (changes,) = _audit("update", a)
    assert changes == {"phone": ["13900000001", "13911112222"], "level": ["B", "A"]}
    assert _audit("update", b) == [] and _audit("update", c) == []
    with db.session_factory()() as session:
        summary = session.execute(select(AuditLog.changes).where(AuditLog.action == "import")).scalars().all()
        created = session.execute(select(Customer.name).where(Customer.credit_code == new_code)).scalar()
    assert summary[-1]["updated"] == 1 and summary[-1]["created"] == 1 and summary[-1]["match_by"] == "credit_code"
    assert created == "更新丁有限公司"
    assert [r[1] for r in _errors(lead, url)] == ["与第 2 行的统一社会信用代码重复(同一客户只能出现一次)",
                                                 "系统中已有统一社会信用代码相同的客户(由 mgr_c 负责),不在您可修改的范围内,未更新"]


def test_a_customer_changed_after_the_dry_run_is_not_updated(world: World, login_as: Any) -> None:
    codes = [_code(), _code()]
    first = _make("版本甲有限公司", world.users["mgr_a"], credit_code=codes[0], phone="13800000011")
    second = _make("版本乙有限公司", world.users["mgr_a"], credit_code=codes[1], phone="13800000012")
    manager = login_as("mgr_a")
    url, status = _dry_run(manager, ["统一社会信用代码", "电话"], [[codes[0], "13811110011"], [codes[1], "13811110012"]],
                           match_by="credit_code", update_columns=["phone"])
    assert status["updated"] == 2, status
    # someone saves the first customer meanwhile (its version moves on)
    with db.transaction() as session:
        session.execute(update(Customer).where(Customer.id == first).values(remark="刚改过", version=Customer.version + 1))
    done = _apply(manager, url)
    assert done["status"] == "done", done
    assert (done["updated"], done["rejected"]) == (1, 1)
    assert "未导入 1 行" in done["message"]
    assert _customer(first).phone == "13800000011" and _customer(first).remark == "刚改过"
    assert _customer(second).phone == "13811110012"
    (row,) = _errors(manager, url)
    assert row[0] == 2 and "预检之后该记录已被他人修改(版本 1 → 2)" in row[1]
    assert _audit("update", first) == [] and len(_audit("update", second)) == 1


def test_blank_cells_leave_fields_unless_the_user_ticks_clearing(world: World, login_as: Any) -> None:
    code = _code()
    customer = _make("空白甲有限公司", world.users["mgr_a"], credit_code=code, phone="13800000021",
                     email="a@example.com", region="北京")
    manager = login_as("mgr_a")
    headers = ["统一社会信用代码", "客户名称", "电话", "邮箱", "地区"]
    url, status = _dry_run(manager, headers, [[code, "", "", "b@example.com", ""]], match_by="credit_code",
                           update_columns=["name", "phone", "email", "region"])
    assert status["updated"] == 1, status
    _apply(manager, url)
    kept = _customer(customer)
    assert (kept.name, kept.phone, kept.email, kept.region) == ("空白甲有限公司", "13800000021", "b@example.com", "北京")

    url, status = _dry_run(manager, headers, [[code, "", "", "", ""]], match_by="credit_code",
                           update_columns=["name", "phone", "region"], blank_clears="1")
    assert "(空)" in manager.get(url).text
    _apply(manager, url)
    cleared = _customer(customer)
    # the name is never cleared; the others are, as ticked; e-mail was not picked
    assert (cleared.name, cleared.phone, cleared.email, cleared.region) == ("空白甲有限公司", None, "b@example.com", None)


def test_match_by_customer_code_with_manager_hand_over(world: World, login_as: Any) -> None:
    a = _customer(world.row("mgr_a", "customer"))
    b = _customer(world.row("mgr_b", "customer"))
    c = _customer(world.row("mgr_c", "customer"))
    lead = login_as("lead")
    headers = ["客户编号", "客户名称", "客户经理", "行业"]
    url, status = _dry_run(lead, headers, [
        [a.code, "", "mgr_b", ""],  # handed to mgr_b (the lead may assign within the team)
        [b.code, "", "mgr_c", ""],  # mgr_c is in another department: refused
        ["C-NOPE", "不存在有限公司", "", ""],  # a code that does not exist: refused, not created
        ["", "编号新建有限公司", "", "制造业"],  # no code: a new customer
        [c.code, "改名有限公司", "", ""],  # another team's customer: refused
    ], match_by="code", update_columns=["name", "manager"])
    assert status["status"] == "validated", status
    page = lead.get(url).text
    assert "mgr_a → mgr_b" in page
    assert "客户编号“C-NOPE”不存在" in page
    assert "不在您的数据范围内" in page  # check_assignee's refusal of mgr_c
    assert "由 mgr_c 负责" in page
    done = _apply(lead, url)
    assert (done["created"], done["updated"], done["rejected"]) == (1, 1, 3), done
    assert _customer(a.id).manager_id == world.users["mgr_b"]
    assert _customer(b.id).manager_id == world.users["mgr_b"] and _customer(c.id).name == c.name
    with db.session_factory()() as session:
        moved = session.execute(select(CustomerTransfer).where(CustomerTransfer.customer_id == a.id)
                                .order_by(CustomerTransfer.id.desc())).scalars().first()
        assert moved is not None and moved.new_manager_id == world.users["mgr_b"]
        # the customer's open work went with it, as a transfer does
        from crm_admin.opportunities.models import SalesOpportunity
        opp = session.get(SalesOpportunity, world.row("mgr_a", "opportunity"))
        assert opp is not None and opp.manager_id == world.users["mgr_b"]
    assert _audit("transfer", a.id)
    assert _audit("update", a.id)[-1]["manager_id"] == [world.users["mgr_a"], world.users["mgr_b"]]


def test_a_manager_without_assign_cannot_change_the_manager(world: World, login_as: Any) -> None:
    a = _customer(world.row("mgr_a", "customer"))
    manager = login_as("mgr_a")
    url, status = _dry_run(manager, ["客户编号", "客户经理"], [[a.code, "mgr_b"], [a.code + "X", ""]],
                           match_by="code", update_columns=["manager"])
    assert status["valid"] == 0 and status["rejected"] == 2, status
    assert "不能在导入中更换客户经理" in manager.get(url).text
    assert _customer(a.id).manager_id == world.users["mgr_a"]


def test_out_of_scope_match_is_never_updated(world: World, login_as: Any) -> None:
    """A manager matching another manager's customer (by code or credit code) learns only that it exists
    and who manages it; the customer is not touched, and no other customer is created in its place."""
    c = _customer(world.row("mgr_c", "customer"))
    manager = login_as("mgr_a")
    url, status = _dry_run(manager, ["客户编号", "电话"], [[c.code, "13700000000"]], match_by="code",
                           update_columns=["phone"])
    assert (status["valid"], status["rejected"]) == (0, 1), status
    page = manager.get(url).text
    assert "系统中已有客户编号相同的客户(由 mgr_c 负责)" in page and c.name not in page
    assert manager.post(url + "/apply", data={"csrf_token": csrf_token(manager)},
                        headers={"accept": "application/json"}).status_code == 400
    assert _customer(c.id).phone == c.phone and _customer(c.id).version == c.version


def test_an_update_must_not_duplicate_another_customer(world: World, login_as: Any) -> None:
    code = _code()
    mine = _make("重名甲有限公司", world.users["mgr_a"], credit_code=code)
    other = _customer(_make("别组重名有限公司", world.users["mgr_c"]))
    manager = login_as("mgr_a")
    url, status = _dry_run(manager, ["统一社会信用代码", "客户名称"], [[code, other.name]], match_by="credit_code",
                           update_columns=["name"])
    assert status["rejected"] == 1, status
    assert "名称相同或相近" in manager.get(url).text
    # its own name, written differently, is no duplicate of itself
    url, status = _dry_run(manager, ["统一社会信用代码", "客户名称"], [[code, "重名甲 有限公司"]],
                           match_by="credit_code", update_columns=["name"])
    assert status["updated"] == 1, status
    assert _apply(manager, url)["updated"] == 1
    assert _customer(mine).name == "重名甲 有限公司"


def test_invalid_values_are_refused_by_the_forms_rules(world: World, login_as: Any) -> None:
    code = _code()
    customer = _make("校验甲有限公司", world.users["mgr_a"], credit_code=code, phone="13800000031")
    manager = login_as("mgr_a")
    url, status = _dry_run(manager, ["统一社会信用代码", "电话", "客户等级", "状态"],
                           [[code, "12345", "", ""], [code[:-1] + "0" if code[-1] != "0" else code[:-1] + "1", "", "", ""]],
                           match_by="credit_code", update_columns=["phone", "level", "status"])
    assert status["rejected"] == 2, status
    page = manager.get(url).text
    assert "电话格式不正确" in page and "校验" in page
    assert _customer(customer).phone == "13800000031"


@pytest.mark.parametrize(("form", "message"), [
    ({"update_columns": ["phone"]}, "没有选择如何匹配已有记录"),
    ({"blank_clears": "1"}, "只用于更新已有记录"),
    ({"match_by": "name"}, "匹配方式无效"),
    ({"match_by": "credit_code"}, "请至少勾选一个要更新的列"),
    ({"match_by": "credit_code", "update_columns": ["credit_code"]}, "按统一社会信用代码匹配时不能同时更新统一社会信用代码"),
    ({"match_by": "code", "update_columns": ["code"]}, "要更新的列“code”无效"),
    ({"match_by": "code", "update_columns": ["version"]}, "要更新的列“version”无效"),
])
def test_bad_choices_get_clear_messages(world: World, login_as: Any, form: dict[str, Any], message: str) -> None:
    from crm_admin.imports.models import ImportJob

    manager = login_as("mgr_a")
    response = _upload(manager, ["客户名称"], [["选择错误有限公司"]], **form)
    assert response.status_code == 400
    assert message in response.text, response.text[-1500:]
    with db.session_factory()() as session:
        assert session.execute(select(ImportJob.id)).first() is None


def test_a_picked_column_missing_from_the_sheet(world: World, login_as: Any) -> None:
    manager = login_as("mgr_a")
    _url, status = _dry_run(manager, ["统一社会信用代码", "客户名称"], [[_code(), "缺列有限公司"]],
                           match_by="credit_code", update_columns=["phone"])
    assert status["status"] == "failed" and "表头缺少必填列:电话" in status["message"], status


def test_update_needs_the_edit_permission(world: World, login_as: Any) -> None:
    from sqlalchemy import delete

    from crm_admin.accounts.models import CasbinRule
    from crm_admin.core.permissions import bump_policy_version

    with db.transaction() as session:  # managers may import customers, but no longer edit them
        assert session.execute(delete(CasbinRule).where(
            CasbinRule.ptype == "p", CasbinRule.v0 == "role:manager", CasbinRule.v1 == "customer",
            CasbinRule.v2 == "edit")).rowcount == 1
        bump_policy_version(session.connection())
    client = login_as("mgr_a")
    page = client.get("/admin/import/customer").text
    assert 'name="file"' in page and 'name="match_by"' not in page
    response = _upload(client, ["客户名称"], [["无权更新有限公司"]], match_by="code", update_columns=["name"])
    assert response.status_code == 400 and "您没有修改客户的权限" in response.text


def test_upload_form_offers_the_choices(world: World, login_as: Any) -> None:
    page = login_as("mgr_a").get("/admin/import/customer").text
    assert 'name="match_by"' in page and "按统一社会信用代码匹配" in page and "按客户编号匹配" in page
    assert 'value="phone"' in page and "空白单元格清空该字段" in page
    template = login_as("mgr_a").get("/admin/import/customer/template.xlsx")
    notes = load_workbook(io.BytesIO(template.content)).worksheets[1]
    text = " ".join(str(c) for row in notes.iter_rows(values_only=True) for c in row if c)
    assert "客户编号" in text and "空白单元格清空该字段" in text


def test_choices_and_refusals_in_english(world: World, login_as: Any) -> None:
    client = login_as("mgr_a")
    page = client.get("/admin/import/customer", params={"lang": "en"}).text
    assert "Match by customer code" in page and "A blank cell clears the field" in page
    response = _upload(client, ["客户名称"], [["英文有限公司"]], match_by="credit_code",
                       update_columns=["credit_code"])
    assert response.status_code == 400
    assert "When matching by Unified social credit code, Unified social credit code itself cannot be updated" \
        in response.text
