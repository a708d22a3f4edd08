"""recycle bin (回收站): a deleted customer, contact, opportunity or order is kept for a number of days
with the rows that went with it, and can be put back exactly as it was

Revision ID: 0020
Revises: 0018

``recycle_bin``: one row per deleted record — what it was (resource, id, a label, its customer), whose
scope it is in (the customer's manager when it was deleted), who deleted it and when, when it expires,
and ``payload``: the rows of every table that went with it, parents first (JSON; LONGTEXT on MariaDB).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "recycle_bin",
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("customer_name", sa.String(length=128), nullable=True),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("deleted_by", sa.Integer(), nullable=True),
        sa.Column("deleted_by_name", sa.String(length=64), nullable=False),
        sa.Column("deleted_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recycle_bin")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("recycle_bin", schema=None) as batch_op:
        batch_op.create_index("ix_recycle_bin_manager_id_deleted_at", ["manager_id", "deleted_at"], unique=False)
        batch_op.create_index("ix_recycle_bin_resource_deleted_at", ["resource", "deleted_at"], unique=False)
        batch_op.create_index("ix_recycle_bin_deleted_at", ["deleted_at"], unique=False)
        batch_op.create_index("ix_recycle_bin_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_recycle_bin_resource_record_id", ["resource", "record_id"], unique=False)


def downgrade() -> None:
    op.drop_table("recycle_bin")
