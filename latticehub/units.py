"""Parsing and formatting of memory sizes and CPU amounts (pure functions)."""

from __future__ import annotations

import math
import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")


def parse_bytes(value: int | float | str, *, name: str = "mem_limit") -> int:
    """Parse a memory size into bytes.

    Suffixes ``K``, ``M``, ``G``, ``T``, ``P`` count in powers of 1024, as Docker and
    DockerSpawner do; ``Ki``/``KB``/``KiB`` spellings mean the same.

    Args:
        value: bytes as a number, or a string such as ``"512M"`` or ``"8G"``.
        name: the setting's name, used in the error message.

    Returns:
        The size in bytes.

    Raises:
        ValueError: if the value is not a size, with the accepted forms in the message.

    >>> parse_bytes("8G")
    8589934592
    >>> parse_bytes("1.5K")
    1536
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a size: use bytes or e.g. '512M', '8G'")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(
                f"{name}={value!r} must be a non-negative number of bytes, or e.g. '512M', '8G'"
            )
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r} is not a size: use bytes or e.g. '512M', '8G'")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(
            f"{name}={value!r} is not a size: use bytes or a number with K, M, G or T "
            "(powers of 1024), e.g. '512M' or '8G'"
        )
    number, unit, _, _ = match.groups()
    return int(float(number) * 1024 ** _POWERS[unit.lower()])


def format_bytes(n: int | None) -> str:
    """Format bytes with the largest exact-ish binary unit, e.g. ``8G`` or ``1.5G``.

    >>> format_bytes(8 * 1024**3)
    '8G'
    >>> format_bytes(None)
    'unlimited'
    """
    if n is None:
        return "unlimited"
    for unit, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        scaled = n / 1024**power
        if scaled >= 1:
            text = f"{scaled:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{n}"


def parse_cpu(value: int | float | str, *, name: str = "cpu_limit") -> float:
    """Parse a CPU amount in cores: ``2``, ``0.5``, ``"1.5"`` or Kubernetes-style ``"500m"``.

    Raises:
        ValueError: if the value is not a positive number of cores.

    >>> parse_cpu("500m")
    0.5
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a CPU amount: use cores, e.g. 2 or 0.5")
    if isinstance(value, int | float):
        cores = float(value)
    elif isinstance(value, str) and (match := _CPU_RE.match(value)):
        number, milli = match.groups()
        cores = float(number) / (1000 if milli else 1)
    else:
        raise ValueError(
            f"{name}={value!r} is not a CPU amount: use cores (e.g. 2 or 0.5) or millicores "
            "('500m')"
        )
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number of cores, e.g. 0.5")
    return cores


def format_cpu(cores: float | None) -> str:
    """Format cores compactly (``2``, ``0.5``) or ``unlimited``."""
    if cores is None:
        return "unlimited"
    return f"{cores:g}"
