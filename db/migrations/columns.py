"""Column changes that migrations share: plain ADD and DROP COLUMN on SQLite, never a rebuild.

Alembic's batch mode rebuilds a SQLite table (create, copy, drop, rename), and dropping a table
that other rows reference fails with foreign keys on; so SQLite keeps a new reference column
without its constraint, and drops a column in place (SQLite 3.35+)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def add_reference(table: str, column: str, target: str, constraint: str) -> None:
    """A nullable integer column `column` of `table` referencing `target`.id (the constraint,
    named `constraint`, on every database but SQLite)."""
    op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
    if not _sqlite():
        op.create_foreign_key(constraint, table, target, [column], ["id"])


def drop_column(table: str, column: str, constraint: str | None = None) -> None:
    """Drop `column` of `table`, with its foreign key `constraint` where one was made."""
    if _sqlite():
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    if constraint:
        op.drop_constraint(constraint, table, type_="foreignkey")
    op.drop_column(table, column)
