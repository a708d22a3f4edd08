"""performance: record lists read in the order of an index, for everyone and per manager of a team

Revision ID: 0017
Revises: 0016

The follow-up and opportunity lists open sorted by contact time / creation time, newest first. With no
index on that column alone, everyone's list (an administrator's) sorted the whole table for 20 rows
(one million follow-ups: 160 ms on MariaDB at standard scale). A team's list (a sales lead's 21
managers, 23,600 customers) went through the customers to 120,000 follow-ups and sorted them.

Contacts, care records and orders now also carry their customer's manager (``customer_manager_id``,
``customers.models.CarriesCustomerManager``, as migration 0014 made follow-ups, opportunities and churn
alerts do). With ``(customer_manager_id, <sort column>)`` each manager's first rows in the list's order
are the start of one index range: the list page reads them manager by manager, merges them, and reads
the rows shown through the customer scope (``core.listing``); its count reads the same ranges. The churn
handling page lists the open alerts, high risk first, newest first: ``(open_key, risk_level,
detected_at)`` for everyone, and the team index of migration 0014 extended by ``detected_at``, give
the first alerts of each level (of each manager) without sorting every open alert.

The existing contacts, care records and orders take their customer's manager here (standard data set,
MariaDB: 600,000 contacts, 800,000 care records, 400,000 orders), in chunks of ids.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# tables that start carrying their customer's manager
CARRIERS = ("linkman", "customer_care", "customer_order")
# (table, index, its columns)
INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("follow_up", "ix_follow_up_contacted_at", ["contacted_at"]),
    ("follow_up", "ix_follow_up_customer_manager_id_contacted_at", ["customer_manager_id", "contacted_at"]),
    ("sales_opportunity", "ix_sales_opportunity_created_at", ["created_at"]),
    ("sales_opportunity", "ix_sales_opportunity_customer_manager_id_created_at",
     ["customer_manager_id", "created_at"]),
    ("linkman", "ix_linkman_customer_manager_id", ["customer_manager_id"]),
    ("customer_care", "ix_customer_care_customer_manager_id", ["customer_manager_id"]),
    ("customer_order", "ix_customer_order_customer_manager_id_order_date", ["customer_manager_id", "order_date"]),
    ("churn_alert", "ix_churn_alert_open_key_risk_level_detected_at", ["open_key", "risk_level", "detected_at"]),
    ("churn_alert", "ix_churn_alert_customer_manager_id_open_key_risk_detected_at",
     ["customer_manager_id", "open_key", "risk_level", "detected_at"]),
)
# replaced by the one above, which serves its reads too
REPLACED = ("churn_alert", "ix_churn_alert_customer_manager_id_open_key_risk_level",
            ["customer_manager_id", "open_key", "risk_level"])
CHUNK = 100_000  # rows by id per statement: bounded undo on MariaDB


def _fill(table_name: str) -> None:
    bind = op.get_bind()
    customer = sa.table("customer", sa.column("id", sa.Integer), sa.column("manager_id", sa.Integer))
    rows = sa.table(table_name, sa.column("id", sa.Integer), sa.column("customer_id", sa.Integer),
                    sa.column("customer_manager_id", sa.Integer))
    low, high = bind.execute(sa.select(sa.func.min(rows.c.id), sa.func.max(rows.c.id))).one()
    if low is None:
        return
    for start in range(int(low), int(high) + 1, CHUNK):
        stmt = sa.update(rows).where(rows.c.id >= start, rows.c.id < start + CHUNK)
        if bind.dialect.name in ("mysql", "mariadb"):  # a join: much faster than a sub-select per row there
            stmt = stmt.where(customer.c.id == rows.c.customer_id).values(customer_manager_id=customer.c.manager_id)
        else:
            stmt = stmt.values(customer_manager_id=sa.select(customer.c.manager_id)
                               .where(customer.c.id == rows.c.customer_id).scalar_subquery())
        bind.execute(stmt)


def upgrade() -> None:
    for table in CARRIERS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("customer_manager_id", sa.Integer(), nullable=True))
        _fill(table)
    for table, index, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(index, columns, unique=False)
    with op.batch_alter_table(REPLACED[0], schema=None) as batch_op:
        batch_op.drop_index(REPLACED[1])


def downgrade() -> None:
    with op.batch_alter_table(REPLACED[0], schema=None) as batch_op:
        batch_op.create_index(REPLACED[1], REPLACED[2], unique=False)
    for table, index, _columns in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
    for table in reversed(CARRIERS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("customer_manager_id")
