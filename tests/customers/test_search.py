"""Search finds customers, contacts and products by any part of the name, its pinyin or initials and any
4+ digits of a phone or code — in the list search box, the combined query and every relation picker —
within the user's data scope, and the index stays exactly current on every write path."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from crm_admin.contacts.models import Linkman
from crm_admin.core import search
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.core.models import SearchDoc, SearchGram
from crm_admin.customers import service
from crm_admin.customers.models import Customer
from tests.conftest import IS_MYSQL
from tests.customers.conftest import principal_for


def _names(html: str, candidates: list[str]) -> set[str]:
    html = html.replace("<mark>", "").replace("</mark>", "")
    return {n for n in candidates if n in html}


def _seed(make_user: Any, make_customer: Any) -> list[str]:
    make_user("wang")
    make_user("li")
    make_customer("南京联华超市有限公司", manager="wang", phone="025-83456789")
    make_customer("上海联华电子有限公司", manager="wang")
    make_customer("重庆银行", manager="wang", phone="023-66117788")
    make_customer("苏州联华物流", manager="li", phone="0512-69995555")
    return ["南京联华超市有限公司", "上海联华电子有限公司", "重庆银行", "苏州联华物流"]


def test_any_part_pinyin_initials_and_digits(make_user: Any, make_customer: Any, login_as: Any) -> None:
    names = _seed(make_user, make_customer)
    c = login_as("wang")

    def found(term: str, param: str = "search") -> set[str]:
        r = c.get("/admin/customer/list", params={param: term})
        assert r.status_code == 200
        return _names(r.text, names)

    assert found("联华") == {"南京联华超市有限公司", "上海联华电子有限公司"}  # the middle of the name
    assert found("联华", "q") == {"南京联华超市有限公司", "上海联华电子有限公司"}  # the combined query too
    assert found("lianhua") == {"南京联华超市有限公司", "上海联华电子有限公司"}
    assert found("LianHua") == {"南京联华超市有限公司", "上海联华电子有限公司"}
    assert found("lhcs") == {"南京联华超市有限公司"}
    assert found("chongqing") == {"重庆银行"}  # 重 read as chong in 重庆
    assert found("3456") == {"南京联华超市有限公司"}  # any 4+ digits of the phone
    assert found("8345-67") == {"南京联华超市有限公司"}
    assert found("行") == {"重庆银行"}  # one character, at the end of the name
    assert found("超市联华") == set()  # the characters must be in that order
    assert found("％") == set()
    html = c.get("/admin/customer/list", params={"search": "lianhua"}).text
    assert "南京<mark>联华</mark>超市有限公司" in html  # the matched part is marked


def test_common_grams_find_the_same_records_by_the_text_alone(make_user: Any, make_customer: Any, login_as: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A term whose grams are all common skips the narrowing by its other grams: the text check alone
    must then decide, with the same answers (order of the characters, scope, digits) as the narrowing."""
    names = _seed(make_user, make_customer)
    make_customer("华联超市", manager="wang")  # the same two characters in the other order
    names.append("华联超市")
    c = login_as("wang")

    def found(term: str) -> set[str]:
        r = c.get("/admin/customer/list", params={"search": term})
        assert r.status_code == 200
        return _names(r.text, names)

    terms = ["联华", "联华超市", "超市联华", "华联", "lianhua", "lhcs", "3456", "苏州联华"]
    narrowed = {term: found(term) for term in terms}
    monkeypatch.setattr(search, "NARROW_BELOW", 0)  # every gram counts as common
    assert {term: found(term) for term in terms} == narrowed
    assert narrowed["联华超市"] == {"南京联华超市有限公司"}
    assert narrowed["华联"] == {"华联超市"}
    assert narrowed["苏州联华"] == set()  # another manager's customer


def test_no_hit_outside_the_scope_not_even_a_count(make_user: Any, make_customer: Any, login_as: Any) -> None:
    names = _seed(make_user, make_customer)
    c = login_as("wang")
    r = c.get("/admin/customer/list", params={"search": "苏州"})
    assert _names(r.text, names) == set()
    assert "共 0 条" in r.text or "0 条" in r.text
    assert _names(c.get("/admin/customer/list", params={"search": "5555"}).text, names) == set()
    looked_up = c.get("/admin/linkman/ajax/lookup", params={"name": "customer", "term": "lianhua"}).json()
    assert {row["text"] for row in looked_up["results"]} >= {"南京联华超市有限公司"}
    assert all("苏州" not in row["text"] for row in looked_up["results"])


def test_pickers_find_by_pinyin(make_user: Any, make_customer: Any, login_as: Any) -> None:
    _seed(make_user, make_customer)
    c = login_as("wang")
    got = c.get("/admin/linkman/ajax/lookup", params={"name": "customer", "term": "cqyh"}).json()
    assert [row["text"] for row in got["results"]] == ["重庆银行"]
    got = c.get("/admin/linkman/ajax/lookup", params={"name": "customer", "term": "联华超"}).json()
    assert [row["text"] for row in got["results"]] == ["南京联华超市有限公司"]


def test_contacts_by_name_part_pinyin_and_mobile(admin_client: Any, make_customer: Any) -> None:
    customer = make_customer("北方物流有限公司")
    with acting_as(SYSTEM), db.transaction() as session:
        session.add(Linkman(customer_id=customer.id, name="欧阳建国", mobile="13912345678"))
        session.add(Linkman(customer_id=customer.id, name="李四", mobile="13800001111"))
    names = ["欧阳建国", "李四"]

    def found(term: str) -> set[str]:
        return _names(admin_client.get("/admin/linkman/list", params={"search": term}).text, names)

    assert found("建国") == {"欧阳建国"}
    assert found("ouyang") == {"欧阳建国"}
    assert found("oyjg") == {"欧阳建国"}
    assert found("2345") == {"欧阳建国"}
    assert found("0000") == {"李四"}


def _index_rows() -> tuple[set[tuple[int, int, str]], set[tuple[int, str, int]]]:
    with db.session_factory()() as s:
        docs = {tuple(r) for r in s.execute(select(SearchDoc.kind, SearchDoc.row_id, SearchDoc.body)).all()}
        grams = {tuple(r) for r in s.execute(select(SearchGram.kind, SearchGram.gram, SearchGram.row_id)).all()}
    return docs, grams  # type: ignore[return-value]


def test_a_failed_rebuild_leaves_the_index_as_it_was(make_user: Any, make_customer: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The rebuild is one transaction on every database (on MariaDB a plain DROP TABLE of the work
    table committed it halfway)."""
    _seed(make_user, make_customer)
    before = _index_rows()
    assert before[0]
    calls = {"n": 0}
    real = search.document

    def failing(spec: Any, values: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("the rebuild stops here")
        return real(spec, values)

    monkeypatch.setattr(search, "document", failing)
    with pytest.raises(RuntimeError), db.get_engine().begin() as conn:
        search.rebuild(conn)
    assert _index_rows() == before


def test_index_follows_every_write_and_equals_a_rebuild(make_user: Any, make_customer: Any) -> None:
    _seed(make_user, make_customer)
    admin = principal_for("admin")
    with acting_as(SYSTEM), db.transaction() as session:
        nanjing = session.execute(select(Customer).where(Customer.name.like("南京%"))).scalar_one()
        shanghai = session.execute(select(Customer).where(Customer.name.like("上海%"))).scalar_one()
        chongqing = session.execute(select(Customer).where(Customer.name == "重庆银行")).scalar_one()
        nanjing.name = "南京华联商厦有限公司"  # renamed
        chongqing.phone = None  # phone cleared
        session.add(Linkman(customer_id=shanghai.id, name="王小明", mobile="13700002222"))
        session.add(Linkman(customer_id=nanjing.id, name="赵六", mobile="13600003333"))  # goes with its customer
    with acting_as(SYSTEM), db.transaction() as session:
        service.merge_customers(session, admin, keep_id=shanghai.id, drop_id=chongqing.id)
    with acting_as(SYSTEM), db.transaction() as session:
        gone = session.get(Customer, nanjing.id)
        assert gone is not None
        service.delete_customer(session, gone, cascade=True)
    incremental = _index_rows()
    with db.get_engine().begin() as conn:
        search.rebuild(conn)
    assert _index_rows() == incremental
    with db.get_engine().connect() as conn:
        assert conn.execute(select(Customer.id).where(search.match(conn, Customer, "华联"))).all() == []
        assert conn.execute(select(Customer.id).where(search.match(conn, Customer, "6611"))).all() == []
        assert conn.execute(select(Linkman.id).where(search.match(conn, Linkman, "zhaoliu"))).all() == []
        assert conn.execute(select(Linkman.name).where(search.match(conn, Linkman, "xiaoming"))).all() == [
            ("王小明",)]


def test_the_search_box_says_what_it_finds_in_both_languages(admin_client: Any) -> None:
    assert "拼音或首字母" in admin_client.get("/admin/customer/list").text
    admin_client.cookies.set("crm_lang", "en")
    assert "its pinyin or initials" in admin_client.get("/admin/customer/list").text


@pytest.mark.skipif(not IS_MYSQL, reason="row and gap locks are a MariaDB/MySQL matter")
def test_concurrent_new_contacts_index_without_deadlocks(make_customer: Any) -> None:
    customer = make_customer("并发测试有限公司")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def create(n: int) -> None:
        start.wait()
        try:
            for i in range(10):
                with acting_as(SYSTEM), db.transaction() as session:
                    session.add(Linkman(customer_id=customer.id, name=f"欧阳并发{n}{i}", mobile=f"1391234{n}{i:03d}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.get_engine().connect() as conn:
        assert len(conn.execute(select(Linkman.id).where(search.match(conn, Linkman, "欧阳并发"))).all()) == 80


def test_a_record_added_after_a_search_that_found_nothing_is_found(admin_client: Any, make_customer: Any) -> None:
    assert "昆明" not in admin_client.get("/admin/customer/list", params={"search": "滇池新开"}).text
    make_customer("昆明滇池新开贸易有限公司")
    html = admin_client.get("/admin/customer/list", params={"search": "滇池新开"}).text
    assert "昆明<mark>滇池新开</mark>贸易有限公司" in html
