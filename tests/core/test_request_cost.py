"""What the per-request identity and policy check costs once the permission set is cached."""

from __future__ import annotations

from typing import Any

from tests.conftest import statements_sent


def test_per_request_auth_cost(make_user: Any, login_as: Any) -> None:
    make_user("cost1", ["manager"])
    c = login_as("cost1")
    c.get("/admin/customer/list")  # warm: permission set computed and cached for this policy version
    with statements_sent() as statements:
        assert c.get("/admin/customer/list").status_code == 200
    meta = [s for s in statements if "FROM sys_meta" in s]
    identity = [s for s in statements if "sys_session" in s]
    print(f"\nrequest statements: {len(statements)}, identity: {len(identity)}, version checks: {len(meta)}")
    assert len(identity) == 1  # the signed-in user's row, joined with their live session
    # the policy version (every request) and, at most every 2 s, the dictionary version: primary-key reads
    assert 1 <= len(meta) <= 2
    assert not any("casbin_rule" in s or "FROM sys_role" in s for s in statements)  # no policy reload
