"""Notifications: writing them with the event, the user's centre, channels, and the outbox's delivery.

Services never commit: the job, request or event source that owns the unit of work does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session

from crm_admin.accounts.models import CasbinRule, SysDept, SysUser
from crm_admin.core import audit
from crm_admin.core.errors import NotFound, UserError
from crm_admin.core.i18n import Labels
from crm_admin.core.i18n import gettext as _
from crm_admin.core.notify import ADMINS, Event, Link, absolute_link
from crm_admin.db import utcnow
from crm_admin.notifications import channels
from crm_admin.notifications.models import (
    CHANNEL_KINDS,
    Notification,
    NotificationChannel,
    NotificationOutbox,
)
from crm_admin.settings import get_settings

# minutes before the 2nd, 3rd, 4th and 5th attempt; a 5th failure is final
BACKOFF_MINUTES = (1, 5, 30, 120)
MAX_ATTEMPTS = len(BACKOFF_MINUTES) + 1
# a row claimed by a sender that then died goes back to the queue after this long
CLAIM_TIMEOUT = dt.timedelta(minutes=10)
SEND_BATCH = 20  # × the send timeout stays well under CLAIM_TIMEOUT when robots hang
DIGEST_ITEMS = 50

CHANNEL_LABELS = Labels({"email": "电子邮件", "wecom": "企业微信群机器人", "dingtalk": "钉钉群机器人", "feishu": "飞书群机器人"})
KIND_LABELS = Labels({"care_due": "今日关怀任务", "care_overdue": "逾期关怀任务", "churn_alert": "流失预警",
               "transferred": "客户转入", "reclaim_warning": "即将回收", "import_done": "导入完成",
               "job_failed": "定时任务失败", "digest": "每日摘要"})


def _insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping those whose unique key exists (a concurrent or repeated event)."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing()
    else:
        stmt = mysql.insert(table).prefix_with("IGNORE")
    return int(getattr(session.execute(stmt, rows), "rowcount", 0) or 0)


def target_key(kind: str, address: str) -> str:
    return hashlib.sha256(f"{kind}:{address.strip().lower()}".encode()).hexdigest()


# ----- writing (registered with core.notify in notifying.py) -------------------------------------

def admin_ids(session: Session) -> list[int]:
    subjects = session.execute(
        select(CasbinRule.v0).where(CasbinRule.ptype == "g", CasbinRule.v1 == "role:admin")
    ).scalars().all()
    return [int(s[2:]) for s in subjects if s and s.startswith("u:") and s[2:].isdigit()]


def write_event(session: Session, event: Event) -> int:
    """One notification per active recipient (once per ``dedupe_key``), and one outbox row per channel
    of theirs (or of their department) that takes each event rather than a daily digest."""
    ids: set[int] = set()
    for r in event.recipients:
        if r == ADMINS:
            ids.update(admin_ids(session))
        elif isinstance(r, int):
            ids.add(r)
    if not ids:
        return 0
    users = session.execute(
        select(SysUser.id, SysUser.dept_id, SysUser.real_name, SysUser.username)
        .where(SysUser.id.in_(sorted(ids)), SysUser.is_active.is_(True))
    ).all()
    if not users:
        return 0
    now = utcnow()
    link = event.link.encode() if event.link else None
    written = _insert_ignore(session, Notification.__table__, [
        {"user_id": u.id, "kind": event.kind, "title": event.subject, "body": event.body, "link": link,
         "dedupe_key": event.dedupe_key, "created_at": now, "updated_at": now} for u in users])
    user_ids = [u.id for u in users]
    dept_ids = sorted({u.dept_id for u in users if u.dept_id is not None})
    conditions = [NotificationChannel.user_id.in_(user_ids)]
    if dept_ids:
        conditions.append(NotificationChannel.dept_id.in_(dept_ids))
    found = session.execute(
        select(NotificationChannel).where(or_(*conditions), NotificationChannel.enabled.is_(True),
                                          NotificationChannel.daily_digest.is_(False))
        .order_by(NotificationChannel.id)
    ).scalars().all()
    if not found:
        return written
    notification_of = dict(session.execute(
        select(Notification.user_id, Notification.id)
        .where(Notification.dedupe_key == event.dedupe_key, Notification.user_id.in_(user_ids))
    ).tuples().all())
    by_id = {u.id: u for u in users}
    rows = []
    for ch in found:
        if ch.user_id is not None:
            owner = by_id[ch.user_id]
            subject = event.subject
        else:
            owner = next(u for u in users if u.dept_id == ch.dept_id)
            subject = f"【{owner.real_name or owner.username}】{event.subject}"
        rows.append({
            "notification_id": notification_of.get(owner.id), "channel_id": ch.id, "event_key": event.dedupe_key,
            "channel_kind": ch.kind, "target": ch.address, "target_key": target_key(ch.kind, ch.address),
            "subject": subject[:200], "body": event.body, "status": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now, "updated_at": now,
        })
    _insert_ignore(session, NotificationOutbox.__table__, rows)
    return written


BELL_CAP = 100  # the bell shows "99+" beyond this: counting further would cost every page more


def _unread_counted(user_id: int, cap: int | None) -> Select[Any]:
    unread = select(Notification.id).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if cap is not None:
        unread = unread.limit(cap)
    return select(func.count()).select_from(unread.subquery())


def unread_count(session: Session, user_id: int, *, cap: int | None = BELL_CAP) -> int:
    """The user's unread notifications, up to ``cap``: one range of ``(user_id, read_at)``, at most
    ``cap`` index entries long however many a user leaves unread."""
    return int(session.execute(_unread_counted(user_id, cap)).scalar_one())


def unread_count_column(user_id: int) -> Any:
    """The bell's count (up to ``BELL_CAP``) as a scalar subquery, for the statement that loads the
    signed-in user on every request."""
    return _unread_counted(user_id, BELL_CAP).scalar_subquery()


# ----- the user's notification centre ----------------------------------------------------------

@dataclass
class Page:
    rows: list[Notification]
    page: int
    has_next: bool
    unread: int


def list_notifications(session: Session, user_id: int, *, unread_only: bool = False, page: int = 1,
                       per_page: int = 30) -> Page:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    page = max(1, page)
    rows = list(session.execute(
        stmt.order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page + 1)
    ).scalars())
    return Page(rows[:per_page], page, len(rows) > per_page, unread_count(session, user_id, cap=None))


def _own(session: Session, user_id: int, notification_id: int | None) -> Notification:
    row = session.get(Notification, notification_id) if notification_id else None
    if row is None or row.user_id != user_id:  # another user's notification does not exist for this one
        raise NotFound()
    return row


def mark_read(session: Session, user_id: int, notification_id: int | None) -> Notification:
    row = _own(session, user_id, notification_id)
    if row.read_at is None:
        session.execute(update(Notification).where(Notification.id == row.id, Notification.read_at.is_(None))
                        .values(read_at=utcnow()).execution_options(synchronize_session=False))
    return row


def mark_all_read(session: Session, user_id: int) -> int:
    result = session.execute(
        update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow()).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ----- channels --------------------------------------------------------------------------------

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_channel(kind: str, address: str, secret: str) -> tuple[str, str | None]:
    """The cleaned address and secret, or a refusal in words.

    Webhooks: http/https only, with a host. Intranet addresses are allowed on purpose (WeCom and
    DingTalk run on premises): see README 通知 for the server-side request this implies."""
    if kind not in CHANNEL_KINDS:
        raise UserError(_("请选择通知渠道。"), field="kind")
    address = address.strip()
    secret = secret.strip()
    if not address:
        raise UserError(_("请填写地址。"), field="address")
    if len(address) > 500:
        raise UserError(_("地址不能超过 500 个字符。"), field="address")
    if len(secret) > 255:
        raise UserError(_("密钥不能超过 255 个字符。"), field="secret")
    if kind == "email":
        if not EMAIL.match(address) or len(address) > 254:
            raise UserError(_("请填写有效的电子邮件地址。"), field="address")
        return address, None
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(_("机器人地址须是以 http:// 或 https:// 开头的网址。"), field="address")
    if any(ch.isspace() for ch in address):
        raise UserError(_("机器人地址不能包含空格。"), field="address")
    if kind == "wecom":
        return address, None  # the key is part of the address
    return address, secret or None


def channels_of(session: Session, *, user_id: int | None = None, dept_id: int | None = None) -> list[NotificationChannel]:
    stmt = select(NotificationChannel)
    if user_id is not None:
        stmt = stmt.where(NotificationChannel.user_id == user_id)
    elif dept_id is not None:
        stmt = stmt.where(NotificationChannel.dept_id == dept_id)
    else:
        stmt = stmt.where(NotificationChannel.dept_id.is_not(None))
    return list(session.execute(stmt.order_by(NotificationChannel.id)).scalars())


def add_channel(session: Session, *, kind: str, address: str, secret: str = "", daily_digest: bool = False,
                user_id: int | None = None, dept_id: int | None = None) -> NotificationChannel:
    """A channel of a user or of a department; audited (the secret masked) by the flush."""
    address, clean_secret = validate_channel(kind, address, secret)
    if (user_id is None) == (dept_id is None):
        raise UserError(_("渠道须属于一个用户或一个部门。"))
    if dept_id is not None and session.get(SysDept, dept_id) is None:
        raise UserError(_("部门不存在。"), field="dept_id")
    owner = NotificationChannel.user_id == user_id if user_id is not None else NotificationChannel.dept_id == dept_id
    count = session.execute(select(func.count()).select_from(NotificationChannel).where(owner)).scalar_one()
    if count >= 10:
        raise UserError(_("每个用户或部门最多设置 10 个通知渠道。"))
    channel = NotificationChannel(user_id=user_id, dept_id=dept_id, kind=kind, address=address,
                                  secret=clean_secret, daily_digest=daily_digest, enabled=True)
    session.add(channel)
    session.flush()
    return channel


def _channel(session: Session, channel_id: int | None, *, user_id: int | None, departments: bool) -> NotificationChannel:
    row = session.get(NotificationChannel, channel_id, with_for_update=True) if channel_id else None
    if row is None:
        raise NotFound()
    if departments and row.dept_id is None:
        raise NotFound()
    if not departments and (row.user_id is None or row.user_id != user_id):
        raise NotFound()
    return row


def change_channel(session: Session, channel_id: int | None, *, op: str, user_id: int | None = None,
                   departments: bool = False) -> str:
    """Enable, disable, switch the digest, or delete one channel (the user's own, or a department's)."""
    row = _channel(session, channel_id, user_id=user_id, departments=departments)
    if op == "delete":
        # what was still to go out through it will not: visible to administrators among the failures
        session.execute(update(NotificationOutbox)
                        .where(NotificationOutbox.channel_id == row.id, NotificationOutbox.status == "pending")
                        .values(status="failed", last_error="通知渠道已删除。")
                        .execution_options(synchronize_session=False))
        session.execute(update(NotificationOutbox).where(NotificationOutbox.channel_id == row.id)
                        .values(channel_id=None).execution_options(synchronize_session=False))
        session.delete(row)
        session.flush()
        return _("已删除通知渠道。")
    if op == "enable":
        row.enabled = True
    elif op == "disable":
        row.enabled = False
    elif op == "digest_on":
        row.daily_digest = True
    elif op == "digest_off":
        row.daily_digest = False
    else:
        raise UserError(_("未知的操作。"))
    session.flush()
    return _("已保存。")


# ----- delivery --------------------------------------------------------------------------------

@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def claim(session: Session, token: str, now: dt.datetime, limit: int = SEND_BATCH) -> list[int]:
    """Take up to ``limit`` due rows for this sender (``token``): a conditional UPDATE per batch, so
    that of several senders on several nodes exactly one gets each row. Returns the claimed ids."""
    # rows a sender claimed and never reported on (it died) go back to the queue
    session.execute(
        update(NotificationOutbox)
        .where(NotificationOutbox.status == "sending", NotificationOutbox.updated_at < now - CLAIM_TIMEOUT)
        .values(status="pending", claimed_by=None, updated_at=now).execution_options(synchronize_session=False))
    due = session.execute(
        select(NotificationOutbox.id)
        .where(NotificationOutbox.status == "pending", NotificationOutbox.next_attempt_at <= now)
        .order_by(NotificationOutbox.next_attempt_at, NotificationOutbox.id).limit(limit)
    ).scalars().all()
    if not due:
        return []
    session.execute(
        update(NotificationOutbox)
        .where(NotificationOutbox.id.in_(due), NotificationOutbox.status == "pending")
        .values(status="sending", claimed_by=token, updated_at=now).execution_options(synchronize_session=False))
    return list(session.execute(
        select(NotificationOutbox.id)
        .where(NotificationOutbox.id.in_(due), NotificationOutbox.claimed_by == token,
               NotificationOutbox.status == "sending")
    ).scalars())


@dataclass(frozen=True)
class Delivery:
    id: int
    kind: str
    target: str
    secret: str | None
    channel_exists: bool
    subject: str
    body: str
    link: str


def load_deliveries(session: Session, ids: Sequence[int]) -> list[Delivery]:
    public_url = get_settings().public_url
    rows = session.execute(
        select(NotificationOutbox, NotificationChannel.secret, NotificationChannel.id, Notification.link)
        .outerjoin(NotificationChannel, NotificationChannel.id == NotificationOutbox.channel_id)
        .outerjoin(Notification, Notification.id == NotificationOutbox.notification_id)
        .where(NotificationOutbox.id.in_(list(ids))).order_by(NotificationOutbox.id)
    ).all()
    return [Delivery(o.id, o.channel_kind, o.target, secret, channel_id is not None, o.subject, o.body or "",
                     absolute_link(Link.decode(link), public_url))
            for o, secret, channel_id, link in rows]


def backoff(attempts: int) -> dt.timedelta | None:
    """The wait before the next attempt after ``attempts`` failed ones; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return dt.timedelta(minutes=BACKOFF_MINUTES[attempts - 1])


def record_result(session: Session, outbox_id: int, token: str, error: str | None, now: dt.datetime) -> str:
    """Sent, to be retried later, or failed for good; only the sender that claimed the row reports."""
    row = session.get(NotificationOutbox, outbox_id, with_for_update=True)
    if row is None or row.claimed_by != token or row.status != "sending":
        return "lost"
    row.attempts = (row.attempts or 0) + 1
    row.claimed_by = None
    if error is None:
        row.status, row.sent_at, row.last_error = "sent", now, None
        return "sent"
    row.last_error = error[:1000]
    wait = backoff(row.attempts)
    if wait is None:
        row.status = "failed"
        return "failed"
    row.status, row.next_attempt_at = "pending", now + wait
    return "retried"


def record_results(session: Session, *, results: dict[int, str | None], token: str, now: dt.datetime) -> list[str]:
    return [record_result(session, outbox_id, token, error, now) for outbox_id, error in sorted(results.items())]


def deliver(deliveries: Iterable[Delivery]) -> dict[int, str | None]:
    """Send each delivery (outside any transaction): its error, or None when it went out."""
    out: dict[int, str | None] = {}
    for d in deliveries:
        if not d.channel_exists:
            out[d.id] = "通知渠道已删除。"
            continue
        try:
            channels.send(d.kind, d.target, d.secret, channels.Message(d.subject, d.body, d.link))
        except channels.DeliveryError as exc:
            out[d.id] = str(exc) or type(exc).__name__
        except Exception as exc:  # a sender's bug must not stop the other deliveries
            out[d.id] = f"发送时程序出错,请联系系统维护人员({type(exc).__name__})。"
        else:
            out[d.id] = None
    return out


def new_token() -> str:
    return uuid.uuid4().hex


def retry_failed(session: Session, outbox_id: int | None) -> NotificationOutbox:
    row = session.get(NotificationOutbox, outbox_id, with_for_update=True) if outbox_id else None
    if row is None or row.status != "failed":
        raise NotFound()
    if row.channel_id is None:
        raise UserError(_("该通知的渠道已删除,无法重新发送。"))
    row.status, row.attempts, row.next_attempt_at, row.claimed_by = "pending", 0, utcnow(), None
    audit.record(session, "notification_retry", resource="notification_outbox", resource_id=row.id,
                 detail=f"重新发送通知:{CHANNEL_LABELS.get(row.channel_kind, row.channel_kind)} {row.subject}"[:500])
    return row


def failed_deliveries(session: Session, limit: int = 200) -> list[NotificationOutbox]:
    return list(session.execute(
        select(NotificationOutbox).where(NotificationOutbox.status == "failed")
        .order_by(NotificationOutbox.id.desc()).limit(limit)
    ).scalars())


def outbox_counts(session: Session) -> dict[str, int]:
    return dict(session.execute(  # type: ignore[arg-type]
        select(NotificationOutbox.status, func.count()).group_by(NotificationOutbox.status)
    ).tuples().all())


# ----- daily digests ---------------------------------------------------------------------------

def write_digests(session: Session, today: dt.date, now: dt.datetime) -> int:
    """One message per digest channel summarising its owner's (or department's) last 24 hours."""
    since = now - dt.timedelta(days=1)
    written = 0
    digest_channels = session.execute(
        select(NotificationChannel).where(NotificationChannel.enabled.is_(True),
                                          NotificationChannel.daily_digest.is_(True))
        .order_by(NotificationChannel.id)
    ).scalars().all()
    for ch in digest_channels:
        if ch.user_id is not None:
            who = Notification.user_id == ch.user_id
        else:
            members = select(SysUser.id).where(SysUser.dept_id == ch.dept_id, SysUser.is_active.is_(True))
            who = Notification.user_id.in_(members)
        items = session.execute(
            select(Notification.dedupe_key, func.min(Notification.title))
            .where(who, Notification.created_at > since, Notification.created_at <= now)
            .group_by(Notification.dedupe_key).order_by(func.min(Notification.id)).limit(DIGEST_ITEMS + 1)
        ).all()
        if not items:
            continue
        lines = [f"- {title}" for _key, title in items[:DIGEST_ITEMS]]
        if len(items) > DIGEST_ITEMS:
            lines.append("- ……")
        written += _insert_ignore(session, NotificationOutbox.__table__, [{
            "notification_id": None, "channel_id": ch.id, "event_key": f"digest:{ch.id}:{today.isoformat()}",
            "channel_kind": ch.kind, "target": ch.address, "target_key": target_key(ch.kind, ch.address),
            "subject": f"{today.isoformat()} 通知摘要({min(len(items), DIGEST_ITEMS)} 条)",
            "body": "\n".join(lines), "status": "pending", "attempts": 0, "next_attempt_at": now,
            "created_at": now, "updated_at": now,
        }])
    return written
