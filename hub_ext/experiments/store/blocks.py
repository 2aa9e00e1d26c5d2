"""Metric points stored in blocks: one row per key and write, its columns as packed bytes.

A write of n points of one key is one row of ``lh_metric_blocks`` instead of n rows: the
steps (int64), timestamps (int64) and values (float64, NaN and infinities as they are),
little-endian, sorted by (step, timestamp, value) with exact duplicates dropped, and named
by a digest of that content, so that a retried write adds nothing. Reading a history joins
the blocks of the key: when their step ranges follow one another (a training loop's order)
they are concatenated, else merged, sorted and de-duplicated the same way. Either way the
work is array work (NumPy), not a Python object per point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from latticehub.columnar import MetricColumns

_INT = np.dtype("<i8")
_FLOAT = np.dtype("<f8")


@dataclass(frozen=True)
class Block:
    """One stored block: its columns as bytes, their step range and count, and its digest."""

    digest: str
    count: int
    first_step: int
    last_step: int
    steps: bytes
    timestamps: bytes
    values: bytes


def _canonical(steps: Any, stamps: Any, values: Any) -> tuple[Any, Any, Any]:
    """Sorted by (step, timestamp, value) with exact duplicates dropped (NaN equals NaN)."""
    bits = values.view(_INT)  # equal bits: equal points, NaN included
    if len(steps) > 1 and not bool(np.all(np.diff(steps) > 0)):
        order = np.lexsort((values, stamps, steps))
        steps, stamps, values, bits = steps[order], stamps[order], values[order], bits[order]
        same = (steps[1:] == steps[:-1]) & (stamps[1:] == stamps[:-1]) & (bits[1:] == bits[:-1])
        if same.any():
            keep = np.concatenate(([True], ~same))
            steps, stamps, values = steps[keep], stamps[keep], values[keep]
    return steps, stamps, values


def pack(column: MetricColumns) -> Block:
    """The block of one key's points (any order; duplicates allowed)."""
    steps = np.asarray(np.frombuffer(column.steps, dtype=np.int64), dtype=_INT)
    stamps = np.asarray(np.frombuffer(column.timestamps, dtype=np.int64), dtype=_INT)
    values = np.asarray(np.frombuffer(column.values, dtype=np.float64), dtype=_FLOAT)
    steps, stamps, values = _canonical(steps, stamps, values)
    data = (steps.tobytes(), stamps.tobytes(), values.tobytes())
    digest = hashlib.blake2b(b"".join(data), digest_size=16)
    digest.update(len(steps).to_bytes(8, "little"))
    return Block(digest.hexdigest(), len(steps), int(steps[0]), int(steps[-1]), *data)


def newest(block: Block) -> tuple[int, int, float]:
    """The block's greatest (step, timestamp, value): its last point (MLflow's "latest")."""
    i = block.count - 1
    return (
        int(np.frombuffer(block.steps, _INT)[i]),
        int(np.frombuffer(block.timestamps, _INT)[i]),
        float(np.frombuffer(block.values, _FLOAT)[i]),
    )


def join(
    key: str, total: int, rows: Iterable[tuple[int, int, bytes, bytes, bytes]]
) -> MetricColumns:
    """A key's history from its blocks ``(first_step, last_step, steps, stamps, values)``.

    ``rows`` come in block order (by ``first_step``) and hold about ``total`` points (counted
    just before; a block written in between is taken too). Each
    block is copied into columns made once at their final size and dropped at once, so the
    service holds the history and one block, not the stored bytes beside the columns (the
    memory freed block by block is reused, not returned and taken again). Blocks whose step
    ranges follow one another strictly are the history as they are; any overlap (two
    writers, points without steps) merges all, sorted and de-duplicated. The columns of the
    answer are NumPy arrays (no Python object per point).
    """
    steps, stamps = np.empty(total, np.int64), np.empty(total, np.int64)
    values = np.empty(total, np.float64)
    at, last, disjoint = 0, None, True
    for first_step, last_step, step_data, time_data, value_data in rows:
        n = len(step_data) // 8
        if at + n > len(steps):  # a block written since the count: make room (rare)
            grown = max(2 * len(steps), at + n)
            steps, stamps, values = (
                np.concatenate([c[:at], np.empty(grown - at, c.dtype)])
                for c in (steps, stamps, values)
            )
        steps[at : at + n] = np.frombuffer(step_data, _INT)
        stamps[at : at + n] = np.frombuffer(time_data, _INT)
        values[at : at + n] = np.frombuffer(value_data, _FLOAT)
        if last is not None and not last < first_step:
            disjoint = False
        at, last = at + n, last_step
    if at != len(steps):  # the count and the blocks read differ (a write in between)
        steps, stamps, values = steps[:at], stamps[:at], values[:at]
    if not disjoint:
        steps, stamps, values = _canonical(steps, stamps, values)
    return MetricColumns(key, steps, stamps, values)  # type: ignore[arg-type]


def row(run_id: str, column: MetricColumns) -> dict[str, Any]:
    """The ``lh_metric_blocks`` row of ``column``'s points (for bulk inserts, e.g. seeding)."""
    block = pack(column)
    return {
        "run_id": run_id, "key": column.key, "digest": block.digest, "count": block.count,
        "first_step": block.first_step, "last_step": block.last_step,
        "step_data": block.steps, "time_data": block.timestamps, "value_data": block.values,
    }  # fmt: skip


def point(key: str, step: int, timestamp: int, value: float) -> MetricColumns:
    """One point as columns."""
    from array import array

    return MetricColumns(key, array("q", [step]), array("q", [timestamp]), array("d", [value]))
