"""order lines carry a discount, orders a version

Revision ID: 0011
Revises: 0010

- ``order_item.discount``: the line's 折扣 as the percentage of the unit price the customer pays
  (95 = 95折, 100 = no discount); existing lines had none, hence 100.
- ``customer_order.version``: an order and its lines are edited in one form; a save made from an
  older copy of the form is refused instead of overwriting someone else's lines (optimistic locking).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discount", sa.Numeric(precision=5, scale=2), server_default=sa.text("100"),
                                      nullable=False))
    with op.batch_alter_table("customer_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("customer_order", schema=None) as batch_op:
        batch_op.drop_column("version")
    with op.batch_alter_table("order_item", schema=None) as batch_op:
        batch_op.drop_column("discount")
