"""Customers through the API: the list page's filters, the form's validation and save path, ETag and
If-Match, the recycle bin, idempotent creates, problem details in Chinese and English."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from tests.api.conftest import bearer


def _count(model: Any) -> int:
    with db.session_factory()() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_me_is_the_tokens_user(api: Any, world: Any, make_token: Any) -> None:
    secret = make_token("mgr_a")
    r = api.get("/api/v1/me", headers=bearer(secret))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == "mgr_a" and "manager" in body["roles"] and "customer:list" in body["permissions"]


def test_list_is_scoped_and_filtered(api: Any, world: Any, make_token: Any) -> None:
    secret = make_token("mgr_a")
    r = api.get("/api/v1/customers", headers=bearer(secret))
    assert r.status_code == 200, r.text
    ids = [c["id"] for c in r.json()["items"]]
    assert ids == [world.row("mgr_a", "customer")]
    admin = make_token("admin")
    every = api.get("/api/v1/customers", headers=bearer(admin)).json()["items"]
    assert {world.row(m, "customer") for m in ("mgr_a", "mgr_b", "mgr_c")} <= {c["id"] for c in every}
    only_c = api.get("/api/v1/customers", params={"manager": world.users["mgr_c"]}, headers=bearer(admin)).json()
    assert [c["id"] for c in only_c["items"]] == [world.row("mgr_c", "customer")]
    by_level = api.get("/api/v1/customers", params={"level": "B"}, headers=bearer(admin)).json()
    assert by_level["items"] == []
    by_keyword = api.get("/api/v1/customers", params={"keyword": "客户mgr_b"}, headers=bearer(admin)).json()
    assert [c["id"] for c in by_keyword["items"]] == [world.row("mgr_b", "customer")]


def test_create_update_delete_like_the_form(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.customers.models import Customer
    from crm_admin.recycle_bin.models import RecycleEntry as RecycleBin

    secret = make_token("mgr_a")
    r = api.post("/api/v1/customers", json={"name": "杭州云杉科技有限公司", "phone": "0571-88886666", "level": "A"},
                 headers=bearer(secret))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["code"].startswith("C") and created["manager_id"] == world.users["mgr_a"]
    assert r.headers["location"] == f"/api/v1/customers/{created['id']}"
    etag = r.headers["etag"]
    assert etag == '"1"' or etag.startswith('"')

    # the form's validation: a bad phone is refused with the field named
    bad = api.post("/api/v1/customers", json={"name": "某公司", "phone": "12"}, headers=bearer(secret))
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "phone" and "电话" in bad.json()["errors"][0]["message"]
    # and a duplicate name is refused as on the page
    dup = api.post("/api/v1/customers", json={"name": "杭州云杉科技"}, headers=bearer(secret))
    assert dup.status_code == 422 and "疑似重复客户" in dup.json()["detail"]

    url = f"/api/v1/customers/{created['id']}"
    assert api.patch(url, json={"region": "杭州"}, headers=bearer(secret)).status_code == 428
    stale = api.patch(url, json={"region": "杭州"}, headers=bearer(secret, **{"If-Match": '"99"'}))
    assert stale.status_code == 412
    ok = api.patch(url, json={"region": "杭州"}, headers=bearer(secret, **{"If-Match": etag}))
    assert ok.status_code == 200, ok.text
    assert ok.json()["region"] == "杭州" and ok.headers["etag"] != etag
    # the old ETag no longer fits
    assert api.patch(url, json={"region": "宁波"}, headers=bearer(secret, **{"If-Match": etag})).status_code == 412
    # a manager may not hand the customer to someone else (the form's rule)
    handed = api.patch(url, json={"manager_id": world.users["mgr_c"]},
                       headers=bearer(secret, **{"If-Match": ok.headers["etag"]}))
    assert handed.status_code == 403 and "分配客户经理" in handed.json()["detail"]

    bins = _count(RecycleBin)
    assert api.delete(url, headers=bearer(secret)).status_code == 403  # managers may not delete customers
    admin = make_token("admin")
    assert api.delete(url, headers=bearer(admin)).status_code == 428
    gone = api.delete(url, headers=bearer(admin, **{"If-Match": ok.headers["etag"]}))
    assert gone.status_code == 204, gone.text
    assert _count(RecycleBin) == bins + 1
    assert api.get(url, headers=bearer(secret)).status_code == 404
    with db.session_factory()() as session:
        assert session.get(Customer, created["id"]) is None


def test_writes_are_audited_as_api(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.audit.models import AuditLog

    secret = make_token("mgr_a")
    r = api.post("/api/v1/customers", json={"name": "审计测试有限公司"}, headers=bearer(secret))
    assert r.status_code == 201
    with db.session_factory()() as session:
        row = session.execute(select(AuditLog).where(AuditLog.resource == "customer", AuditLog.action == "create",
                                                     AuditLog.resource_id == str(r.json()["id"]))).scalar_one()
    assert row.username == "mgr_a" and row.detail == "[API]"


def test_idempotent_create_replays(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.customers.models import Customer

    secret = make_token("mgr_a")
    before = _count(Customer)
    headers = bearer(secret, **{"Idempotency-Key": "form-42"})
    first = api.post("/api/v1/customers", json={"name": "幂等测试有限公司"}, headers=headers)
    again = api.post("/api/v1/customers", json={"name": "幂等测试有限公司"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    assert _count(Customer) == before + 1
    other = api.post("/api/v1/customers", json={"name": "另一家有限公司"}, headers=headers)
    assert other.status_code == 422
    # another user's same key is another request
    mine = api.post("/api/v1/customers", json={"name": "另一家有限公司"},
                    headers=bearer(make_token("mgr_c"), **{"Idempotency-Key": "form-42"}))
    assert mine.status_code == 201


def test_problems_in_chinese_and_english(api: Any, world: Any, make_token: Any) -> None:
    secret = make_token("mgr_a")
    zh = api.get("/api/v1/customers/987654", headers=bearer(secret))
    assert zh.status_code == 404 and zh.json()["title"] == "记录不存在"
    assert zh.json()["detail"] == "记录不存在或您无权访问。"
    en = api.get("/api/v1/customers/987654", headers=bearer(secret, **{"Accept-Language": "en-US,en;q=0.9"}))
    assert en.json()["title"] == "Not found" and "does not exist" in en.json()["detail"]
    missing = api.post("/api/v1/customers", json={"phone": "13800000000", "nonsense": 1},
                       headers=bearer(secret, **{"Accept-Language": "en"}))
    assert missing.status_code == 422
    fields = {e["field"]: e["message"] for e in missing.json()["errors"]}
    assert fields == {"name": "Field required.", "nonsense": "Unknown field."}
    zh_missing = api.post("/api/v1/customers", json={}, headers=bearer(secret))
    assert zh_missing.json()["errors"] == [{"field": "name", "message": "缺少必填字段。"}]


def test_refusals_are_audited_as_api(api: Any, world: Any, make_token: Any) -> None:
    from crm_admin.audit.models import AuditLog

    r = api.delete(f"/api/v1/customers/{world.row('mgr_a', 'customer')}", headers=bearer(make_token("mgr_a")))
    assert r.status_code == 403
    with db.session_factory()() as session:
        row = session.execute(select(AuditLog).where(AuditLog.action == "permission_denied")).scalar_one()
    assert row.username == "mgr_a" and row.resource == "customer" and not row.success
    assert row.detail.startswith("[API] 删除: DELETE /api/v1/customers/")


def test_a_form_refusal_reads_in_english_on_request(api: Any, world: Any, make_token: Any) -> None:
    r = api.post("/api/v1/customers", json={"name": "某公司", "phone": "12"},
                 headers=bearer(make_token("mgr_a"), **{"Accept-Language": "en"}))
    assert r.status_code == 422 and r.json()["title"] == "Validation failed"
    assert r.json()["errors"] == [{"field": "phone", "message": r.json()["detail"]}]
    assert r.json()["detail"].startswith("Invalid phone number") and r.headers["content-language"] == "en"


def test_idempotency_key_of_a_refused_create_can_be_used_again(api: Any, world: Any, make_token: Any) -> None:
    headers = bearer(make_token("mgr_a"), **{"Idempotency-Key": "form-7"})
    refused = api.post("/api/v1/customers", json={"name": "键可重用有限公司", "phone": "12"}, headers=headers)
    assert refused.status_code == 422
    fixed = api.post("/api/v1/customers", json={"name": "键可重用有限公司", "phone": "13812345678"}, headers=headers)
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers


def test_a_create_still_running_answers_409(api: Any, world: Any, make_token: Any) -> None:
    import datetime as dt
    from types import SimpleNamespace

    from crm_admin.api.idempotency import _fingerprint
    from crm_admin.api.models import ApiIdempotency

    request: Any = SimpleNamespace(method="POST", url=SimpleNamespace(path="/api/v1/customers"))
    with db.transaction() as session:  # the first request with this key has not answered yet
        session.add(ApiIdempotency(user_id=world.users["mgr_a"], idem_key="form-9", created_at=dt.datetime.now(dt.UTC),
                                   request_hash=_fingerprint(request, {"name": "并发有限公司"})))
    r = api.post("/api/v1/customers", json={"name": "并发有限公司"},
                 headers=bearer(make_token("mgr_a"), **{"Idempotency-Key": "form-9"}))
    assert r.status_code == 409 and "正在处理中" in r.json()["detail"]
