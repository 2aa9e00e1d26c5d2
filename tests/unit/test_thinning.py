"""Thinning keeps every bucket's extremes: a spike between strided points is never lost."""

from __future__ import annotations

import math

import pytest

from latticehub.thinning import MIN_LIMIT, thin_indices


def spiky(n: int, at: int, height: float = 100.0) -> list[float]:
    values = [math.sin(i / 50) for i in range(n)]
    values[at] = height
    return values


@pytest.mark.parametrize(
    ("n", "limit", "spike"),
    [(10_000, 400, 5_003), (10_000, 400, 1), (10_000, 400, 9_998), (1_001, 4, 500),
     (100_000, 4_000, 77_777), (5_000, 1_000, 4_321)],
)  # fmt: skip
def test_spikes_survive_and_the_count_is_bounded(n, limit, spike):
    for height in (100.0, -100.0, math.inf, -math.inf):
        values = spiky(n, spike, height)
        kept = thin_indices(values, limit)
        assert spike in kept
        assert len(kept) <= limit
        assert kept == sorted(set(kept))
        assert kept[0] == 0 and kept[-1] == n - 1
        assert max(values[i] for i in kept) == max(values)
        assert min(values[i] for i in kept) == min(values)


def test_strided_points_would_have_lost_the_spike():
    """What the rule is for: every 25th point of this curve misses its spike."""
    values = spiky(10_000, 5_003)
    assert 100.0 not in values[::25]
    assert 100.0 in [values[i] for i in thin_indices(values, 400)]


@pytest.mark.parametrize("n", [0, 1, 3, 400])
def test_short_curves_are_kept_whole(n):
    assert thin_indices([0.5] * n, 400) == list(range(n))


def test_nan_is_never_an_extreme_and_a_nan_bucket_keeps_one_point():
    values = [math.nan] * 50 + [float(i % 7) for i in range(950)]
    kept = thin_indices(values, 20)
    assert kept[0] == 0  # the first point, and the NaN bucket's one point
    assert sum(1 for i in kept if math.isnan(values[i])) <= 2
    assert {values[i] for i in kept if not math.isnan(values[i])} >= {0.0, 6.0}


def test_a_limit_too_small_says_what_to_pass():
    with pytest.raises(ValueError, match=f"at least {MIN_LIMIT}"):
        thin_indices([1.0] * 10, 3)
