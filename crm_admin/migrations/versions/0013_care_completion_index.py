"""performance: the care completion of some managers read in the order of an index

Revision ID: 0013
Revises: 0012

The care workbench's 30-day completion rate per manager counts the tasks due in the period of the
managers in scope. Through ``(manager_id, status, due_date)`` the period cannot narrow the read (status
comes first and is not asked for): every task a sales lead's 21 managers ever had was read, 94,000 rows
for 12,000 in the period (17 ms on MariaDB at standard scale). ``(manager_id, due_date, status)`` reads
just the period of each manager, already in manager order, and carries the status counted: 5 ms.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_care", schema=None) as batch_op:
        batch_op.create_index("ix_customer_care_manager_id_due_date_status", ["manager_id", "due_date", "status"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customer_care", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_care_manager_id_due_date_status")
