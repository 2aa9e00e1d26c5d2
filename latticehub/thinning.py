"""Thinning a long curve for drawing, without hiding its spikes.

A plot of a million points draws a few thousand. Taking every n-th point would drop a loss
spike or a collapse of the ESS that lies between two kept points, exactly what a reader
looks for. Instead the curve is cut into consecutive buckets and each bucket keeps its
lowest and its highest point (in their order), so that the drawn line reaches every
extreme of the full curve; the first and last points are always kept.

Used by the live streams' history (``hub_ext``), the notebook widgets' plots and, in
JavaScript with the same rule, the dashboard's charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: The smallest ``limit``: the first point, the last, and one bucket's minimum and maximum.
MIN_LIMIT = 4


def thin_indices(values: Sequence[float], limit: int) -> list[int]:
    """Indices of at most ``limit`` points of ``values`` that keep every bucket's extremes.

    Args:
        values: the curve's y values in x order (NaN allowed: never an extreme).
        limit: the most points kept, at least :data:`MIN_LIMIT`, e.g. 4000.

    Returns:
        Increasing indices into ``values``: all of them when there are at most ``limit``;
        else the first, the last, and the lowest and highest finite-or-infinite value of
        each of ``(limit - 2) // 2`` consecutive buckets (a bucket of NaN only keeps its
        first point).

    Raises:
        ValueError: ``limit`` below :data:`MIN_LIMIT`.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit={limit} must be at least {MIN_LIMIT}: pass e.g. 4000")
    count = len(values)
    if count <= limit:
        return list(range(count))
    buckets = (limit - 2) // 2
    kept = {0, count - 1}
    for bucket in range(buckets):
        start, end = bucket * count // buckets, (bucket + 1) * count // buckets
        comparable = [i for i in range(start, end) if not math.isnan(values[i])]
        if not comparable:
            kept.add(start)
            continue
        kept.add(min(comparable, key=values.__getitem__))
        kept.add(max(comparable, key=values.__getitem__))
    return sorted(kept)
