"""Baseline: the usage schema of latticehub 0.1; adopts a database that release wrote.

That release created the tables on open and kept no version: a table already there is kept
with its rows, one missing is created. The tables below are frozen; a schema change is a
new revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = sa.MetaData()

sa.Table(
    "usage_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object_id", sa.String(128), nullable=False),
    sa.Column("group_name", sa.String(255), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("server_name", sa.String(255), nullable=False, default=""),
    sa.Column("node", sa.String(255), nullable=False, default=""),
    sa.Column("image", sa.String(512), nullable=False, default=""),
    sa.Column("gpus", sa.Integer, nullable=False, default=0),
    sa.Column("cpus", sa.Float, nullable=True),
    sa.Column("mem_bytes", sa.BigInteger, nullable=True),
    sa.Column("start_time", sa.Float, nullable=False),
    sa.Column("start_source", sa.String(16), nullable=False),
    sa.Column("end_time", sa.Float, nullable=True),
    sa.Column("end_source", sa.String(16), nullable=False, default=""),
    sa.Index("ix_usage_sessions_object", "object_id", "end_time"),
    sa.Index("ix_usage_sessions_window", "start_time", "end_time"),
)

sa.Table(
    "usage_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)


def upgrade() -> None:
    """Create what is missing of the 0.1 tables and indexes; keep what is there."""
    bind = op.get_bind()
    metadata.create_all(bind, checkfirst=True)
    for table in metadata.sorted_tables:
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            index.create(bind, checkfirst=True)


def downgrade() -> None:
    """Drop both tables (the database is empty afterwards)."""
    metadata.drop_all(op.get_bind())
