"""care transfers churn scheduler

Backfills ``linkman.birthday_md`` (month * 100 + day), which the daily birthday scan reads through
its index: rows written before the column was maintained, or by bulk imports, get their value.
Adds ``ix_churn_alert_rule_id_open_key`` (the daily churn evaluation reads each rule's open alerts).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    backfill_birthday_md()
    with op.batch_alter_table("churn_alert", schema=None) as batch_op:
        batch_op.create_index("ix_churn_alert_rule_id_open_key", ["rule_id", "open_key"], unique=False)


def backfill_birthday_md() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        md = "CAST(strftime('%m', birthday) AS INTEGER) * 100 + CAST(strftime('%d', birthday) AS INTEGER)"
    else:
        md = "MONTH(birthday) * 100 + DAYOFMONTH(birthday)"
    op.execute(sa.text(f"UPDATE linkman SET birthday_md = {md} WHERE birthday IS NOT NULL"))
    op.execute(sa.text("UPDATE linkman SET birthday_md = NULL WHERE birthday IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("churn_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_churn_alert_rule_id_open_key")
