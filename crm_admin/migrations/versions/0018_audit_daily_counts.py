"""performance: the audit analysis page counts from daily totals kept by the sealer; the churn
analysis page counts churn alerts in an index

Revision ID: 0018
Revises: 0017

The analysis page (日志分析) grouped a month of audit rows four times (two million rows at standard
scale: 565 ms). ``audit_daily`` (per company day, action, resource, outcome), ``audit_daily_user``
(the same per user) and ``audit_daily_user_total`` (per day and user) hold the counts of the sealed
rows; the sealer adds each row it seals in the same transaction (``core.audit.count_daily``), and the
page adds the unsealed tail counted from ``audit_log``, in one read transaction: the numbers equal a
direct count.

The existing sealed rows are counted here, while holding the ``audit_seal`` row (a sealer running
meanwhile waits, then goes on from the counted state).

The churn analysis page (流失分析) counts alerts by status, level, reason, manager and month of
handling: ``(customer_manager_id, status, risk_level, reason, handled_at)`` holds every column it
reads, and a team's alerts are one range of it per manager (``by_customer_manager``) instead of a probe
per customer of the team; ``(status, risk_level, reason, customer_manager_id, handled_at)`` gives
everyone's lost (or closed) alerts as one range.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_admin.core.formatting import local_date_sql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_churn_alert_customer_manager_id_status", "churn_alert",
                    ["customer_manager_id", "status", "risk_level", "reason", "handled_at"])
    op.create_index("ix_churn_alert_status_risk_level", "churn_alert",
                    ["status", "risk_level", "reason", "customer_manager_id", "handled_at"])
    op.create_table(
        "audit_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "action", "resource", "success", name="pk_audit_daily"),
    )
    op.create_table(
        "audit_daily_user",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "username", "user_id", "action", "resource", "success",
                                name="pk_audit_daily_user"),
    )
    op.create_index("ix_audit_daily_user_user_id_day", "audit_daily_user", ["user_id", "day"])
    op.create_table(
        "audit_daily_user_total",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "username", "user_id", name="pk_audit_daily_user_total"),
    )
    op.create_index("ix_audit_daily_user_username_day", "audit_daily_user", ["username", "day"])

    meta = sa.MetaData()
    log = sa.Table("audit_log", meta, sa.Column("occurred_at", sa.DateTime()), sa.Column("user_id", sa.Integer()),
                   sa.Column("username", sa.String(64)), sa.Column("action", sa.String(32)),
                   sa.Column("resource", sa.String(64)), sa.Column("success", sa.Boolean()),
                   sa.Column("seal_seq", sa.BigInteger()))
    sys_meta = sa.Table("sys_meta", meta, sa.Column("key", sa.String(64)), sa.Column("value", sa.BigInteger()))
    daily = sa.Table("audit_daily", meta, *(sa.Column(c) for c in ("day", "action", "resource", "success", "n")))
    daily_user = sa.Table("audit_daily_user", meta, *(sa.Column(c) for c in (
        "day", "username", "user_id", "action", "resource", "success", "n")))
    user_total = sa.Table("audit_daily_user_total", meta, *(sa.Column(c) for c in ("day", "username", "user_id", "n")))
    bind = op.get_bind()
    # sealers queue on this row: nothing is sealed between the count and the commit
    bind.execute(sa.update(sys_meta).where(sys_meta.c.key == "audit_seal").values(value=sys_meta.c.value))
    day = local_date_sql(log.c.occurred_at)
    user_id = sa.func.coalesce(log.c.user_id, 0)
    sealed = log.c.seal_seq.is_not(None)
    bind.execute(sa.delete(daily_user))
    bind.execute(sa.delete(daily))
    bind.execute(sa.delete(user_total))
    bind.execute(daily_user.insert().from_select(
        ["day", "username", "user_id", "action", "resource", "success", "n"],
        sa.select(day, log.c.username, user_id, log.c.action, log.c.resource, log.c.success, sa.func.count())
        .where(sealed).group_by(day, log.c.username, user_id, log.c.action, log.c.resource, log.c.success)))
    bind.execute(daily.insert().from_select(
        ["day", "action", "resource", "success", "n"],
        sa.select(daily_user.c.day, daily_user.c.action, daily_user.c.resource, daily_user.c.success,
                  sa.func.sum(daily_user.c.n))
        .group_by(daily_user.c.day, daily_user.c.action, daily_user.c.resource, daily_user.c.success)))
    bind.execute(user_total.insert().from_select(
        ["day", "username", "user_id", "n"],
        sa.select(daily_user.c.day, daily_user.c.username, daily_user.c.user_id, sa.func.sum(daily_user.c.n))
        .group_by(daily_user.c.day, daily_user.c.username, daily_user.c.user_id)))


def downgrade() -> None:
    op.drop_table("audit_daily_user_total")
    op.drop_index("ix_churn_alert_status_risk_level", table_name="churn_alert")
    op.drop_index("ix_churn_alert_customer_manager_id_status", table_name="churn_alert")
    op.drop_table("audit_daily_user")
    op.drop_table("audit_daily")
