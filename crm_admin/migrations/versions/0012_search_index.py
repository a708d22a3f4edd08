"""search by any part of a name, its pinyin and any digits: the n-gram index

Revision ID: 0012
Revises: 0011

- ``search_doc``: per searchable record (customer, contact, product) its normalised searchable values
  and their pinyin, which candidate hits are checked against.
- ``search_gram``: the record's grams (two characters, two syllables, two initials, four digits), the
  primary key (kind, gram, row_id) being the index; a table without rowid on SQLite.
The index of the existing rows is built here (``crm-admin search-index`` rebuilds it at any time).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "search_doc",
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("row_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("body", sa.String(length=1024).with_variant(
            mysql.VARCHAR(length=1024, collation="utf8mb4_bin"), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "row_id", name=op.f("pk_search_doc")),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "search_gram",
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("gram", sa.String(length=40).with_variant(
            mysql.VARCHAR(length=40, collation="utf8mb4_bin"), "mysql", "mariadb"), nullable=False),
        sa.Column("row_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("kind", "gram", "row_id", name=op.f("pk_search_gram")),
        sqlite_with_rowid=False,
        **TABLE_OPTIONS,
    )
    # the rows already there: the searchable models register themselves when imported
    import crm_admin.models  # noqa: F401
    from crm_admin.core import search

    search.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("search_gram")
    op.drop_table("search_doc")
