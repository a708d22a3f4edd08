"""server-side sessions and lock-out of unknown user names

Revision ID: 0008
Revises: 0007

- ``sys_session``: a row per signed-in browser session (only the SHA-256 of the cookie's token). Signing
  out revokes the row, so a copied cookie stops working at once on every process and node, while the
  user's other sessions stay valid. Sessions signed in before this version have no row and must sign in
  again once.
- ``login_guard``: failed sign-ins of names that have no account, counted and locked exactly like real
  accounts, so the lock-out message cannot reveal which names exist; ``sys_user.last_failed_login_at``
  lets failures a day apart be forgotten the same way for both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sys_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_failed_login_at", crm_admin.db.UTCDateTime(), nullable=True))
    op.create_table(
        "sys_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_sys_session_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sys_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sys_session_token_hash")),
        mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci", mysql_engine="InnoDB",
    )
    with op.batch_alter_table("sys_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sys_session_user_id"), ["user_id"], unique=False)
    op.create_table(
        "login_guard",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("last_failed_login_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_login_guard")),
        mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci", mysql_engine="InnoDB",
    )
    with op.batch_alter_table("login_guard", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_guard_last_failed_login_at"), ["last_failed_login_at"], unique=False)


def downgrade() -> None:
    op.drop_table("login_guard")
    op.drop_table("sys_session")
    with op.batch_alter_table("sys_user", schema=None) as batch_op:
        batch_op.drop_column("last_failed_login_at")
