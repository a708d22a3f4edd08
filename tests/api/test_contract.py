"""Every response of a scripted run — successes and refusals, every collection — is valid against the
OpenAPI document the API publishes (JSON Schema 2020-12, ``jsonschema``): its status is documented
for the operation, with that content type and a body matching the schema."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import jsonschema
import pytest

from tests.api.conftest import bearer


class Recorder:
    def __init__(self, client: Any, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc
        self.seen: list[tuple[str, str, Any]] = []
        self.templates = [(re.compile("^/api/v1" + re.sub(r"{\w+}", r"[^/]+", path) + "$"), path)
                          for path in doc["paths"]]

    def __call__(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.client.request(method, url, **kwargs)
        self.seen.append((method, url, r))
        return r

    def template(self, url: str) -> str:
        path = url.split("?")[0]
        found = [t for rx, t in self.templates if rx.match(path)]
        assert found, f"{path} is not in the document"
        return sorted(found, key=lambda t: t.count("{"))[0]  # a literal segment wins over a parameter

    def check(self) -> list[str]:
        problems = []
        components = self.doc.get("components", {})
        for method, url, r in self.seen:
            operation = self.doc["paths"][self.template(url)].get(method.lower())
            if operation is None:
                problems.append(f"{method} {url}: no such operation")
                continue
            documented = operation["responses"].get(str(r.status_code))
            if documented is None:
                problems.append(f"{method} {url}: status {r.status_code} not documented")
                continue
            if r.status_code == 204:
                continue
            ctype = r.headers.get("content-type", "").split(";")[0]
            content = documented.get("content", {})
            if ctype not in content:
                problems.append(f"{method} {url}: {r.status_code} as {ctype}, documented {sorted(content)}")
                continue
            schema = content[ctype].get("schema") or content.get("application/json", {}).get("schema")
            if not schema:
                problems.append(f"{method} {url}: {r.status_code} has no schema")
                continue
            try:
                jsonschema.validate(r.json(), {**schema, "components": components},
                                    cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError as exc:
                problems.append(f"{method} {url}: {r.status_code}: {exc.message} at {list(exc.absolute_path)}")
        return problems


@pytest.fixture
def doc(api: Any) -> dict[str, Any]:
    r = api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_every_response_of_a_scripted_run_matches_the_document(api: Any, doc: dict[str, Any], world: Any,
                                                               make_token: Any) -> None:
    call = Recorder(api, doc)
    mgr = bearer(make_token("mgr_a"))
    admin = bearer(make_token("admin"))
    ro = bearer(make_token("ro"))
    en = {**mgr, "Accept-Language": "en"}
    now = dt.datetime.now(dt.UTC).isoformat()

    call("GET", "/api/v1/me", headers=mgr)
    call("GET", "/api/v1/dictionaries", headers=mgr)
    call("GET", "/api/v1/dictionaries/industry", headers=mgr)
    call("GET", "/api/v1/dictionaries/no_such", headers=mgr)
    for path in ("customers", "contacts", "follow-ups", "opportunities", "care-tasks", "products", "orders",
                 "transfers"):
        page = call("GET", f"/api/v1/{path}?limit=1", headers=admin).json()
        if page["items"]:
            call("GET", f"/api/v1/{path}/{page['items'][0]['id']}", headers=admin)
        if page["next_cursor"]:
            call("GET", f"/api/v1/{path}?limit=1&cursor={page['next_cursor']}", headers=admin)
        call("GET", f"/api/v1/{path}", headers=ro)
        call("GET", f"/api/v1/{path}/987654", headers=mgr)
    call("GET", "/api/v1/customers?cursor=garbage", headers=mgr)
    call("GET", "/api/v1/customers?limit=0", headers=en)
    call("GET", "/api/v1/customers?sort=-updated&keyword=客户&level=A", headers=mgr)
    call("GET", "/api/v1/customers", headers={})
    call("GET", "/api/v1/pools", headers=mgr)
    call("POST", "/api/v1/pools/987654/claim", json={"customer_ids": [1]}, headers=mgr)
    call("POST", "/api/v1/pools/987654/return", json={"customer_ids": [1], "reason": "不再跟进"}, headers=mgr)

    created = call("POST", "/api/v1/customers", json={"name": "契约测试有限公司", "level": "A"}, headers=mgr)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    url = f"/api/v1/customers/{cid}"
    call("POST", "/api/v1/customers", json={"name": "契约测试有限公司"}, headers=mgr)  # duplicate
    call("POST", "/api/v1/customers", json={"name": ""}, headers=en)
    call("POST", "/api/v1/customers", json={"name": "只读用户的客户"}, headers=ro)
    call("PATCH", url, json={"region": "上海"}, headers=mgr)
    call("PATCH", url, json={"region": "上海"}, headers={**mgr, "If-Match": '"42"'})
    changed = call("PATCH", url, json={"region": "上海"}, headers={**mgr, "If-Match": created.headers["etag"]})
    assert changed.status_code == 200, changed.text

    contact = call("POST", "/api/v1/contacts", json={"customer_id": cid, "name": "王经理", "mobile": "13912345678"},
                   headers=mgr)
    assert contact.status_code == 201, contact.text
    call("PATCH", f"/api/v1/contacts/{contact.json()['id']}", json={"position": "采购经理"},
         headers={**mgr, "If-Match": contact.headers["etag"]})
    follow = call("POST", "/api/v1/follow-ups", json={"customer_id": cid, "linkman_id": contact.json()["id"],
                                                      "method": "phone", "content": "电话沟通需求",
                                                      "contacted_at": now}, headers=mgr)
    assert follow.status_code == 201, follow.text
    opp = call("POST", "/api/v1/opportunities", json={"customer_id": cid, "title": "年度采购", "stage": "initial",
                                                      "amount": "5000.00", "probability": 20}, headers=mgr)
    assert opp.status_code == 201, opp.text
    call("POST", "/api/v1/opportunities", json={"customer_id": world.row("mgr_c", "customer"), "title": "越权",
                                                "stage": "initial"}, headers=mgr)
    call("POST", f"/api/v1/opportunities/{opp.json()['id']}/stage", json={"stage": "proposal"},
         headers={**mgr, "If-Match": opp.headers["etag"]})
    call("POST", f"/api/v1/opportunities/{opp.json()['id']}/stage", json={"stage": "proposal"}, headers=mgr)
    care_id = world.row("mgr_a", "customer_care")
    call("POST", f"/api/v1/care-tasks/{care_id}/feedback", json={"feedback": "太早"}, headers=mgr)
    call("POST", f"/api/v1/care-tasks/{care_id}/execute", json={"care_type": "phone_call", "detail": "问候"},
         headers=mgr)
    call("POST", f"/api/v1/care-tasks/{care_id}/feedback", json={"feedback": "满意"}, headers=mgr)
    call("POST", "/api/v1/care-tasks", json={"customer_id": cid, "care_type": "visit", "detail": "拜访"},
         headers=mgr)
    product_id = call("GET", "/api/v1/products", headers=mgr).json()["items"][0]["id"]
    order = call("POST", "/api/v1/orders", json={"customer_id": cid, "order_date": "2026-11-30",
                                                 "lines": [{"product_id": product_id, "quantity": 2}]},
                 headers={**mgr, "Idempotency-Key": "contract-1"})
    call("POST", "/api/v1/orders", json={"customer_id": cid, "order_date": "2026-11-30",
                                         "lines": [{"product_id": product_id, "quantity": 2}]},
         headers={**mgr, "Idempotency-Key": "contract-1"})
    call("GET", f"/api/v1/orders/{order.json()['id']}/lines", headers=mgr)
    call("POST", "/api/v1/orders", json={"customer_id": cid, "order_date": "tomorrow", "lines": []}, headers=mgr)
    from tests.pools import factories

    pool = factories.pool("契约公海")
    waiting = factories.pooled(pool.id)
    call("GET", "/api/v1/pools", headers=mgr)
    call("POST", f"/api/v1/pools/{pool.id}/claim", json={"customer_ids": [waiting.id]}, headers=mgr)
    call("POST", f"/api/v1/pools/{pool.id}/return", json={"customer_ids": [waiting.id], "reason": "x"}, headers=mgr)
    call("POST", f"/api/v1/pools/{pool.id}/return", json={"customer_ids": [waiting.id], "reason": "暂无需求"},
         headers=mgr)
    call("DELETE", f"/api/v1/contacts/{contact.json()['id']}", headers={**mgr, "If-Match": '"nope"'})
    call("DELETE", url, headers={**admin, "If-Match": changed.headers["etag"]})  # has contacts: refused
    problems = call.check()
    assert len(call.seen) > 70
    assert not problems, problems
