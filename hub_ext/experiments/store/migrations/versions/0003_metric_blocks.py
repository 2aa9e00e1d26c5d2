"""Metric points move from one row each (``lh_metrics``) to blocks (``lh_metric_blocks``).

Every history is read in key order and written as blocks of at most 100,000 points, sorted
and de-duplicated as :mod:`hub_ext.experiments.store.blocks` keeps them; ``downgrade``
writes the points back one row each. Both keep every point (NaN and infinities included).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterator

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: points per block written by the upgrade
BLOCK_POINTS = 100_000
_ROWS_PER_FETCH = 50_000


def _blocks_table() -> sa.TableClause:
    return sa.table(
        "lh_metric_blocks",
        sa.column("run_id", sa.String), sa.column("key", sa.String),
        sa.column("digest", sa.String), sa.column("count", sa.Integer),
        sa.column("first_step", sa.BigInteger), sa.column("last_step", sa.BigInteger),
        sa.column("step_data", sa.LargeBinary), sa.column("time_data", sa.LargeBinary),
        sa.column("value_data", sa.LargeBinary),
    )  # fmt: skip


def _points_table() -> sa.TableClause:
    return sa.table(
        "lh_metrics",
        sa.column("run_id", sa.String), sa.column("key", sa.String),
        sa.column("step", sa.BigInteger), sa.column("timestamp", sa.BigInteger),
        sa.column("value", sa.Float), sa.column("is_nan", sa.Boolean),
    )  # fmt: skip


def _block(run_id: str, key: str, points: list[tuple[int, int, float]]) -> dict:
    """The block row of one history's points (unique, in the order SQL gave them).

    Plain arrays, not NumPy, on the common path: a database holds far more short
    histories (one point per run and key) than long ones.
    """
    steps = array("q", [p[0] for p in points])
    stamps = array("q", [p[1] for p in points])
    values = array("d", [p[2] for p in points])
    if any(v != v for v in values):
        # NaN came back ordered as the 0 it was stored as; blocks put it after the numbers
        order = np.lexsort((np.array(values), np.array(stamps), np.array(steps))).tolist()
        steps = array("q", [steps[i] for i in order])
        stamps = array("q", [stamps[i] for i in order])
        values = array("d", [values[i] for i in order])
    first, last = steps[0], steps[-1]
    if sys.byteorder != "little":  # blocks are little-endian everywhere
        for column in (steps, stamps, values):
            column.byteswap()
    data = steps.tobytes(), stamps.tobytes(), values.tobytes()
    digest = hashlib.blake2b(b"".join(data), digest_size=16)
    digest.update(len(points).to_bytes(8, "little"))
    return {
        "run_id": run_id, "key": key, "digest": digest.hexdigest(), "count": len(points),
        "first_step": first, "last_step": last, "step_data": data[0], "time_data": data[1],
        "value_data": data[2],
    }  # fmt: skip


def _histories(conn: sa.Connection) -> Iterator[tuple[str, str, list[tuple[int, int, float]]]]:
    """``(run_id, key, points)`` pieces of at most BLOCK_POINTS, in key order."""
    m = _points_table()
    query = sa.select(m.c.run_id, m.c.key, m.c.step, m.c.timestamp, m.c.value, m.c.is_nan)
    query = query.order_by(m.c.run_id, m.c.key, m.c.step, m.c.timestamp, m.c.value)
    # options of this statement only (Connection.execution_options would change the connection)
    result = conn.execute(
        query, execution_options={"stream_results": True, "yield_per": _ROWS_PER_FETCH}
    )
    current: tuple[str, str] | None = None
    points: list[tuple[int, int, float]] = []
    for run_id, key, step, stamp, value, is_nan in result:
        if (run_id, key) != current or len(points) >= BLOCK_POINTS:
            if points and current is not None:
                yield current[0], current[1], points
            current, points = (run_id, key), []
        points.append((step, stamp, float("nan") if is_nan else value))
    if points and current is not None:
        yield current[0], current[1], points


def upgrade() -> None:
    """Create ``lh_metric_blocks``, move every history into it, drop ``lh_metrics``."""
    op.create_table(
        "lh_metric_blocks",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("lh_runs.run_id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("digest", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_step", sa.BigInteger, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("step_data", sa.LargeBinary, nullable=False),
        sa.Column("time_data", sa.LargeBinary, nullable=False),
        sa.Column("value_data", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_lh_metric_blocks_history", "lh_metric_blocks", ["run_id", "key", "first_step"]
    )
    conn = op.get_bind()
    blocks = _blocks_table()
    pending: list[dict] = []
    held = 0  # points in pending
    for run_id, key, points in _histories(conn):
        pending.append(_block(run_id, key, points))
        held += len(points)
        if held >= BLOCK_POINTS or len(pending) >= 5_000:
            conn.execute(blocks.insert(), pending)
            pending, held = [], 0
    if pending:
        conn.execute(blocks.insert(), pending)
    op.drop_table("lh_metrics")


def downgrade() -> None:
    """Write every point back as a row of ``lh_metrics``; drop ``lh_metric_blocks``."""
    op.create_table(
        "lh_metrics",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("lh_runs.run_id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("timestamp", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float(precision=53), primary_key=True),
        sa.Column("is_nan", sa.Boolean, primary_key=True, default=False),
    )
    conn = op.get_bind()
    b = _blocks_table()
    query = sa.select(b.c.run_id, b.c.key, b.c.step_data, b.c.time_data, b.c.value_data)
    rows: list[dict] = []
    blocks = conn.execute(query, execution_options={"stream_results": True, "yield_per": 64})
    for run_id, key, step_data, time_data, value_data in blocks:  # a few at a time in memory
        steps = np.frombuffer(step_data, "<i8").tolist()
        stamps = np.frombuffer(time_data, "<i8").tolist()
        for step, stamp, value in zip(
            steps, stamps, np.frombuffer(value_data, "<f8").tolist(), strict=True
        ):
            nan = value != value
            rows.append({"run_id": run_id, "key": key, "step": step, "timestamp": stamp,
                         "value": 0.0 if nan else value, "is_nan": nan})  # fmt: skip
        if len(rows) >= _ROWS_PER_FETCH:
            conn.execute(_points_table().insert(), rows)
            rows = []
    if rows:
        conn.execute(_points_table().insert(), rows)
    op.drop_index("ix_lh_metric_blocks_history", table_name="lh_metric_blocks")
    op.drop_table("lh_metric_blocks")
