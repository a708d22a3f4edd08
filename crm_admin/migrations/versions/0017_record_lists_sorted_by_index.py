"""performance: record lists read in the order of an index, for everyone and per manager of a team

Revision ID: 0017
Revises: 0016

The follow-up and opportunity lists open sorted by contact time / creation time, newest first. With no
index on that column alone, everyone's list (an administrator's) sorted the whole table for 20 rows
(one million follow-ups: 160 ms on MariaDB at standard scale). A team's list (a sales lead's 21
managers, 23,600 customers) went through the customers to 120,000 follow-ups and sorted them. With
``(customer_manager_id, <sort column>)`` each manager's newest rows are the start of one index range: the
list page reads the first rows of each manager and merges them (``core.listing``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, its columns)
INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("follow_up", "ix_follow_up_contacted_at", ["contacted_at"]),
    ("follow_up", "ix_follow_up_customer_manager_id_contacted_at", ["customer_manager_id", "contacted_at"]),
    ("sales_opportunity", "ix_sales_opportunity_created_at", ["created_at"]),
    ("sales_opportunity", "ix_sales_opportunity_customer_manager_id_created_at",
     ["customer_manager_id", "created_at"]),
)


def upgrade() -> None:
    for table, index, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(index, columns, unique=False)


def downgrade() -> None:
    for table, index, _columns in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
