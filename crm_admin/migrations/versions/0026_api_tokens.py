"""REST API: personal API tokens and the replay store of idempotent creates

Revision ID: 0026
Revises: 0023

- ``api_token``: a user's personal tokens for ``/api/v1`` (name, SHA-256 of the secret, its first
  characters, expiry, last use, revocation). The secret itself is shown once and never stored.
- ``api_idempotency``: the answer to a create sent with an ``Idempotency-Key`` (per user and key), so
  that a repeated request gets the same answer instead of a second row; kept for a day.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0026"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("expires_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_api_token_user_id")),
        sa.ForeignKeyConstraint(["revoked_by"], ["sys_user.id"], name=op.f("fk_api_token_revoked_by")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
        **_TABLE,
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_user_id"), ["user_id"], unique=False)
    op.create_table(
        "api_idempotency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("idem_key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("location", sa.String(length=255), nullable=True),
        sa.Column("etag", sa.String(length=64), nullable=True),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_api_idempotency_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency")),
        sa.UniqueConstraint("user_id", "idem_key", name=op.f("uq_api_idempotency_user_id_idem_key")),
        **_TABLE,
    )
    with op.batch_alter_table("api_idempotency", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_idempotency_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("api_idempotency")
    op.drop_table("api_token")
