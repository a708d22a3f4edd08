"""sign-in attempts per address counted in the database, for every node

Revision ID: 0015
Revises: 0014

The per-address limit of sign-in attempts (``CRM_LOGIN_IP_MAX_PER_MINUTE``) was counted in each
process, so behind a load balancer every node allowed the limit on its own. ``login_throttle`` holds
the attempts of each (address, minute) for every process and node (unless Redis is configured, see
``accounts/throttle.py``). Its primary key is the pair itself, so the count is one row read or
written by key; rows are removed a minute after they stop being read (``minute`` index).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ip", "minute", name=op.f("pk_login_throttle")),
        mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci", mysql_engine="InnoDB",
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_throttle_minute"), ["minute"], unique=False)


def downgrade() -> None:
    op.drop_table("login_throttle")
