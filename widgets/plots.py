"""Matplotlib figures for the panels, drawn off-screen and shown in an ``ipywidgets.Output``.

Figures are made with :class:`matplotlib.figure.Figure` and the Agg canvas, never through
``pyplot``: no global figure registry, nothing shown twice, safe from the monitor's
background thread. :func:`show_figure` puts the PNG into the ``Output`` as a display
message, which works from any thread (``with output:`` capture does not).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from latticehub.thinning import thin_indices

#: The metrics the monitor plots, in this order (others are listed, not drawn).
LIVE_KEYS = ("loss", "ess", "acceptance")
#: Most points drawn per curve (each bucket's lowest and highest: latticehub.thinning).
MAX_POINTS = 4000


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def thin(points: Sequence[tuple[int, float]], limit: int = MAX_POINTS) -> list[tuple[int, float]]:
    """At most ``limit`` points that keep each bucket's lowest and highest (no spike hidden).

    See :mod:`latticehub.thinning`; the first and last points are always kept.
    """
    points = list(points)
    return [points[i] for i in thin_indices([float(v) for _, v in points], limit)]


def _finite(points: Iterable[tuple[int, float]]) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for step, value in points:
        value = float(value)
        if math.isfinite(value):
            steps.append(step)
            values.append(value)
    return steps, values


def training_figure(
    series: Mapping[str, Sequence[tuple[int, float]]], keys: Sequence[str] = LIVE_KEYS
) -> Any:
    """One panel per metric of ``keys`` (those with points), step on the x axis.

    Args:
        series: metric key -> ``[(step, value)]`` sorted by step.
        keys: which metrics to draw, in order.

    Returns:
        The figure, or ``None`` when none of ``keys`` has points yet.
    """
    shown = [k for k in keys if series.get(k)]
    if not shown:
        return None
    fig = _figure(3.4 * len(shown), 2.6)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, key in zip(axes, shown, strict=True):
        steps, values = _finite(thin(series[key]))
        ax.plot(steps, values, marker="." if len(steps) < 50 else None, lw=1.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key in ("ess", "acceptance"):
            ax.set_ylim(-0.02, 1.02)
    return fig


def compare_figure(curves: Mapping[str, Sequence[tuple[int, float]]], key: str) -> Any:
    """Overlaid curves of one metric, one line per run (``label -> [(step, value)]``)."""
    fig = _figure(6.4, 3.4)
    ax = fig.subplots()
    for label, points in curves.items():
        steps, values = _finite(thin(points))
        ax.plot(steps, values, label=label, lw=1.2, marker="." if len(steps) < 50 else None)
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    return fig


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def show_figure(output: Any, fig: Any, text: str = "") -> None:
    """Replace what ``output`` (an ``ipywidgets.Output``) shows with the figure's PNG."""
    if fig is None:
        output.outputs = ()
        return
    data = {
        "image/png": base64.b64encode(figure_png(fig)).decode("ascii"),
        "text/plain": text or "<metrics figure>",
    }
    output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)
