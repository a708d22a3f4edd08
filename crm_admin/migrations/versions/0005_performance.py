"""performance: indexes that match the data scope and the combined customer query

Revision ID: 0005
Revises: 0004

Measured on the standard data set (200,000 customers; see README 性能):
- records hanging off a customer are scoped with ``customer_id IN (SELECT id FROM customer WHERE
  manager_id …)``; MariaDB runs it from the manager's customers into the child table, so the child's
  index must carry the filtered columns after ``customer_id`` (care workbench 3.9 s → see README);
- the combined query on industry + level + status + creation date made MariaDB intersect two
  low-selectivity indexes (670 ms for the count);
- the dashboard's "customers at risk, longest without contact" per manager;
- administrators' dashboard and pipeline over all rows: newest care records sorted over 800,000 rows
  (30 s), care completion of the month, the pipeline's sums per stage (1.4 s), follow-ups due.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("customer", "ix_customer_industry_level_status_created_at", ["industry", "level", "status", "created_at"]),
    ("customer", "ix_customer_manager_id_status_last_contact_at", ["manager_id", "status", "last_contact_at"]),
    ("customer_care", "ix_customer_care_customer_id_status_due_date", ["customer_id", "status", "due_date"]),
    ("sales_opportunity", "ix_sales_opportunity_customer_id_status_stage", ["customer_id", "status", "stage"]),
    # administrators (no scope): newest care records, care completion by month, pipeline, follow-ups due
    ("customer_care", "ix_customer_care_updated_at", ["updated_at"]),
    ("customer_care", "ix_customer_care_due_date_manager_id_status", ["due_date", "manager_id", "status"]),
    ("sales_opportunity", "ix_sales_opportunity_status_stage_amount_probability",
     ["status", "stage", "amount", "probability"]),
    ("follow_up", "ix_follow_up_next_follow_up_at", ["next_follow_up_at"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, name, _columns in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
