"""An import that updates customers the importer sees masked (a hiding pool's customers, or anyone's for a
user without 查看敏感信息): the dry run's before → after shows the stored values masked, a cell holding
the masked value (an export of what they saw, imported back) leaves the stored value alone, any other
masked-looking value is refused; a pooled customer's manager is refused by the dry run, row by row, as
the customer form refuses it — the apply never fails the whole file for it."""

from __future__ import annotations

from typing import Any

from crm_admin import db
from crm_admin.customers.models import Customer
from tests.imports.test_import_updates import _apply, _dry_run
from tests.pools import factories as pf

ADDRESS = "上海市浦东新区张江路479号"  # shown as 上海市浦东新****
PHONE = "021-79862502"
EMAIL = "contact@jiuzhou35.com.cn"


def _pooled() -> Customer:
    pool = pf.pool("隐藏公海", mask_contacts=True)
    return pf.pooled(pool.id, "九州新能源有限公司", phone=PHONE, email=EMAIL, address=ADDRESS)


def _plan(client: Any, url: str) -> str:
    return str(client.get(url).text)


def test_dry_run_shows_a_masked_customers_values_masked(admin_client: Any) -> None:
    customer = _pooled()
    url, status = _dry_run(admin_client, ["客户名称", "客户编号", "电话", "邮箱", "地址"],
                           [["九州新能源有限公司", customer.code, "021-11112222", "new@jiuzhou.cn", "上海市黄浦区1号"]],
                           match_by="code", update_columns=["phone", "email", "address"])
    assert status["status"] == "validated" and status["updated"] == 1, status
    plan = _plan(admin_client, url)
    assert "021-11112222" in plan  # what the importer typed
    for value in (PHONE, EMAIL, ADDRESS):
        assert value not in plan, value
    assert "021-****2502" in plan and "上海市浦东新****" in plan


def test_a_masked_value_imported_back_never_overwrites_the_stored_one(admin_client: Any) -> None:
    customer = _pooled()
    url, status = _dry_run(admin_client, ["客户名称", "客户编号", "地址", "备注"],
                           [["九州新能源有限公司", customer.code, "上海市浦东新****", "导回"]],
                           match_by="code", update_columns=["address", "remark"])
    assert status["status"] == "validated", status
    done = _apply(admin_client, url)
    assert done["status"] == "done", done
    with db.session_factory()() as s:
        row = s.get(Customer, customer.id)
        assert row is not None and (row.address, row.remark) == (ADDRESS, "导回")
    # a masked-looking value that is not the stored one's mask is refused, nothing changes
    url, status = _dry_run(admin_client, ["客户名称", "客户编号", "地址"],
                           [["九州新能源有限公司", customer.code, "北京市海淀区****"]],
                           match_by="code", update_columns=["address"])
    assert status["rejected"] == 1 and status["updated"] == 0, status
    assert "脱敏" in _plan(admin_client, url)


def test_a_pooled_customers_manager_is_refused_by_the_dry_run(admin_client: Any, make_user: Any) -> None:
    make_user("lina")
    customer = _pooled()
    other = pf.pooled(customer.pool_id, "东升电子有限公司")
    url, status = _dry_run(admin_client, ["客户名称", "客户编号", "客户经理", "备注"],
                           [["九州新能源有限公司", customer.code, "lina", ""],
                            ["东升电子有限公司", other.code, "", "备注已改"]],
                           match_by="code", update_columns=["manager", "remark"])
    assert status["status"] == "validated", status
    assert (status["rejected"], status["updated"]) == (1, 1), status
    assert "公海" in _plan(admin_client, url)
    done = _apply(admin_client, url)
    assert done["status"] == "done" and done["updated"] == 1, done
    with db.session_factory()() as s:
        first, second = s.get(Customer, customer.id), s.get(Customer, other.id)
        assert first is not None and first.manager_id is None and first.pool_id == customer.pool_id
        assert second is not None and second.remark == "备注已改"
