from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_PASSWORD, login


def test_root_redirects_to_admin(client: Any) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "/admin/"


def test_login_page_is_chinese(client: Any) -> None:
    r = client.get("/admin/login")
    assert r.status_code == 200
    assert "登录" in r.text


def test_admin_logs_in_and_sees_customer_list(client: Any) -> None:
    r = login(client, "admin", ADMIN_PASSWORD)
    assert r.status_code == 302
    r = client.get("/admin/customer/list")
    assert r.status_code == 200
    assert "客户" in r.text


def test_wrong_password_is_refused(client: Any) -> None:
    r = login(client, "admin", "wrong-password1")
    assert r.status_code == 400
    assert client.get("/admin/customer/list", follow_redirects=False).status_code == 302


def test_health_endpoints(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["database"] == "up"
