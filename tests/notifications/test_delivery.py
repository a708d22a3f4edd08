"""Events reach the channels: the morning's birthday tasks at a WeCom-style robot, signed DingTalk and
Feishu messages, e-mail through SMTP, retries with back-off, and once per channel with two senders."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, update

from crm_admin import db
from crm_admin.core import notify
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.notifications import jobs, service
from crm_admin.notifications.models import Notification, NotificationOutbox
from crm_admin.scheduler.service import run_job
from tests.care import factories as f
from tests.notifications.receivers import SmtpSink, WebhookReceiver

TODAY = dt.date(2026, 3, 10)
MORNING = dt.datetime(2026, 3, 9, 23, 0, tzinfo=dt.UTC)  # 07:00 in Shanghai on TODAY


def _outbox() -> list[NotificationOutbox]:
    with db.session_factory()() as session:
        return list(session.execute(select(NotificationOutbox).order_by(NotificationOutbox.id)).scalars())


def _event(user_ids: list[int], key: str, subject: str = "测试通知") -> None:
    with acting_as(SYSTEM), db.transaction() as session:
        notify.notify(session, "import_done", user_ids, subject, "正文", None, dedupe_key=key)


def test_the_morning_birthday_tasks_reach_a_wecom_robot(make_user: Any, add_channel: Any,
                                                          receiver: WebhookReceiver) -> None:
    manager = make_user("bday_mgr", ["manager"])
    other = make_user("bday_other", ["manager"])
    add_channel(user_id=manager.id, kind="wecom", address=f"{receiver.url}/cgi-bin/webhook/send?key=abc")
    customer = f.customer(manager.id, name="华东机械")
    f.linkman(customer.id, dt.date(1985, 3, 10), name="孙小姐")
    f.linkman(customer.id, dt.date(1990, 3, 10), name="王先生")
    f.linkman(f.customer(other.id).id, dt.date(1970, 3, 11), name="明天生日")

    result = run_job("birthday_scan", trigger="manual", now=MORNING, today=TODAY)
    assert (result.status, result.created) == ("success", 2)
    assert run_job("birthday_scan", trigger="manual", now=MORNING, today=TODAY).created == 0  # again: nothing new
    report = jobs.send_pending()
    assert report.sent == 1 and not receiver.received[1:]

    (message,) = receiver.received
    assert message.path == "/cgi-bin/webhook/send" and message.query == {"key": "abc"}
    assert message.body["msgtype"] == "markdown"
    content = message.body["markdown"]["content"]
    assert "今天有 2 条生日关怀任务待执行" in content
    assert "华东机械 · 孙小姐" in content and "华东机械 · 王先生" in content and "明天生日" not in content
    # in-app too, for the manager only
    with db.session_factory()() as session:
        owners = session.execute(select(Notification.user_id, Notification.kind)).all()
    assert owners == [(manager.id, "care_due")]
    assert jobs.send_pending().sent == 0  # delivered once


def _dingtalk_ok(query: dict[str, str], secret: str) -> bool:
    timestamp = query["timestamp"]
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, query["sign"])


def _feishu_ok(body: dict[str, Any], secret: str) -> bool:
    key = f"{body['timestamp']}\n{secret}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, body["sign"])


def test_dingtalk_and_feishu_messages_carry_the_signature_each_platform_checks(
        make_user: Any, add_channel: Any, receiver: WebhookReceiver) -> None:
    user = make_user("signed", ["manager"])
    add_channel(user_id=user.id, kind="dingtalk", address=f"{receiver.url}/robot/send?access_token=tok",
                secret="SECdingtalk")
    add_channel(user_id=user.id, kind="feishu", address=f"{receiver.url}/open-apis/bot/v2/hook/xyz",
                secret="feishu-secret")
    _event([user.id], "signed:1", "签名测试")
    assert jobs.send_pending().sent == 2
    by_path = {r.path: r for r in receiver.received}
    ding = by_path["/robot/send"]
    assert ding.query["access_token"] == "tok" and _dingtalk_ok(ding.query, "SECdingtalk")
    assert not _dingtalk_ok(ding.query, "SECwrong")
    assert abs(int(ding.query["timestamp"]) / 1000 - dt.datetime.now(dt.UTC).timestamp()) < 60  # milliseconds
    assert ding.body["msgtype"] == "markdown" and "签名测试" in ding.body["markdown"]["text"]
    lark = by_path["/open-apis/bot/v2/hook/xyz"]
    assert _feishu_ok(lark.body, "feishu-secret") and not _feishu_ok(lark.body, "other")
    assert abs(int(lark.body["timestamp"]) - dt.datetime.now(dt.UTC).timestamp()) < 60  # seconds
    assert lark.body["msg_type"] == "text" and "签名测试" in lark.body["content"]["text"]


def test_email_goes_through_the_configured_smtp_server(make_user: Any, add_channel: Any,
                                                        smtp_sink: SmtpSink) -> None:
    user = make_user("mailed", ["manager"])
    add_channel(user_id=user.id, kind="email", address="mailed@example.com")
    _event([user.id], "mail:1", "导入客户完成")
    assert jobs.send_pending().sent == 1
    (mail,) = smtp_sink.messages
    assert "mailed@example.com" in mail["rcpt"][0] and "crm@example.com" in mail["from"]
    assert "Subject:" in mail["data"]


def test_a_failing_robot_is_retried_with_back_off_then_given_up_and_shown_to_admins(
        make_user: Any, add_channel: Any, receiver: WebhookReceiver, admin_client: Any) -> None:
    user = make_user("flaky", ["manager"])
    add_channel(user_id=user.id, kind="wecom", address=f"{receiver.url}/hook")
    receiver.answer = {"errcode": 93000, "errmsg": "invalid webhook url"}
    _event([user.id], "flaky:1")
    waits = []
    for attempt in range(1, service.MAX_ATTEMPTS + 1):
        before = db.utcnow()
        report = jobs.send_pending()
        (row,) = _outbox()
        assert row.attempts == attempt and "93000" in (row.last_error or "")
        if attempt < service.MAX_ATTEMPTS:
            assert report.retried == 1 and row.status == "pending"
            assert row.next_attempt_at is not None
            waits.append(round((row.next_attempt_at - before).total_seconds() / 60))
            assert jobs.send_pending().sent == 0  # not due yet
            with db.transaction() as session:  # time passes
                session.execute(update(NotificationOutbox).values(next_attempt_at=db.utcnow()))
        else:
            assert report.failed == 1 and row.status == "failed"
    assert waits == [1, 5, 30, 120]
    assert len(receiver.received) == service.MAX_ATTEMPTS

    page = admin_client.get("/admin/notifications/failed")
    assert page.status_code == 200 and "93000" in page.text
    token = __import__("re").search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)
    receiver.answer = {"errcode": 0}
    r = admin_client.post("/admin/notifications/failed/retry", data={"id": _outbox()[0].id, "csrf_token": token},
                          follow_redirects=False)
    assert r.status_code == 303
    assert jobs.send_pending().sent == 1 and _outbox()[0].status == "sent"
    from crm_admin.audit.models import AuditLog
    with db.session_factory()() as session:
        assert session.execute(select(func.count()).select_from(AuditLog)
                               .where(AuditLog.action == "notification_retry")).scalar_one() == 1


def test_an_unreachable_robot_is_a_recorded_failure(make_user: Any, add_channel: Any) -> None:
    user = make_user("unreachable", ["manager"])
    add_channel(user_id=user.id, kind="wecom", address="http://127.0.0.1:9/hook")
    _event([user.id], "down:1")
    assert jobs.send_pending().retried == 1
    assert "无法连接" in (_outbox()[0].last_error or "")


def test_each_event_goes_out_once_per_channel_with_two_senders_at_once(
        make_user: Any, add_channel: Any, receiver: WebhookReceiver, world: Any) -> None:
    a = make_user("twice_a", ["manager"], dept_id=world.depts["s2"])
    b = make_user("twice_b", ["manager"], dept_id=world.depts["s2"])
    # a's own robot, and the department's robot that both a and b feed
    add_channel(user_id=a.id, kind="wecom", address=f"{receiver.url}/own")
    add_channel(dept_id=world.depts["s2"], kind="wecom", address=f"{receiver.url}/team")
    for n in range(30):
        _event([a.id, b.id], f"both:{n}", f"事件{n}")
    _event([a.id, b.id], "both:0", "事件0")  # raised again: nothing new
    assert len(_outbox()) == 60

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def sender() -> None:
        try:
            start.wait()
            jobs.send_pending(limit=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seen = [(r.path, r.body["markdown"]["content"]) for r in receiver.received]
    assert len(seen) == 60 and len(set(seen)) == 60
    assert sum(1 for path, _ in seen if path == "/team") == 30
    assert {row.status for row in _outbox()} == {"sent"}


def test_daily_digest_sends_one_summary_instead_of_each_event(make_user: Any, add_channel: Any,
                                                                receiver: WebhookReceiver) -> None:
    user = make_user("digest", ["manager"])
    add_channel(user_id=user.id, kind="wecom", address=f"{receiver.url}/digest", daily_digest=True)
    for n in range(3):
        _event([user.id], f"d:{n}", f"摘要事件{n}")
    assert jobs.send_pending().sent == 0  # nothing per event
    now = db.utcnow()
    for _ in range(2):
        assert run_job("notification_digest", trigger="manual", now=now, today=now.date()).status == "success"
    assert jobs.send_pending().sent == 1
    (message,) = receiver.received
    content = message.body["markdown"]["content"]
    assert "3 条" in content and all(f"摘要事件{n}" in content for n in range(3))


def test_a_failed_job_notifies_the_administrators(make_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.scheduler import service as scheduler

    spec = scheduler.jobs()["care_plans"]

    def broken(session: Any, ctx: Any) -> Any:
        raise RuntimeError("磁盘已满")

    monkeypatch.setitem(scheduler._JOBS, "care_plans", scheduler.JobSpec(spec.name, spec.label, broken,
                                                                            spec.time_setting))
    make_user("not_admin", ["manager"])
    assert run_job("care_plans", trigger="manual").status == "failed"
    with db.session_factory()() as session:
        rows = session.execute(select(SysUser.username, Notification.title, Notification.body)
                               .join(SysUser, SysUser.id == Notification.user_id)).all()
    assert [(r.username, r.title) for r in rows] == [("admin", "定时任务失败:关怀计划任务")]
    assert "磁盘已满" in rows[0].body
