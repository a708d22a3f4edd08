"""reclaim rules (回收规则): customers nobody works go back to a public pool by a daily job

Revision ID: 0024
Revises: 0022

- ``reclaim_rule``: per pool and customer level, N days without a follow-up and/or M days without an
  order, what protects a customer (an open opportunity from a stage on, a pending care task), the
  warning K days ahead, the order rules are applied in, enabled or not.
- ``reclaim_day``: one row per company day the daily job covered (unique): one run per day whatever
  the number of processes, a missed day recorded as covered by the next run.
- ``ix_customer_last_order_at``: the "days without an order" condition reads a range of it (the
  follow-up condition reads ``ix_customer_last_contact_at``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0024"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "reclaim_rule",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=64), nullable=True),
        sa.Column("days_without_follow_up", sa.Integer(), nullable=True),
        sa.Column("days_without_order", sa.Integer(), nullable=True),
        sa.Column("warn_days", sa.Integer(), nullable=False),
        sa.Column("protect_from_stage", sa.String(length=64), nullable=True),
        sa.Column("protect_pending_care", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("remark", sa.String(length=500), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["pool_id"], ["customer_pool.id"], name=op.f("fk_reclaim_rule_pool_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reclaim_rule")),
        sa.UniqueConstraint("name", name=op.f("uq_reclaim_rule_name")),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "reclaim_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("moved", sa.Integer(), nullable=False),
        sa.Column("covered_by", sa.Date(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reclaim_day")),
        sa.UniqueConstraint("day", name=op.f("uq_reclaim_day_day")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.create_index("ix_customer_last_order_at", ["last_order_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_last_order_at")
    op.drop_table("reclaim_day")
    op.drop_table("reclaim_rule")
