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
from collections.abc import Sequence
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
    key: str, ranges: Sequence[tuple[int, int]], data: tuple[list[bytes], list[bytes], list[bytes]]
) -> MetricColumns:
    """A key's history from its blocks: their ``(first_step, last_step)`` and column bytes.

    ``ranges`` and the three lists of ``data`` (steps, timestamps, values) are in block order
    (by ``first_step``). Blocks whose step ranges follow one another strictly are
    concatenated; any overlap (two writers, points without steps) merges all. Each list of
    ``data`` is emptied once its column is built, so the stored bytes and the columns are
    not all held at once (about 1.3 times the history at the peak). The columns of the
    answer are NumPy arrays (no Python object per point).
    """
    if not ranges:
        return MetricColumns(key)
    columns = []
    for pieces, dtype in zip(data, (_INT, _INT, _FLOAT), strict=True):
        columns.append(np.concatenate([np.frombuffer(p, dtype) for p in pieces]))
        pieces.clear()  # the caller keeps no other reference: the bytes are freed now
    steps, stamps, values = columns
    disjoint = all(ranges[i][1] < ranges[i + 1][0] for i in range(len(ranges) - 1))
    if not disjoint:
        steps, stamps, values = _canonical(steps, stamps, values)
    native = np.dtype(np.int64), np.dtype(np.float64)  # what array("q")/("d") hold
    return MetricColumns(
        key,
        steps.astype(native[0], copy=False),  # type: ignore[arg-type]
        stamps.astype(native[0], copy=False),  # type: ignore[arg-type]
        values.astype(native[1], copy=False),  # type: ignore[arg-type]
    )


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
