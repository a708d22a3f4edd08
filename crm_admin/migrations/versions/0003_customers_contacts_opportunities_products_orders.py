"""customers contacts opportunities products orders: saved queries, opportunity stage history

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "saved_query",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("query_string", sa.Text(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_saved_query_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_query")),
        sa.UniqueConstraint("user_id", "resource", "name", name=op.f("uq_saved_query_user_id_resource_name")),
        **_MYSQL,
    )
    op.create_table(
        "opportunity_stage_history",
        sa.Column("opportunity_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=64), nullable=True),
        sa.Column("to_stage", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.Integer(), nullable=True),
        sa.Column("changed_at", crm_admin.db.UTCDateTime(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(["opportunity_id"], ["sales_opportunity.id"], ondelete="CASCADE",
                                name=op.f("fk_opportunity_stage_history_opportunity_id")),
        sa.ForeignKeyConstraint(["changed_by"], ["sys_user.id"],
                                name=op.f("fk_opportunity_stage_history_changed_by")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opportunity_stage_history")),
        **_MYSQL,
    )
    with op.batch_alter_table("opportunity_stage_history", schema=None) as batch_op:
        batch_op.create_index("ix_opportunity_stage_history_opportunity_id", ["opportunity_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("opportunity_stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunity_stage_history_opportunity_id")
    op.drop_table("opportunity_stage_history")
    op.drop_table("saved_query")
