"""A stacked bar chart of usage per period and group, as inline SVG (pure, escaped).

Drawn on the server so that the page needs no script and no plotting library; every text
that comes from data (group names, periods) goes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from .sessions import UsageRow

#: Colour-blind-safe palette (Okabe-Ito), cycled over groups.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``value`` (> 0).

    >>> nice_ceiling(7.3), nice_ceiling(0.04), nice_ceiling(0)
    (10.0, 0.05, 1.0)
    """
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * scale * (1 + 1e-9):
            return round(step * scale, 12)
    return 10.0 * scale


def stacked_bars(
    rows: Sequence[UsageRow],
    *,
    field: str = "container_hours",
    title: str = "Container-hours",
    width: int = 720,
    height: int = 240,
) -> str:
    """An SVG chart: one bar per period, stacked by group, with a legend and a y axis."""
    periods = sorted({r.period for r in rows})
    groups = sorted({r.group for r in rows})
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    stack: dict[str, dict[str, float]] = {p: {} for p in periods}
    for r in rows:
        stack[r.period][r.group] = stack[r.period].get(r.group, 0.0) + float(getattr(r, field))
    top = nice_ceiling(max((sum(v.values()) for v in stack.values()), default=0.0))
    left, right, upper, lower = 56, 12, 28, 42
    plot_w, plot_h = width - left - right, height - upper - lower
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)} per period and group">',
        f'<text x="{left}" y="16" class="title">{escape(title)}</text>',
    ]
    for i in range(5):  # y grid and labels
        value = top * i / 4
        y = upper + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value:g}</text>'
        )
    if not periods:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{upper + plot_h / 2:.1f}" '
            'text-anchor="middle" class="empty">no usage in this window</text></svg>'
        )
        return "".join(parts)
    slot = plot_w / len(periods)
    bar = max(1.0, min(40.0, slot * 0.7))
    label_every = max(1, round(len(periods) / 10))
    for i, period in enumerate(periods):
        x = left + slot * i + (slot - bar) / 2
        base: float = upper + plot_h
        for group in groups:
            value = stack[period].get(group, 0.0)
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour[group]}" data-group="{escape(group)}" '
                f'data-period="{escape(period)}" data-value="{value:.6f}">'
                f"<title>{escape(group)} {escape(period)}: {value:.2f}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{upper + plot_h + 14}" text-anchor="middle" '
                f'class="tick">{escape(period)}</text>'
            )
    legend_x = left
    for group in groups:
        y = height - 10
        parts.append(
            f'<rect x="{legend_x}" y="{y - 9}" width="10" height="10" fill="{colour[group]}"/>'
            f'<text x="{legend_x + 14}" y="{y}" class="legend">{escape(group)}</text>'
        )
        legend_x += 24 + 7 * len(group)
    parts.append("</svg>")
    return "".join(parts)
