"""notifications: the in-app notification centre, delivery channels per user and department, the outbox

Revision ID: 0027
Revises: 0026

- ``notification``: one row per recipient user (kind, title, body, link, read_at); ``dedupe_key`` unique
  per user, so an event raised twice (a job run again, two nodes) notifies once. The bell counts by
  ``(user_id, read_at)``.
- ``notification_channel``: e-mail addresses and group robots (WeCom, DingTalk, Feishu) of a user or a
  department, with an optional signing secret and the daily-digest switch.
- ``notification_outbox``: one delivery per event and channel target, written in the event's
  transaction, sent by the scheduler (claimed by a conditional UPDATE, retried with back-off);
  unique ``(event_key, channel_kind, target_key)`` so an event goes out once per channel.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("read_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_notification_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notification_user_id_dedupe_key")),
        **TABLE_KW,
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_user_id_read_at", ["user_id", "read_at"], unique=False)
        batch_op.create_index("ix_notification_created_at", ["created_at"], unique=False)
    op.create_table(
        "notification_channel",
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("dept_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=True),
        sa.Column("daily_digest", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_notification_channel_user_id")),
        sa.ForeignKeyConstraint(["dept_id"], ["sys_dept.id"], name=op.f("fk_notification_channel_dept_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channel")),
        **TABLE_KW,
    )
    with op.batch_alter_table("notification_channel", schema=None) as batch_op:
        batch_op.create_index("ix_notification_channel_user_id", ["user_id"], unique=False)
        batch_op.create_index("ix_notification_channel_dept_id", ["dept_id"], unique=False)
    op.create_table(
        "notification_outbox",
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("event_key", sa.String(length=160), nullable=False),
        sa.Column("channel_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("target_key", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("sent_at", crm_admin.db.UTCDateTime(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["notification_id"], ["notification.id"],
                                name=op.f("fk_notification_outbox_notification_id")),
        sa.ForeignKeyConstraint(["channel_id"], ["notification_channel.id"],
                                name=op.f("fk_notification_outbox_channel_id"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("event_key", "channel_kind", "target_key",
                            name=op.f("uq_notification_outbox_event_key_channel_kind_target_key")),
        **TABLE_KW,
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_notification_outbox_status_next_attempt_at", ["status", "next_attempt_at"],
                              unique=False)
        batch_op.create_index("ix_notification_outbox_notification_id", ["notification_id"], unique=False)
        batch_op.create_index("ix_notification_outbox_channel_id", ["channel_id"], unique=False)


def downgrade() -> None:
    op.drop_table("notification_outbox")
    op.drop_table("notification_channel")
    op.drop_table("notification")
