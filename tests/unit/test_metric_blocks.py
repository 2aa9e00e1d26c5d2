"""Metric blocks: packing sorts and de-duplicates, joining gives the history MLflow would.

The reference is the old one-row-per-point table: the set of distinct (step, timestamp,
value) points ordered by step, then timestamp, then value. NaN equals NaN here (one point).
"""

from __future__ import annotations

import math
import random
from array import array

import pytest

from hub_ext.experiments.store import blocks
from latticehub.columnar import MetricColumns

NAN = math.nan


def columns(points: list[tuple[int, int, float]]) -> MetricColumns:
    return MetricColumns(
        "k", array("q", [p[0] for p in points]), array("q", [p[1] for p in points]),
        array("d", [p[2] for p in points]),
    )  # fmt: skip


def reference(writes: list[list[tuple[int, int, float]]]) -> list[tuple]:
    """What one row per point (primary key step, timestamp, value) held, in order."""
    key = lambda p: (p[0], p[1], math.inf if p[2] != p[2] else p[2], p[2] != p[2])  # noqa: E731
    distinct = {key(p): p for w in writes for p in w}
    return [_comparable(distinct[k]) for k in sorted(distinct)]


def _comparable(p: tuple) -> tuple:
    return (p[0], p[1], "nan" if p[2] != p[2] else p[2])


def history(writes: list[list[tuple[int, int, float]]], total: int | None = None) -> list:
    packed = [blocks.pack(columns(w)) for w in writes]
    packed.sort(key=lambda b: (b.first_step, b.last_step, b.digest))
    rows = [(b.first_step, b.last_step, b.steps, b.timestamps, b.values) for b in packed]
    count = sum(b.count for b in packed) if total is None else total
    got = blocks.join("k", count, iter(rows))
    return [
        _comparable(p)
        for p in zip(got.steps.tolist(), got.timestamps.tolist(), got.values.tolist(), strict=True)
    ]


@pytest.mark.parametrize(
    "writes",
    [
        [[(0, 1, 0.5), (1, 1, 0.4), (2, 1, 0.3)]],  # one write in order
        [[(0, 1, 0.5), (1, 1, 0.4)], [(2, 1, 0.3), (3, 2, 0.2)]],  # a training loop: disjoint
        [[(2, 1, 0.3), (0, 1, 0.5)], [(1, 1, 0.4)]],  # out of order, interleaved
        [[(0, 5, 1.0), (0, 4, 1.0), (0, 4, 2.0)]],  # no steps (MLflow's default step 0)
        [[(1, 1, 0.5), (1, 1, 0.5)], [(1, 1, 0.5)]],  # the same point again and again
        [[(1, 1, NAN), (1, 1, NAN), (1, 1, math.inf), (1, 1, -math.inf)]],  # NaN is one point
        [[(0, 1, 1.0), (5, 1, 1.0)], [(3, 1, 2.0)]],  # a late point inside another block
        [[(-(2**63), 0, 0.0), (2**63 - 1, 2**63 - 1, 1e308)]],  # the 64-bit edges
    ],
)
def test_joined_blocks_are_the_distinct_points_in_order(writes):
    assert history(writes) == reference(writes)


def test_a_retried_write_is_the_same_block():
    a = blocks.pack(columns([(2, 1, 0.3), (0, 1, 0.5)]))
    b = blocks.pack(columns([(0, 1, 0.5), (2, 1, 0.3), (0, 1, 0.5)]))  # same points
    c = blocks.pack(columns([(0, 1, 0.5), (2, 1, 0.31)]))
    assert a.digest == b.digest != c.digest
    assert (a.count, a.first_step, a.last_step) == (2, 0, 2)
    assert blocks.newest(a) == (2, 1, 0.3)


@pytest.mark.parametrize("total", [0, 2, 7, 100])
def test_a_count_that_differs_from_the_blocks_read_still_gives_every_point(total):
    writes = [[(0, 1, 0.5), (1, 1, 0.4)], [(2, 1, 0.3), (3, 1, 0.2), (4, 1, 0.1)]]
    assert history(writes, total) == reference(writes)


def test_random_writes_match_the_reference():
    rng = random.Random(7)
    for _ in range(50):
        writes = [
            [(rng.randrange(20), rng.randrange(3), rng.choice([0.5, 1.0, NAN, -math.inf]))
             for _ in range(rng.randrange(1, 30))]
            for _ in range(rng.randrange(1, 6))
        ]  # fmt: skip
        assert history(writes) == reference(writes)
