"""Dictionary admin: in-use items cannot be deleted (only disabled), values immutable once used,
disabled items keep their label on old records, every change bumps the dictionary version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_admin import db
from tests.conftest import csrf_token


def _item(type_code: str, value: str) -> Any:
    from crm_admin.dictionary.models import DictItem

    with db.session_factory()() as session:
        return session.execute(select(DictItem).where(DictItem.type_code == type_code,
                                                      DictItem.value == value)).scalar_one_or_none()


def _version() -> int:
    from crm_admin.accounts.models import SysMeta

    with db.session_factory()() as session:
        return int(session.execute(select(SysMeta.value).where(SysMeta.key == "dict_version")).scalar() or 0)


def _delete(client: Any, pk: int) -> Any:
    return client.request("DELETE", f"/admin/dict-item/delete?pks={pk}", headers={"X-CSRF-Token": csrf_token(client)})


def test_item_in_use_cannot_be_deleted_but_unused_can(admin_client: Any) -> None:
    from crm_admin.customers.models import Customer

    with db.transaction() as session:
        session.add(Customer(code="C-D1", name="字典测试客户", industry="finance"))
    used = _item("industry", "finance")
    r = _delete(admin_client, used.id)
    assert r.status_code == 200 and "error=" in r.text  # SQLAdmin reports the refusal on the list page
    assert _item("industry", "finance") is not None
    unused = _item("industry", "energy")
    version = _version()
    r = _delete(admin_client, unused.id)
    assert r.status_code == 200 and "error=" not in r.text
    assert _item("industry", "energy") is None
    assert _version() > version


def test_disabled_item_not_offered_but_label_kept() -> None:
    from crm_admin.dictionary import service
    from crm_admin.dictionary.models import DictItem

    with db.transaction() as session:
        item = session.execute(select(DictItem).where(DictItem.type_code == "customer_level",
                                                      DictItem.value == "D")).scalar_one()
        item.is_active = False
        service.bump_dict_version(session.connection())
    assert "D" not in [v for v, _ in service.choices("customer_level")]
    assert "D" in [v for v, _ in service.choices("customer_level", current="D")]
    assert service.label("customer_level", "D").startswith("D 级")
    assert not service.is_valid("customer_level", "D")


def test_value_immutable_once_used_and_edit_bumps_version(admin_client: Any) -> None:
    from crm_admin.customers.models import Customer

    with db.transaction() as session:
        session.add(Customer(code="C-D2", name="字典测试客户二", source="website"))
    item = _item("customer_source", "website")
    token = csrf_token(admin_client)
    base = {"type_code": "customer_source", "label": item.label, "label_en": item.label_en or "",
            "sort": str(item.sort), "is_active": "y", "csrf_token": token, "save": "Save"}
    r = admin_client.post(f"/admin/dict-item/edit/{item.id}", data={**base, "value": "web2"},
                          headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 400 and "不能修改" in r.text
    assert _item("customer_source", "website") is not None
    version = _version()
    r = admin_client.post(f"/admin/dict-item/edit/{item.id}", data={**base, "value": "website", "label": "官网来访"},
                          headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 302, r.text[-1500:]
    assert _item("customer_source", "website").label == "官网来访"
    assert _version() > version


def test_manager_cannot_edit_dictionary(make_user: Any, login_as: Any) -> None:
    make_user("dm", ["manager"])
    c = login_as("dm")
    assert c.get("/admin/dict-item/list").status_code == 403
    item = _item("industry", "it")
    assert _delete(c, item.id).status_code == 403
    assert _item("industry", "it") is not None


def _type_id(code: str) -> int:
    from crm_admin.dictionary.models import DictType

    with db.session_factory()() as session:
        return int(session.execute(select(DictType.id).where(DictType.code == code)).scalar_one())


def test_new_item_form_chooses_its_type_by_name_and_the_list_shows_names(admin_client: Any) -> None:
    """The item an import just rejected can be added: the create form has the type, chosen by name."""
    page = admin_client.get("/admin/dict-item/create")
    assert page.status_code == 200
    assert 'name="type_code"' in page.text and ">行业类型<" in page.text
    assert page.text.index('name="type_code"') < page.text.index('name="value"')  # the type comes first
    token = csrf_token(admin_client)
    new = {"type_code": "industry", "value": "agri", "label": "农业", "label_en": "Agriculture", "sort": "90",
           "is_active": "y", "csrf_token": token, "save": "Save"}
    version = _version()
    r = admin_client.post("/admin/dict-item/create", data=new, headers={"X-CSRF-Token": token},
                          follow_redirects=False)
    assert r.status_code == 302, r.text[-1500:]
    assert _item("industry", "agri").label == "农业" and _version() > version
    # without a type, or of a type that does not exist: a clear message and nothing written
    for bad in ("", "no_such_type"):
        r = admin_client.post("/admin/dict-item/create", data={**new, "type_code": bad, "value": "x1"},
                              headers={"X-CSRF-Token": token}, follow_redirects=False)
        assert r.status_code == 400 and "请选择字典类型" in r.text
        assert _item(bad, "x1") is None
    listing = admin_client.get("/admin/dict-item/list?search=agri")
    assert "行业类型" in listing.text and ">industry<" not in listing.text


def test_type_page_lists_its_items_and_adds_one(admin_client: Any, make_user: Any, login_as: Any) -> None:
    type_id = _type_id("industry")
    page = admin_client.get(f"/admin/dict-type/details/{type_id}")
    assert page.status_code == 200 and 'id="dict-items"' in page.text
    assert page.text.count('class="dict-item"') >= 3 and "finance" in page.text
    token = csrf_token(admin_client)
    r = admin_client.post(f"/admin/dict-type/items/{type_id}",
                          data={"value": "fishery", "label": "渔业", "label_en": "", "csrf_token": token},
                          follow_redirects=False)
    assert r.status_code == 303 and f"/admin/dict-type/details/{type_id}" in r.headers["location"]
    added = _item("industry", "fishery")
    assert added.label == "渔业" and added.is_active
    assert "渔业" in admin_client.get(r.headers["location"]).text

    # a value or a name the type already has: told on the same page, nothing added
    r = admin_client.post(f"/admin/dict-type/items/{type_id}",
                          data={"value": "fishery2", "label": "渔业", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 400 and "已有" in r.text and 'value="fishery2"' in r.text
    assert _item("industry", "fishery2") is None

    # a manager may read drop-downs but not grow the dictionary
    make_user("dict_mgr", ["manager"])
    c = login_as("dict_mgr")
    r = c.post(f"/admin/dict-type/items/{type_id}",
               data={"value": "mining", "label": "采矿", "csrf_token": csrf_token(c)}, follow_redirects=False)
    assert r.status_code == 403 and _item("industry", "mining") is None
