"""Formatting for the pages (pure): sizes, CPUs, ages, times, limit values."""

from __future__ import annotations

import time
from typing import Any

from latticehub.units import format_bytes, format_cpu


def size(n: int | None, *, none: str = "—") -> str:
    """Bytes as ``8G`` (``none`` for unknown)."""
    return none if n is None else format_bytes(n)


def cpus(c: float | None, *, none: str = "—") -> str:
    """Cores as ``0.5`` (``none`` for unknown)."""
    return none if c is None else format_cpu(round(c, 3))


def age(seconds: float | None) -> str:
    """A duration as ``45s``, ``3m 20s``, ``2h 5m`` or ``4d 3h`` (``—`` if unknown).

    >>> age(200)
    '3m 20s'
    """
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(epoch: float | None) -> str:
    """A time as ``2024-05-01 12:00:00 UTC`` (``—`` if unknown)."""
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def limit(key: str, value: Any, *, unset: str = "no limit") -> str:
    """One limit's value for a table cell."""
    if value is None:
        return "0" if key == "gpus" else unset
    if key == "mem_limit":
        return format_bytes(value)
    if key == "cpu_limit":
        return format_cpu(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(value) if value else "none"
    return str(value)


def lowered(key: str, value: Any) -> str:
    """A manager's stored value as typed (``—`` when not lowered)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)
