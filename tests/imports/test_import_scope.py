"""Import's "assign to" goes through the same rule as the customer form's manager picker (issue: a sales
lead of 一部 posted ``manager_id`` of a manager in 二部, of the admin or of a read-only user, applied the
job, and the customers were created in that person's book)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_admin import db
from tests.company import World
from tests.conftest import csrf_token
from tests.imports.jobs import wait, workbook


def _workbook(rows: list[list[Any]]) -> bytes:
    return workbook(["客户名称", "客户经理"], rows)


def _customers_named(prefix: str) -> list[tuple[str, int | None]]:
    from crm_admin.customers.models import Customer

    with db.session_factory()() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(Customer.name, Customer.manager_id).where(Customer.name.like(f"{prefix}%")))]


def _upload(client: Any, manager_id: str, rows: list[list[Any]]) -> Any:
    return client.post("/admin/import/customer",
                       data={"csrf_token": csrf_token(client), "manager_id": manager_id},
                       files={"file": ("客户.xlsx", _workbook(rows))}, follow_redirects=False)


def _wait(client: Any, job_url: str) -> dict[str, Any]:
    return wait(client, job_url)


def _apply(client: Any, job_url: str) -> dict[str, Any]:
    assert _wait(client, job_url)["status"] == "validated"
    client.post(job_url + "/apply", data={"csrf_token": csrf_token(client)},
                headers={"accept": "application/json"})
    return _wait(client, job_url)


@pytest.fixture
def readonly_in_team(world: World, make_user: Callable[..., Any]) -> int:
    return int(make_user("ro_s1", ["readonly"], dept_id=world.depts["s1"]).id)


@pytest.mark.parametrize("target", ["mgr_c", "admin", "ro", "ro_s1", "nobody"])
def test_lead_cannot_import_into_a_book_outside_the_rule(world: World, login_as: Any, target: str,
                                                         readonly_in_team: int) -> None:
    from crm_admin.accounts.models import SysUser

    with db.session_factory()() as session:
        ids = {name: uid for name, uid in session.execute(select(SysUser.username, SysUser.id))}
    manager_id = {"nobody": "987654", "ro_s1": str(readonly_in_team)}.get(target) or str(ids[target])
    lead = login_as("lead")
    response = _upload(lead, manager_id, [["越界导入甲有限公司", None]])
    assert response.status_code == 400
    text = response.text
    expected = {"mgr_c": "不在您的数据范围内", "admin": "不在您的数据范围内", "ro": "不在您的数据范围内",
                "ro_s1": "不能负责客户", "nobody": "不存在"}[target]
    assert expected in text, text[-2000:]
    assert "Traceback" not in text and "Error" not in text
    assert _customers_named("越界导入") == []


def test_lead_may_import_into_a_team_members_book(world: World, login_as: Any) -> None:
    lead = login_as("lead")
    response = _upload(lead, str(world.users["mgr_b"]), [["本部导入甲有限公司", None]])
    assert response.status_code == 303, response.text[-1500:]
    status = _apply(lead, response.headers["location"])
    assert status["status"] == "done", status
    assert _customers_named("本部导入") == [("本部导入甲有限公司", world.users["mgr_b"])]


def test_manager_column_passes_the_same_check_per_row(world: World, login_as: Any,
                                                      readonly_in_team: int) -> None:
    lead = login_as("lead")
    rows = [["逐行导入甲有限公司", "mgr_a"], ["逐行导入乙有限公司", "mgr_c"], ["逐行导入丙有限公司", "admin"],
            ["逐行导入丁有限公司", "ro_s1"], ["逐行导入戊有限公司", "no_such_user"]]
    response = _upload(lead, "", rows)
    assert response.status_code == 303
    job_url = response.headers["location"]
    status = _wait(lead, job_url)
    assert status["valid"] == 1 and status["rejected"] == 4, status
    status = _apply(lead, job_url)
    assert status["status"] == "done" and status["created"] == 1
    assert _customers_named("逐行导入") == [("逐行导入甲有限公司", world.users["mgr_a"])]


def test_assignee_who_left_before_the_job_ran_is_refused_at_apply(world: World, login_as: Any) -> None:
    from crm_admin.accounts.models import SysUser

    lead = login_as("lead")
    response = _upload(lead, str(world.users["mgr_b"]), [["离职导入甲有限公司", None]])
    job_url = response.headers["location"]
    assert _wait(lead, job_url)["status"] == "validated"
    with db.transaction() as session:
        user = session.get(SysUser, world.users["mgr_b"])
        assert user is not None
        user.is_active = False
    status = _apply(lead, job_url)
    assert status["status"] == "failed" and "已停用" in status["message"], status
    assert _customers_named("离职导入") == []


def test_manager_without_assign_cannot_name_anyone(world: World, login_as: Any) -> None:
    from crm_admin.customers.models import Customer

    manager = login_as("mgr_a")
    response = _upload(manager, str(world.users["mgr_b"]), [["无权分配甲有限公司", None]])
    assert response.status_code == 400 and "没有分配客户经理的权限" in response.text
    with db.session_factory()() as session:
        assert session.execute(select(func.count()).select_from(Customer)
                               .where(Customer.name.like("无权分配%"))).scalar() == 0
