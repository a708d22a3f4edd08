"""Notifications: one row per recipient, the outbox of deliveries, and the channels they go to."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_admin.db import Base, Timestamped

KINDS = ("care_due", "care_overdue", "churn_alert", "transferred", "reclaim_warning", "import_done", "job_failed")
CHANNEL_KINDS = ("email", "wecom", "dingtalk", "feishu")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


class Notification(Timestamped, Base):
    """One notification of one user (the bell counts the unread ones)."""

    __tablename__ = "notification"
    __resource__ = "notification"

    user_id: Mapped[int] = mapped_column(ForeignKey("sys_user.id"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))  # core.notify.Link, encoded
    read_at: Mapped[dt.datetime | None]
    # the event: a user is notified of it once, however often (or on however many nodes) it is raised
    dedupe_key: Mapped[str] = mapped_column(String(160))

    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        # the bell: one range of the user's unread rows
        Index("ix_notification_user_id_read_at", "user_id", "read_at"),
        Index("ix_notification_created_at", "created_at"),
    )


class NotificationChannel(Timestamped, Base):
    """Where a user's (or a department's members') notifications are also sent."""

    __tablename__ = "notification_channel"
    __resource__ = "notification_channel"

    user_id: Mapped[int | None] = mapped_column(ForeignKey("sys_user.id"))
    dept_id: Mapped[int | None] = mapped_column(ForeignKey("sys_dept.id"))
    kind: Mapped[str] = mapped_column(String(16))  # email / wecom / dingtalk / feishu
    address: Mapped[str] = mapped_column(String(500))  # an e-mail address or the robot's webhook URL
    secret: Mapped[str | None] = mapped_column(String(255))  # DingTalk / Feishu signing secret
    daily_digest: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("ix_notification_channel_user_id", "user_id"),
        Index("ix_notification_channel_dept_id", "dept_id"),
    )


class NotificationOutbox(Timestamped, Base):
    """One delivery of one event to one channel target; written with the event, sent by the scheduler."""

    __tablename__ = "notification_outbox"
    __resource__ = "notification_outbox"

    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("notification_channel.id", ondelete="SET NULL"))
    event_key: Mapped[str] = mapped_column(String(160))
    channel_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))
    target_key: Mapped[str] = mapped_column(String(64))  # sha256 of the target: the unique key stays short
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # each event is delivered once per channel target, whoever (and however many nodes) wrote it
        UniqueConstraint("event_key", "channel_kind", "target_key"),
        Index("ix_notification_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notification_outbox_notification_id", "notification_id"),
        Index("ix_notification_outbox_channel_id", "channel_id"),
    )
