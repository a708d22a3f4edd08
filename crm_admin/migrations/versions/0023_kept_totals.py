"""performance: totals kept beside the opportunities and the care tasks; a manager's newest closed care
tasks and contacts' birthdays by the manager each carries

Revision ID: 0023
Revises: 0025

The administrator's pipeline added up all 180,000 open opportunities on every visit (one pass of a
covering index, ~60 ms of SQL); the care workbench counted everyone's 60,000 pending tasks per day and
100,000 tasks of the last 30 days per manager (12 + 25 ms). ``opportunity_open_total`` (open
opportunities per customer manager and stage: count, amounts and amounts × probability in cents) and
``care_task_day_total`` (care tasks per status, due date and assigned manager) hold those counts; every
write keeps them in its own transaction (``crm_admin/core/totals.py``), so they always equal a direct
count (``crm-admin totals`` compares, ``--fix`` counts again). They are counted here from the tables.

A manager's care workbench read the newest closed tasks and the week's birthdays through the
manager's 5,000 customers (15 ms each); ``customer_care (customer_manager_id, updated_at)`` and
``linkman (customer_manager_id, birthday_md)`` give them as one index range.

Care plans now carry their customer's manager too (``customers.models.CarriesCustomerManager``, as
migrations 0014 and 0017 made the other records do): a sales lead's plan list counted its plans through
the department's 23,600 customers (42,000 index entries); by ``care_plan (customer_manager_id)`` it is
one range per manager. The existing plans take their customer's manager here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _cents(column: sa.ColumnElement[object]) -> sa.ColumnElement[int]:
    return sa.cast(sa.func.round(column * 100), sa.BigInteger)


def upgrade() -> None:
    op.create_table(
        "opportunity_open_total",
        sa.Column("customer_manager_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("open_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("weighted_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_manager_id", "stage", name="pk_opportunity_open_total"),
    )
    op.create_table(
        "care_task_day_total",
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("task_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "due_date", "manager_id", name="pk_care_task_day_total"),
    )
    op.create_index("ix_care_task_day_total_manager_id_status_due_date", "care_task_day_total",
                    ["manager_id", "status", "due_date"])
    op.create_index("ix_customer_care_customer_manager_id_updated_at", "customer_care",
                    ["customer_manager_id", "updated_at"])
    op.create_index("ix_linkman_customer_manager_id_birthday_md", "linkman", ["customer_manager_id", "birthday_md"])
    with op.batch_alter_table("care_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_manager_id", sa.Integer(), nullable=True))
    plans = sa.table("care_plan", sa.column("customer_id", sa.Integer), sa.column("customer_manager_id", sa.Integer))
    customer = sa.table("customer", sa.column("id", sa.Integer), sa.column("manager_id", sa.Integer))
    op.get_bind().execute(sa.update(plans).values(customer_manager_id=sa.select(customer.c.manager_id).where(
        customer.c.id == plans.c.customer_id).scalar_subquery()))
    with op.batch_alter_table("care_plan", schema=None) as batch_op:
        batch_op.create_index("ix_care_plan_customer_manager_id", ["customer_manager_id"], unique=False)

    meta = sa.MetaData()
    opp = sa.Table("sales_opportunity", meta, *(sa.Column(c) for c in (
        "customer_manager_id", "stage", "status", "amount", "probability")))
    care = sa.Table("customer_care", meta, *(sa.Column(c) for c in ("status", "due_date", "manager_id")))
    open_total = sa.Table("opportunity_open_total", meta, *(sa.Column(c) for c in (
        "customer_manager_id", "stage", "open_count", "amount_cents", "weighted_cents")))
    day_total = sa.Table("care_task_day_total", meta, *(sa.Column(c) for c in (
        "status", "due_date", "manager_id", "task_count")))
    bind = op.get_bind()
    manager = sa.func.coalesce(opp.c.customer_manager_id, 0)
    bind.execute(open_total.insert().from_select(
        ["customer_manager_id", "stage", "open_count", "amount_cents", "weighted_cents"],
        sa.select(manager, opp.c.stage, sa.func.count(), sa.func.sum(_cents(opp.c.amount)),
                  sa.func.sum(_cents(opp.c.amount) * opp.c.probability))
        .where(opp.c.status == "open").group_by(manager, opp.c.stage)))
    assignee = sa.func.coalesce(care.c.manager_id, 0)
    bind.execute(day_total.insert().from_select(
        ["status", "due_date", "manager_id", "task_count"],
        sa.select(care.c.status, care.c.due_date, assignee, sa.func.count())
        .where(care.c.due_date.is_not(None)).group_by(care.c.status, care.c.due_date, assignee)))


def downgrade() -> None:
    with op.batch_alter_table("care_plan", schema=None) as batch_op:
        batch_op.drop_index("ix_care_plan_customer_manager_id")
        batch_op.drop_column("customer_manager_id")
    op.drop_index("ix_linkman_customer_manager_id_birthday_md", table_name="linkman")
    op.drop_index("ix_customer_care_customer_manager_id_updated_at", table_name="customer_care")
    op.drop_table("care_task_day_total")
    op.drop_table("opportunity_open_total")
