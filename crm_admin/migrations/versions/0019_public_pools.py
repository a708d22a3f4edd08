"""public pools (公海): pools, who may use them, their limits, the log of moves; customers in a pool

Revision ID: 0019
Revises: 0018

``customer.pool_id`` / ``pool_entered_at``: a customer in a pool has no manager; the pool page lists a
pool's customers by ``(pool_id, pool_entered_at)``, and counts them by industry, level and region from
the same index (200,000 customers, 50,000 in one pool, MariaDB: a filtered count read the rows, 130–250 ms
on a loaded machine; from the index alone it reads no row). ``customer_transfer.new_manager_id`` becomes
nullable: a customer returned to a pool is recorded as a transfer to nobody.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_admin.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.Column("updated_at", crm_admin.db.UTCDateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "customer_pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("remark", sa.String(length=500), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("mask_contacts", sa.Boolean(), nullable=False),
        sa.Column("hold_limit", sa.Integer(), nullable=True),
        sa.Column("daily_claim_limit", sa.Integer(), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_pool")),
        sa.UniqueConstraint("name", name=op.f("uq_customer_pool_name")),
        **TABLE_KW,
    )
    op.create_table(
        "customer_pool_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("dept_id", sa.Integer(), nullable=True),
        sa.Column("role_id", sa.Integer(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["pool_id"], ["customer_pool.id"], name=op.f("fk_customer_pool_access_pool_id")),
        sa.ForeignKeyConstraint(["dept_id"], ["sys_dept.id"], name=op.f("fk_customer_pool_access_dept_id")),
        sa.ForeignKeyConstraint(["role_id"], ["sys_role.id"], name=op.f("fk_customer_pool_access_role_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_pool_access")),
        **TABLE_KW,
    )
    op.create_index("ix_customer_pool_access_pool_id", "customer_pool_access", ["pool_id"])
    op.create_table(
        "customer_pool_limit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("hold_limit", sa.Integer(), nullable=True),
        sa.Column("daily_claim_limit", sa.Integer(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["pool_id"], ["customer_pool.id"], name=op.f("fk_customer_pool_limit_pool_id")),
        sa.ForeignKeyConstraint(["role_id"], ["sys_role.id"], name=op.f("fk_customer_pool_limit_role_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_pool_limit")),
        sa.UniqueConstraint("pool_id", "role_id", name=op.f("uq_customer_pool_limit_pool_id_role_id")),
        **TABLE_KW,
    )
    op.create_table(
        "customer_pool_log",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("at", crm_admin.db.UTCDateTime(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_customer_pool_log_customer_id")),
        sa.ForeignKeyConstraint(["pool_id"], ["customer_pool.id"], name=op.f("fk_customer_pool_log_pool_id")),
        sa.ForeignKeyConstraint(["user_id"], ["sys_user.id"], name=op.f("fk_customer_pool_log_user_id")),
        sa.ForeignKeyConstraint(["operator_id"], ["sys_user.id"], name=op.f("fk_customer_pool_log_operator_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_pool_log")),
        **TABLE_KW,
    )
    op.create_index("ix_customer_pool_log_customer_id_at", "customer_pool_log", ["customer_id", "at"])
    op.create_index("ix_customer_pool_log_pool_id_at_kind", "customer_pool_log", ["pool_id", "at", "kind"])
    op.create_index("ix_customer_pool_log_user_id_kind_at", "customer_pool_log", ["user_id", "kind", "at", "pool_id"])

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pool_entered_at", crm_admin.db.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(op.f("fk_customer_pool_id"), "customer_pool", ["pool_id"], ["id"])
        batch_op.create_index("ix_customer_pool_id_pool_entered_at_covering",
                              ["pool_id", "pool_entered_at", "id", "industry", "level", "region"], unique=False)
    with op.batch_alter_table("customer_transfer", schema=None) as batch_op:
        batch_op.alter_column("new_manager_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("customer_transfer", schema=None) as batch_op:
        batch_op.alter_column("new_manager_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("customer", schema=None) as batch_op:
        # the foreign key first: MariaDB keeps the index it uses
        batch_op.drop_constraint(op.f("fk_customer_pool_id"), type_="foreignkey")
        batch_op.drop_index("ix_customer_pool_id_pool_entered_at_covering")
        batch_op.drop_column("pool_entered_at")
        batch_op.drop_column("pool_id")
    op.drop_table("customer_pool_log")
    op.drop_table("customer_pool_limit")
    op.drop_table("customer_pool_access")
    op.drop_table("customer_pool")
