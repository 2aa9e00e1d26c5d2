"""Indexes for run tables at a million runs, and params of any length on PostgreSQL.

- ``lh_latest_metrics``: the search index also holds ``is_nan`` and ``run_id``, so that a
  search driven by a metric reads the index alone.
- On SQLite, where reading a table row by its key is a second lookup, indexes that hold
  what the run table reads: ``lh_runs`` by id with the attributes a search filters, sorts
  and shows; ``lh_params`` and ``lh_latest_metrics`` by run with their values.
- ``lh_params`` on PostgreSQL: the ``(key, value)`` B-tree is replaced by a hash index of the
  value. A B-tree entry holds at most 2704 bytes, and params may be 6000 characters long:
  such a param could not be stored before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SEARCH = ("ix_lh_latest_metrics_search", "lh_latest_metrics", ["key", "value", "is_nan", "run_id"])
#: SQLite only: name, table, columns
_COVERING = [
    ("ix_lh_latest_metrics_run_values", "lh_latest_metrics", ["run_id", "key", "value", "is_nan"]),
    ("ix_lh_params_run_values", "lh_params", ["run_id", "key", "value"]),
    ("ix_lh_runs_search", "lh_runs", ["run_id", "project_id", "lifecycle_stage", "start_time",
                                      "name", "user_id", "status", "end_time"]),
]  # fmt: skip


def upgrade() -> None:
    """Create the new indexes; drop the ones they replace."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_index("ix_lh_latest_metrics_key_value", table_name="lh_latest_metrics")
    op.create_index(*_SEARCH)
    if sqlite:
        for name, table, columns in _COVERING:
            op.create_index(name, table, columns)
    else:
        op.drop_index("ix_lh_params_key_value", table_name="lh_params")
        op.create_index("ix_lh_params_value_hash", "lh_params", ["value"], postgresql_using="hash")


def downgrade() -> None:
    """Back to 0003's indexes (on PostgreSQL, only if no param is too long for them)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name, table, _ in _COVERING:
            op.drop_index(name, table_name=table)
    else:
        op.drop_index("ix_lh_params_value_hash", table_name="lh_params")
        op.create_index("ix_lh_params_key_value", "lh_params", ["key", "value"])
    op.drop_index(_SEARCH[0], table_name=_SEARCH[1])
    op.create_index("ix_lh_latest_metrics_key_value", "lh_latest_metrics", ["key", "value"])
