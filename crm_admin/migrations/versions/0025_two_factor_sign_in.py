"""two-factor sign-in: TOTP per user, one-time recovery codes, roles that require it

Revision ID: 0025
Revises: 0020

- ``sys_user.totp_secret``: the user's TOTP secret (RFC 6238), encrypted (AES-GCM, key derived from
  the signing key; ``accounts/second_factor.py``); set while enrolling, in force once
  ``totp_enabled_at`` is set. ``totp_last_step``: the 30-second step of the last accepted code, so that
  a code is never accepted twice.
- ``user_recovery_code``: ten one-time codes per enrolled user, argon2-hashed, ``used_at`` once used.
- ``sys_role.require_totp``: users of such a role must enrol before they can do anything else.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0025"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sys_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("totp_enabled_at", crm_admin.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("sys_role", schema=None) as batch_op:
        batch_op.add_column(sa.Column("require_totp", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "user_recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("used_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_user_recovery_code_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_recovery_code")),
        mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci", mysql_engine="InnoDB",
    )
    with op.batch_alter_table("user_recovery_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_recovery_code_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("user_recovery_code")
    with op.batch_alter_table("sys_role", schema=None) as batch_op:
        batch_op.drop_column("require_totp")
    with op.batch_alter_table("sys_user", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_enabled_at")
        batch_op.drop_column("totp_secret")
