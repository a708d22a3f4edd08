"""The notification centre: the bell on every page, the list, mark read; each user sees only their own;
channels on the user's settings page, validated and audited; departments' channels for administrators."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from crm_admin import db
from crm_admin.core import notify
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.notifications.models import Notification, NotificationChannel
from tests.conftest import csrf_token, statements_sent


def _notify(user_id: int, key: str, title: str, link: notify.Link | None = None) -> int:
    with acting_as(SYSTEM), db.transaction() as session:
        notify.notify(session, "churn_alert", [user_id], title, "正文", link, dedupe_key=key)
        return session.execute(select(Notification.id).where(Notification.user_id == user_id,
                                                             Notification.dedupe_key == key)).scalar_one()


def _bell(html: str) -> str:
    match = re.search(r'id="notification-unread">([^<]*)<', html)
    return match.group(1) if match else ""


def test_bell_counts_my_unread_and_mark_read_clears_it(make_user: Any, login_as: Any) -> None:
    a = make_user("bell_a", ["manager"])
    first = _notify(a.id, "k1", "甲的第一条")
    _notify(a.id, "k2", "甲的第二条")
    _notify(a.id, "k2", "甲的第二条")  # the same event again: once
    client = login_as("bell_a")
    page = client.get("/admin/customer/list")
    assert page.status_code == 200 and _bell(page.text) == "2"
    listing = client.get("/admin/notifications")
    assert "甲的第一条" in listing.text and "甲的第二条" in listing.text
    token = csrf_token(client)
    assert client.post("/admin/notifications/read", data={"id": first, "csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert _bell(client.get("/admin/customer/list").text) == "1"
    assert client.post("/admin/notifications/read-all", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert _bell(client.get("/admin/customer/list").text) == ""
    assert "甲的第二条" not in client.get("/admin/notifications?unread=1").text


def test_the_bell_costs_no_statement_of_its_own(make_user: Any, login_as: Any) -> None:
    a = make_user("bell_cost", ["manager"])
    _notify(a.id, "k1", "一条")
    client = login_as("bell_cost")
    client.get("/admin/customer/list")  # warm
    with statements_sent() as statements:
        page = client.get("/admin/customer/list")
    assert page.status_code == 200 and _bell(page.text) == "1"
    counting = [s for s in statements if "FROM notification" in s]
    # counted by the statement that loads the signed-in user and their session, once
    assert len(counting) == 1 and "sys_session" in counting[0]


def test_another_users_notification_does_not_exist_for_me(make_user: Any, login_as: Any) -> None:
    a = make_user("scope_a", ["manager"])
    make_user("scope_b", ["manager"])
    theirs = _notify(a.id, "secret", "甲的秘密")
    b = login_as("scope_b")
    assert "甲的秘密" not in b.get("/admin/notifications").text
    token = csrf_token(b)
    for path in ("/admin/notifications/read", "/admin/notifications/open"):
        assert b.post(path, data={"id": theirs, "csrf_token": token}, follow_redirects=False).status_code == 404
    assert b.post("/admin/notifications/read", data={"id": "x", "csrf_token": token}).status_code == 404
    with db.session_factory()() as session:
        assert session.get(Notification, theirs).read_at is None
    admin = login_as("admin", __import__("tests.conftest", fromlist=["ADMIN_PASSWORD"]).ADMIN_PASSWORD)
    assert admin.post("/admin/notifications/read", data={"id": theirs, "csrf_token": csrf_token(admin)}).status_code == 404


def test_opening_a_notification_marks_it_read_and_leads_to_its_page(make_user: Any, login_as: Any) -> None:
    a = make_user("open_a", ["manager"])
    nid = _notify(a.id, "open", "去工作台", notify.Link("admin:view-care-workbench"))
    client = login_as("open_a")
    r = client.post("/admin/notifications/open", data={"id": nid, "csrf_token": csrf_token(client)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/admin/care/workbench")
    with db.session_factory()() as session:
        assert session.get(Notification, nid).read_at is not None


def test_my_channels_are_validated_and_audited_with_the_secret_masked(make_user: Any, login_as: Any) -> None:
    from crm_admin.audit.models import AuditLog

    me = make_user("chan_me", ["manager"])
    make_user("chan_other", ["manager"])
    client = login_as("chan_me")
    token = csrf_token(client)
    for kind, address in (("wecom", "ftp://example.com/hook"), ("dingtalk", "javascript:alert(1)"),
                          ("email", "not-an-address"), ("feishu", "http://"), ("sms", "13800000000")):
        r = client.post("/admin/account/notifications",
                        data={"op": "add", "kind": kind, "address": address, "csrf_token": token})
        assert r.status_code == 400 and 'id="channel-error"' in r.text, (kind, address)
    r = client.post("/admin/account/notifications", data={
        "op": "add", "kind": "dingtalk", "address": "http://10.0.0.8/robot/send?access_token=t",  # intranet: allowed
        "secret": "SECtop", "csrf_token": token})
    assert r.status_code == 200 and "http://10.0.0.8/robot/send" in r.text and "SECtop" not in r.text
    with db.session_factory()() as session:
        channel = session.execute(select(NotificationChannel)).scalar_one()
        audit_rows = session.execute(select(AuditLog).where(AuditLog.resource == "notification_channel")).scalars().all()
    assert (channel.user_id, channel.kind, channel.secret) == (me.id, "dingtalk", "SECtop")
    assert audit_rows and all("SECtop" not in (row.changes or "") for row in audit_rows)
    # another user cannot touch it
    other = login_as("chan_other")
    r = other.post("/admin/account/notifications", data={"op": "delete", "id": channel.id,
                                                         "csrf_token": csrf_token(other)})
    assert r.status_code == 404
    r = client.post("/admin/account/notifications", data={"op": "digest_on", "id": channel.id, "csrf_token": token})
    assert r.status_code == 200
    r = client.post("/admin/account/notifications", data={"op": "delete", "id": channel.id, "csrf_token": token})
    assert r.status_code == 200
    with db.session_factory()() as session:
        assert session.execute(select(NotificationChannel)).first() is None


def test_department_channels_are_for_administrators(world: Any, login_as: Any, admin_client: Any) -> None:
    manager = login_as("mgr_a")
    assert manager.get("/admin/notifications/departments").status_code == 403
    token = csrf_token(admin_client)
    r = admin_client.post("/admin/notifications/departments", data={
        "op": "add", "dept_id": world.depts["s1"], "kind": "wecom",
        "address": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "csrf_token": token})
    assert r.status_code == 200 and "qyapi.weixin.qq.com" in r.text
    with db.session_factory()() as session:
        channel = session.execute(select(NotificationChannel)).scalar_one()
    assert (channel.dept_id, channel.user_id) == (world.depts["s1"], None)


def test_a_customer_transferred_to_me_is_a_notification(world: Any, login_as: Any) -> None:
    from crm_admin.core.principal import load_principal
    from crm_admin.transfers.service import transfer_customers

    with db.transaction() as session:
        from crm_admin.accounts.models import SysUser

        lead = load_principal(session.connection(), session.get(SysUser, world.users["lead"]))
        transfer_customers(session, lead, customer_ids=[world.row("mgr_a", "customer")],
                           new_manager_id=world.users["mgr_b"], reason="调整分工")
    with db.session_factory()() as session:
        rows = session.execute(select(Notification.user_id, Notification.kind, Notification.body)).all()
    assert [(r.user_id, r.kind) for r in rows] == [(world.users["mgr_b"], "transferred")]
    assert "调整分工" in rows[0].body
    b = login_as("mgr_b")
    assert _bell(b.get("/admin/notifications").text) == "1"


def test_deleting_a_channel_fails_what_was_still_to_go_through_it(make_user: Any, add_channel: Any) -> None:
    from crm_admin.notifications import service
    from crm_admin.notifications.models import NotificationOutbox

    m = make_user("gone_m", ["manager"])
    channel_id = add_channel(user_id=m.id, kind="wecom", address="http://127.0.0.1:9/hook")
    _notify(m.id, "gone", "发不出去")
    with acting_as(SYSTEM), db.transaction() as session:
        service.change_channel(session, channel_id, op="delete", user_id=m.id)
    with db.session_factory()() as session:
        row = session.execute(select(NotificationOutbox)).scalar_one()
    assert (row.status, row.channel_id, row.last_error) == ("failed", None, "通知渠道已删除。")
    with acting_as(SYSTEM), db.transaction() as session:
        try:
            service.retry_failed(session, row.id)
        except service.UserError as exc:
            assert "已删除" in exc.message
        else:
            raise AssertionError("retried through a deleted channel")


def test_the_bell_stops_counting_at_a_hundred(make_user: Any, login_as: Any) -> None:
    from sqlalchemy import insert

    a = make_user("bell_many", ["manager"])
    now = db.utcnow()
    with db.transaction() as session:
        session.execute(insert(Notification), [{"user_id": a.id, "kind": "import_done", "title": f"第{i}条",
                                                "dedupe_key": f"many:{i}", "created_at": now, "updated_at": now}
                                               for i in range(150)])
    client = login_as("bell_many")
    assert _bell(client.get("/admin/customer/list").text) == "99+"
    assert "150" in client.get("/admin/notifications").text  # the centre itself counts them all
