"""audit rows are written unsealed and chained afterwards by one sealer, in seal order

Revision ID: 0016
Revises: 0015

Until now every audited write took the ``sys_meta`` row ``audit_chain`` and the newest audit row
``FOR UPDATE`` to chain its rows: every audited write of the whole system queued on one row until its
commit (on a Galera cluster, two nodes writing it at once conflict at commit). Now a business
transaction only inserts its audit rows, with no hash yet (``seal_seq``, ``prev_hash`` and ``hash``
NULL); the sealer (``core.audit.seal_pending``, a scheduler job every few seconds on one node at a
time) chains the committed rows: each gets the next ``seal_seq`` and its hash. The chain's order is
``seal_seq``.

The existing rows were chained in id order: they keep their hashes and take their ``seal_seq`` in
that order, so an existing database verifies after the upgrade. ``sys_meta`` ``audit_chain`` (the
writers' lock) goes; ``audit_seal`` holds the newest sealed number, written by the sealer only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 100_000  # rows by id per statement: bounded undo on MariaDB

audit = sa.table("audit_log", sa.column("id", sa.Integer), sa.column("seal_seq", sa.BigInteger),
                 sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
meta = sa.table("sys_meta", sa.column("key", sa.String), sa.column("value", sa.Integer))


def _number_existing_rows() -> int:
    """``seal_seq`` 1, 2, 3… in id order (the order they were chained in); returns how many.

    Rows without a hash (left by a downgrade while they were unsealed) stay unsealed: the sealer
    chains them after the others."""
    bind = op.get_bind()
    bind.execute(sa.update(audit).where(audit.c.hash == "").values(hash=None, prev_hash=None))
    chained = audit.c.hash.is_not(None)
    low, high, count = bind.execute(sa.select(sa.func.min(audit.c.id), sa.func.max(audit.c.id),
                                              sa.func.count()).where(chained)).one()
    if not count:
        return 0
    if bind.dialect.name in ("mysql", "mariadb"):
        # one counter across the chunks, each numbered in id order
        bind.exec_driver_sql("SET @crm_seal_seq := 0")
        for start in range(int(low), int(high) + 1, CHUNK):
            bind.exec_driver_sql(
                "UPDATE audit_log SET seal_seq = (@crm_seal_seq := @crm_seal_seq + 1) "
                "WHERE id >= %s AND id < %s AND hash IS NOT NULL ORDER BY id", (start, start + CHUNK))
    else:
        older = sa.table("audit_log", sa.column("id", sa.Integer), sa.column("hash", sa.String)).alias("older")
        bind.execute(sa.update(audit).where(chained).values(
            seal_seq=sa.select(sa.func.count()).select_from(older)
            .where(older.c.id <= audit.c.id, older.c.hash.is_not(None)).scalar_subquery()))
    return int(count)


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seal_seq", sa.BigInteger(), nullable=True))
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=True)
    sealed = _number_existing_rows()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ux_audit_log_seal_seq", ["seal_seq"], unique=True)
    op.execute(meta.delete().where(meta.c.key.in_(("audit_chain", "audit_seal"))))
    op.execute(meta.insert().values(key="audit_seal", value=sealed))


def downgrade() -> None:
    # The older code chains in id order under a lock: rows sealed out of id order (or not sealed)
    # will not verify there; their content is kept as it is.
    bind = op.get_bind()
    bind.execute(sa.update(audit).where(audit.c.hash.is_(None)).values(prev_hash="", hash=""))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ux_audit_log_seal_seq")
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("seal_seq")
    count = bind.execute(sa.select(sa.func.count()).select_from(sa.table("audit_log"))).scalar() or 0
    op.execute(meta.delete().where(meta.c.key.in_(("audit_chain", "audit_seal"))))
    op.execute(meta.insert().values(key="audit_chain", value=int(count)))
