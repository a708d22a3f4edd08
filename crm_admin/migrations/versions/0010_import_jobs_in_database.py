"""import jobs in the database: their state, their upload and their error workbook

Revision ID: 0010
Revises: 0009

- ``import_job``: one row per import job (owner, importer, status, counts, message, heartbeat), so that
  every process on every node shows, serves and applies the same jobs; the apply is claimed by a
  conditional UPDATE of its status. Replaces the JSON files and file locks under the data directory
  (jobs in flight during the upgrade are lost: they were at most hours old and are uploaded again).
- ``import_chunk``: the uploaded file and the error workbook of a job, in numbered pieces of at most
  1 MB (LONGBLOB on MySQL/MariaDB).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import crm_admin.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "import_job",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("actor", sa.JSON(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("valid", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("upload_size", sa.Integer(), nullable=False),
        sa.Column("errors_size", sa.Integer(), nullable=True),
        sa.Column("runner", sa.String(length=128), nullable=False),
        sa.Column("started_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", crm_admin.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", crm_admin.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_job")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.create_index("ix_import_job_owner_id_started_at", ["owner_id", "started_at"], unique=False)
        batch_op.create_index("ix_import_job_heartbeat_at", ["heartbeat_at"], unique=False)
    op.create_table(
        "import_chunk",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["import_job.id"], name=op.f("fk_import_chunk_job_id"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "kind", "seq", name=op.f("pk_import_chunk")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("import_chunk")
    op.drop_table("import_job")
