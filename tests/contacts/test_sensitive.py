"""Personal data (PIPL): phones, e-mail addresses and addresses are shown masked to whoever does not hold
查看敏感信息 (``sensitive_data`` / ``view``) — on lists, details pages, the 360° page, exports, search
results and edit forms — and in full to a holder within the permission's scope; a holder who sees a value
masked by a rule may show it in full, once, audited; a mask is never saved over a real value."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import create_linkman
from crm_admin.core import masking
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.customers.models import Customer
from tests.conftest import csrf_token
from tests.customers.conftest import form_token

MOBILE, MOBILE_MASKED = "13812345678", "138****5678"
PHONE, PHONE_MASKED = "010-87654321", "010-****4321"
EMAIL, EMAIL_MASKED = "zhangsan@example.com", "z***@example.com"
ADDRESS, ADDRESS_MASKED = "广东省深圳市南山区科技园1号", "广东省深圳市****"


@pytest.fixture
def company(make_user: Any, make_customer: Any, principal: Any) -> dict[str, Any]:
    """A manager's customer with a contact, and a read-only user."""
    make_user("wang")
    make_user("ro", roles=("readonly",))
    customer = make_customer("甲公司", manager="wang", phone=PHONE, email="info@jia.example.com", address=ADDRESS)
    with acting_as(SYSTEM), db.transaction() as s:
        contact = create_linkman(s, principal("wang"), customer_id=customer.id, name="张三", mobile=MOBILE,
                                 phone=PHONE, email=EMAIL)
    return {"customer": customer, "contact": contact}


@pytest.fixture
def everything_masked_by_a_rule() -> Iterator[None]:
    """A module's rule (as the public pool registers) that masks every customer even for holders."""

    def every_customer(_session: Any, _principal: Any, ids: Any) -> set[int]:
        return set(ids)

    masking.register_customer_rule(every_customer)
    try:
        yield
    finally:
        masking._RULES.remove(every_customer)


def _all(text: str, *values: str) -> bool:
    return all(v in text for v in values)


def _none(text: str, *values: str) -> bool:
    return not any(v in text for v in values)


def test_seeded_roles_hold_the_permission_within_their_scope(principal: Any, make_user: Any) -> None:
    make_user("wang")
    make_user("lead", roles=("sales_lead",))
    make_user("ro", roles=("readonly",))
    assert masking.sees_sensitive(principal("admin"))
    assert masking.sees_sensitive(principal("wang"))
    assert principal("wang").scope_for("sensitive_data", "view") == "self"
    assert principal("lead").scope_for("sensitive_data", "view") == "dept_tree"
    assert not masking.sees_sensitive(principal("ro"))


def test_an_upgraded_database_gets_the_permission_when_seeded(engine: Any) -> None:
    """A database seeded before the permission existed: the next seed (``crm-admin seed`` / ``serve``)
    adds the lines for the roles that exist, with each role's scope, and every process reloads."""
    import hashlib

    from crm_admin.accounts.models import CasbinRule, SysMeta
    from crm_admin.seeding import read_policy_lines, seed

    new = [line for line in read_policy_lines() if line[2:4] == ["sensitive_data", "view"]]
    assert {line[1] for line in new} == {"role:manager", "role:sales_lead"}
    with acting_as(SYSTEM), db.transaction() as s:  # as it was before this version
        for line in new:
            digest = hashlib.sha1(",".join(line).encode("utf-8"), usedforsecurity=False).hexdigest()
            s.execute(SysMeta.__table__.delete().where(SysMeta.key == f"seeded:{digest}"))
        s.execute(CasbinRule.__table__.delete().where(CasbinRule.v1 == "sensitive_data"))
        version = s.get(SysMeta, "policy_version").value
    with acting_as(SYSTEM), db.transaction() as s:
        report = seed(s)
    assert report.policy_lines == 2
    with db.session_factory()() as s:
        lines = {(r.v0, r.v2, r.v3) for r in s.execute(select(CasbinRule).where(CasbinRule.v1 == "sensitive_data")).scalars()}
        assert lines == {("role:manager", "view", "self"), ("role:sales_lead", "view", "dept_tree")}
        assert s.get(SysMeta, "policy_version").value > version


def test_the_permission_grid_shows_it_with_its_chinese_label(admin_client: Any) -> None:
    page = admin_client.get("/admin/policy")
    assert page.status_code == 200
    assert "查看敏感信息" in page.text and "个人信息主体请求" in page.text
    assert 'value="manager|sensitive_data|view"' in page.text
    assert 'value="manager|sensitive_data|edit"' not in page.text  # only 查看 applies to it
    assert 'value="readonly|sensitive_data|view"' in page.text


def test_readonly_sees_masked_values_on_every_page(company: dict[str, Any], login_as: Any) -> None:
    ro = login_as("ro")
    contact, customer = company["contact"], company["customer"]
    pages = {
        "contact list": ro.get("/admin/linkman/list"),
        "contact search by digits": ro.get("/admin/linkman/list", params={"search": "5678"}),
        "contact details": ro.get(f"/admin/linkman/details/{contact.id}"),
        "customer details": ro.get(f"/admin/customer/details/{customer.id}"),
        "customer 360": ro.get(f"/admin/customer/360/{customer.id}"),
    }
    for what, page in pages.items():
        assert page.status_code == 200, what
        assert _none(page.text, MOBILE, PHONE, EMAIL, ADDRESS), what
    assert _all(pages["contact list"].text, "张三", MOBILE_MASKED, EMAIL_MASKED)
    assert "138****" in pages["contact search by digits"].text  # the digits searched for are marked
    assert _all(pages["contact details"].text, MOBILE_MASKED, PHONE_MASKED, EMAIL_MASKED)
    assert _all(pages["customer details"].text, PHONE_MASKED, ADDRESS_MASKED)
    assert _all(pages["customer 360"].text, PHONE_MASKED, ADDRESS_MASKED, MOBILE_MASKED, EMAIL_MASKED)
    # no permission, no way to show it in full
    assert "查看完整" not in pages["contact details"].text
    token = csrf_token(ro)
    refused = ro.post(f"/admin/linkman/reveal/{contact.id}", data={"field": "mobile", "csrf_token": token})
    assert refused.status_code == 403 and MOBILE not in refused.text


def _exported(client: Any, identity: str, fmt: str = "csv") -> str:
    response = client.get(f"/admin/{identity}/export/{fmt}")
    assert response.status_code == 200, response.text[:300]
    if fmt == "csv":
        return response.content.decode("utf-8-sig")
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(response.content), read_only=True)
    return "\n".join(" ".join(str(c) for c in row if c is not None) for row in book.active.iter_rows(values_only=True))


def test_an_export_masks_what_the_list_masks(company: dict[str, Any], make_user: Any, login_as: Any,
                                             engine: Any) -> None:
    """A role that may export but not see personal data (an administrator's own role, say) gets the
    masked values in CSV and Excel; a manager gets their own customers in full."""
    from crm_admin.accounts.models import CasbinRule, SysRole
    from crm_admin.core.permissions import bump_policy_version

    with acting_as(SYSTEM), db.transaction() as s:
        s.add(SysRole(code="clerk", name="文员", data_scope="all"))
        for resource in ("customer", "linkman"):
            for action in ("list", "view", "export"):
                s.add(CasbinRule(ptype="p", v0="role:clerk", v1=resource, v2=action, v3="all", v4="", v5=""))
        bump_policy_version(s.connection())
    make_user("clerk1", roles=("clerk",))
    clerk = login_as("clerk1")
    for fmt in ("csv", "xlsx"):
        contacts = _exported(clerk, "linkman", fmt)
        assert _all(contacts, "张三", MOBILE_MASKED, PHONE_MASKED, EMAIL_MASKED) and _none(contacts, MOBILE, EMAIL), fmt
        customers = _exported(clerk, "customer", fmt)
        assert _all(customers, "甲公司", PHONE_MASKED, ADDRESS_MASKED) and _none(customers, PHONE, ADDRESS), fmt
    wang = login_as("wang")
    rows = list(csv.reader(io.StringIO(_exported(wang, "linkman"))))
    assert MOBILE in rows[1] and EMAIL in rows[1]
    assert ADDRESS in _exported(wang, "customer")


def test_an_export_by_a_holder_masks_the_customers_a_rule_masks(company: dict[str, Any], login_as: Any,
                                                               everything_masked_by_a_rule: None) -> None:
    wang = login_as("wang")
    for fmt in ("csv", "xlsx"):
        text = _exported(wang, "linkman", fmt)
        assert MOBILE_MASKED in text and MOBILE not in text


def test_a_manager_sees_own_customers_in_full(company: dict[str, Any], login_as: Any) -> None:
    wang = login_as("wang")
    contact, customer = company["contact"], company["customer"]
    assert _all(wang.get("/admin/linkman/list").text, MOBILE, EMAIL)
    assert _all(wang.get(f"/admin/linkman/details/{contact.id}").text, MOBILE, PHONE, EMAIL)
    assert _all(wang.get(f"/admin/customer/360/{customer.id}").text, PHONE, ADDRESS, MOBILE, EMAIL)
    edit = wang.get(f"/admin/linkman/edit/{contact.id}")
    assert MOBILE in edit.text and "查看完整" not in wang.get(f"/admin/linkman/details/{contact.id}").text


def test_the_permissions_own_scope_masks_the_team_members_customers(make_user: Any, make_customer: Any,
                                                                   principal: Any, engine: Any) -> None:
    """A lead who sees the team's customers but personal data only of their own (a scope exception on
    查看敏感信息) sees the team's customers masked."""
    from crm_admin.accounts.models import CasbinRule, SysDept
    from crm_admin.core.permissions import bump_policy_version

    with acting_as(SYSTEM), db.transaction() as s:
        dept = SysDept(name="一部")
        s.add(dept)
        s.flush()
        dept_id = dept.id
        s.execute(CasbinRule.__table__.update()
                  .where(CasbinRule.v0 == "role:sales_lead", CasbinRule.v1 == "sensitive_data").values(v3="self"))
        bump_policy_version(s.connection())
    make_user("lead", roles=("sales_lead",), dept_id=dept_id)
    make_user("wang", dept_id=dept_id)
    own = make_customer("主管的客户", manager="lead")
    team = make_customer("组员的客户", manager="wang")
    pool = make_customer("无人负责的客户")
    with db.session_factory()() as s:
        assert masking.customers_masked_for(s, principal("lead"), [own.id, team.id, pool.id]) == {team.id}
        assert masking.customers_masked_for(s, principal("wang"), [team.id]) == set()


def test_a_masked_value_in_a_form_is_never_saved(company: dict[str, Any], login_as: Any,
                                                 everything_masked_by_a_rule: None) -> None:
    wang = login_as("wang")
    contact = company["contact"]
    form = wang.get(f"/admin/linkman/edit/{contact.id}")
    assert form.status_code == 200
    assert MOBILE_MASKED in form.text and MOBILE not in form.text and EMAIL not in form.text
    data = {"csrf_token": form_token(form.text), "customer": str(company["customer"].id), "name": "张三丰",
            "gender": "", "position": "", "mobile": MOBILE_MASKED, "phone": PHONE_MASKED,
            "email": EMAIL_MASKED, "birthday": "", "remark": "", "save": "Save"}
    saved = wang.post(f"/admin/linkman/edit/{contact.id}", data=data, follow_redirects=False)
    assert saved.status_code in (302, 303), saved.text[:500]
    with db.session_factory()() as s:
        row = s.get(Linkman, contact.id)
        assert (row.name, row.mobile, row.phone, row.email) == ("张三丰", MOBILE, PHONE, EMAIL)
    # a masked-looking value that is not the stored one's mask is refused, nothing changes
    refused = wang.post(f"/admin/linkman/edit/{contact.id}", data={**data, "mobile": "139****0000"},
                        follow_redirects=False)
    assert refused.status_code == 400 and "脱敏" in refused.text
    with db.session_factory()() as s:
        assert s.get(Linkman, contact.id).mobile == MOBILE
    # a new full value replaces it
    changed = wang.post(f"/admin/linkman/edit/{contact.id}", data={**data, "mobile": "13900001111"},
                        follow_redirects=False)
    assert changed.status_code in (302, 303), changed.text[:500]
    with db.session_factory()() as s:
        assert s.get(Linkman, contact.id).mobile == "13900001111"


def test_the_customer_form_keeps_a_masked_phone_and_address(company: dict[str, Any], login_as: Any,
                                                            everything_masked_by_a_rule: None) -> None:
    wang = login_as("wang")
    customer = company["customer"]
    form = wang.get(f"/admin/customer/edit/{customer.id}")
    assert PHONE_MASKED in form.text and ADDRESS not in form.text
    fields = dict(re_inputs(form.text))
    fields.update({"address": ADDRESS_MASKED, "phone": PHONE_MASKED, "remark": "改了备注", "status": "potential",
                   "save": "Save"})
    saved = wang.post(f"/admin/customer/edit/{customer.id}", data=fields, follow_redirects=False)
    assert saved.status_code in (302, 303), re.findall(r'(?:invalid-feedback|alert)[^>]*>([^<]*)', saved.text)
    with db.session_factory()() as s:
        row = s.get(Customer, customer.id)
        assert (row.phone, row.address, row.remark) == (PHONE, ADDRESS, "改了备注")


def re_inputs(html: str) -> list[tuple[str, str]]:
    """The text inputs and selected options of a SQLAdmin form, as the browser posts them."""
    found = re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html)
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option[^>]*value="([^"]*)"[^>]*selected', body)
        found.append((name, chosen.group(1) if chosen else ""))
    return found


def test_a_holder_reveals_one_value_and_it_is_audited(company: dict[str, Any], login_as: Any, make_user: Any,
                                                      make_customer: Any, everything_masked_by_a_rule: None) -> None:
    from crm_admin.audit.models import AuditLog

    wang = login_as("wang")
    contact, customer = company["contact"], company["customer"]
    details = wang.get(f"/admin/linkman/details/{contact.id}")
    assert MOBILE_MASKED in details.text and MOBILE not in details.text
    assert f"/admin/linkman/reveal/{contact.id}" in details.text  # the button
    assert f"/admin/customer/reveal/{customer.id}" in wang.get(f"/admin/customer/360/{customer.id}").text
    token = form_token(details.text)
    shown = wang.post(f"/admin/linkman/reveal/{contact.id}", data={"field": "mobile", "csrf_token": token})
    assert shown.status_code == 200 and MOBILE in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert EMAIL not in shown.text  # one value only
    with db.session_factory()() as s:
        rows = s.execute(select(AuditLog).where(AuditLog.action == "reveal")).scalars().all()
    assert [(r.resource, r.resource_id, r.changes, r.username) for r in rows] == [
        ("linkman", str(contact.id), {"field": "mobile"}, "wang")]
    assert MOBILE not in str(rows[0].changes) + str(rows[0].detail)
    # a field that is no personal data, a row outside the scope, no CSRF token: refused, nothing audited
    assert wang.post(f"/admin/linkman/reveal/{contact.id}", data={"field": "name", "csrf_token": token}).status_code == 400
    make_user("li")
    other = make_customer("乙公司", manager="li", phone="13700001111")
    assert wang.post(f"/admin/customer/reveal/{other.id}", data={"field": "phone", "csrf_token": token}).status_code == 404
    assert wang.post(f"/admin/linkman/reveal/{contact.id}", data={"field": "mobile"}).status_code == 403
    with db.session_factory()() as s:
        assert len(s.execute(select(AuditLog).where(AuditLog.action == "reveal")).all()) == 1
