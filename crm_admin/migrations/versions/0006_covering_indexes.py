"""performance: covering indexes for the scoped counts and sums of dashboards, workbench and pipeline

Revision ID: 0006
Revises: 0005

Measured on the standard data set (README 性能): a manager's or sales lead's page reads the rows hanging
off their customers through ``customer_id IN (SELECT id FROM customer WHERE manager_id …)``, so MariaDB
probes the child table once per customer. When the probed index also carries every column the page
filters, sums or sorts on, the rows themselves are never read:

- care workbench (counts per section, page ids, newest closed tasks, completion): customer_id, status,
  due_date, manager_id, updated_at — 5,000-customer manager 257 ms → 98 ms;
- follow-ups due (a team's, one manager's, everyone's), each checked against a later contact of the
  same customer: the index carries customer_id and contacted_at too — administrator's count 138 → 65 ms;
- pipeline and dashboard sums per stage: customer_id, status, stage, amount, probability;
- orders of the month on the administrator's dashboard: order_date, status, amount — 46 ms → 13 ms.

The indexes they replace are prefixes of the new ones (a foreign key still finds its leading column).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, new index, its columns, indexes it makes redundant with their columns)
CHANGES: tuple[tuple[str, str, list[str], list[tuple[str, list[str]]]], ...] = (
    ("customer_care", "ix_customer_care_customer_id_status_due_date_covering",
     ["customer_id", "status", "due_date", "manager_id", "updated_at"],
     [("ix_customer_care_customer_id", ["customer_id"]),
      ("ix_customer_care_customer_id_status_due_date", ["customer_id", "status", "due_date"])]),
    # due follow-ups: the count checks each candidate against a later contact of the same customer
    ("follow_up", "ix_follow_up_customer_id_next_follow_up_at_contacted_at",
     ["customer_id", "next_follow_up_at", "contacted_at"], []),
    ("follow_up", "ix_follow_up_next_follow_up_at_customer_id_contacted_at",
     ["next_follow_up_at", "customer_id", "contacted_at"],
     [("ix_follow_up_next_follow_up_at", ["next_follow_up_at"])]),
    ("follow_up", "ix_follow_up_manager_id_next_follow_up_at_covering",
     ["manager_id", "next_follow_up_at", "customer_id", "contacted_at"],
     [("ix_follow_up_manager_id_next_follow_up_at", ["manager_id", "next_follow_up_at"])]),
    ("sales_opportunity", "ix_sales_opportunity_customer_id_status_stage_covering",
     ["customer_id", "status", "stage", "amount", "probability"],
     [("ix_sales_opportunity_customer_id", ["customer_id"]),
      ("ix_sales_opportunity_customer_id_status_stage", ["customer_id", "status", "stage"])]),
    ("customer_order", "ix_customer_order_order_date_status_amount", ["order_date", "status", "amount"],
     [("ix_customer_order_order_date", ["order_date"])]),
)


def upgrade() -> None:
    for table, name, columns, replaced in CHANGES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)
        for old, _old_columns in replaced:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_index(old)


def downgrade() -> None:
    for table, name, _columns, replaced in reversed(CHANGES):
        for old, old_columns in replaced:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.create_index(old, old_columns, unique=False)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
