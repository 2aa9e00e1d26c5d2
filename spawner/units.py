"""Deprecated: moved to :mod:`latticehub.units` (this alias goes after one release)."""

import warnings

import latticehub.units as _moved

warnings.warn(
    "spawner.units moved to latticehub.units: import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> object:
    return getattr(_moved, name)
