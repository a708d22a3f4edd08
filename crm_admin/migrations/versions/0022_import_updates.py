"""import jobs that update existing customers: counts and the dry run's plan

Revision ID: 0022
Revises: 0020

An import may match existing rows (a customer by its credit code or its code) and update the columns
the user picked. The job keeps, beside ``created``, how many rows it updates and how many match a row
that would not change (``updated``, ``unchanged``), and the size of its dry run's plan (``plan_size``:
the per-row outcome — create / update with before→after / unchanged / reject — and the version of
every matched row, kept as ``import_chunk`` rows of kind ``plan``; the apply refuses a row whose
match changed since).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("plan_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_column("plan_size")
        batch_op.drop_column("unchanged")
        batch_op.drop_column("updated")
