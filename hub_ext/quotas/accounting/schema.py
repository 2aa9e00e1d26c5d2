"""Tables of the usage database (SQLAlchemy Core): the models its migrations produce.

A change here needs a revision in :mod:`.migrations` (``tests/store/test_migrations.py``
fails until the two agree).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions_table = sa.Table(
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

cursors_table = sa.Table(
    "usage_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)
