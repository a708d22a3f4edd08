"""Server-side sessions: signing out ends that session everywhere, and only that one (issue: a copied
``crm_session`` cookie kept opening pages after logout until the idle timeout)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crm_admin import db
from tests.conftest import PASSWORD, csrf_token


def _cookie(client: Any) -> str:
    value = client.cookies.get("crm_session")
    assert value, "signed in without a session cookie"
    return str(value)


def _with_cookie(make_client: Any, value: str) -> Any:
    other = make_client()
    other.cookies.set("crm_session", value)
    return other


def _live_sessions(user_id: int) -> int:
    from crm_admin.accounts.models import SysSession

    with db.session_factory()() as session:
        return int(session.execute(
            select(func.count()).select_from(SysSession).where(
                SysSession.user_id == user_id, SysSession.revoked_at.is_(None))
        ).scalar_one())


def test_copied_cookie_no_longer_opens_pages_after_logout(make_user: Any, login_as: Any,
                                                          make_client: Any) -> None:
    user = make_user("sess1", ["manager"])
    browser = login_as("sess1")
    copied = _cookie(browser)
    assert _with_cookie(make_client, copied).get("/admin/customer/list").status_code == 200

    # log out through the UI: the confirmation page, then its POST with the page's token
    assert browser.get("/admin/logout").status_code == 200
    out = browser.post("/admin/logout", data={"csrf_token": csrf_token_of_logout(browser)},
                       follow_redirects=False)
    assert out.status_code in (302, 303)

    replay = _with_cookie(make_client, copied).get("/admin/customer/list", follow_redirects=False)
    assert replay.status_code in (302, 303) and "/admin/login" in replay.headers["location"]
    assert _live_sessions(user.id) == 0


def csrf_token_of_logout(client: Any) -> str:
    import re

    page = client.get("/admin/logout").text
    match = re.search(r'name="csrf_token" value="([^"]*)"', page)
    return match.group(1) if match else csrf_token(client)


def test_logout_leaves_the_users_other_sessions_signed_in(make_user: Any, login_as: Any) -> None:
    user = make_user("sess2", ["manager"])
    office = login_as("sess2")
    laptop = login_as("sess2")
    assert _live_sessions(user.id) == 2
    office.post("/admin/logout", data={"csrf_token": csrf_token_of_logout(office)}, follow_redirects=False)
    assert office.get("/admin/customer/list", follow_redirects=False).status_code == 302
    assert laptop.get("/admin/customer/list").status_code == 200
    assert _live_sessions(user.id) == 1


def test_revocation_is_read_from_the_database_not_the_process(make_user: Any, login_as: Any,
                                                              make_client: Any) -> None:
    """Another node signs the session out (a row update): this process refuses the cookie next request."""
    from sqlalchemy import update

    from crm_admin.accounts.models import SysSession

    user = make_user("sess3", ["manager"])
    client = login_as("sess3")
    assert client.get("/admin/customer/list").status_code == 200
    with db.transaction() as session:
        session.execute(update(SysSession).where(SysSession.user_id == user.id)
                        .values(revoked_at=db.utcnow()))
    assert client.get("/admin/customer/list", follow_redirects=False).status_code == 302


def test_cookie_of_a_session_that_has_no_row_is_refused(make_user: Any, login_as: Any) -> None:
    """A cookie whose session row is gone (e.g. expired rows purged, or a cookie signed before
    server-side sessions existed) must not open pages."""
    from sqlalchemy import delete

    from crm_admin.accounts.models import SysSession

    user = make_user("sess4", ["manager"])
    client = login_as("sess4")
    with db.transaction() as session:
        session.execute(delete(SysSession).where(SysSession.user_id == user.id))
    assert client.get("/admin/customer/list", follow_redirects=False).status_code == 302


def test_session_token_is_stored_only_as_a_hash(make_user: Any, login_as: Any) -> None:
    import base64
    import json

    from crm_admin.accounts.models import SysSession

    user = make_user("sess5", ["manager"])
    client = login_as("sess5", PASSWORD)
    payload = _cookie(client).split(".")[0]
    data = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    with db.session_factory()() as session:
        hashes = list(session.execute(select(SysSession.token_hash).where(SysSession.user_id == user.id))
                      .scalars())
    assert data["sid"] and data["sid"] not in hashes and len(hashes) == 1
