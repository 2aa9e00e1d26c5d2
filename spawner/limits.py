"""Deprecated: moved to :mod:`latticehub.limits` (this alias goes after one release)."""

import warnings

import latticehub.limits as _moved

warnings.warn(
    "spawner.limits moved to latticehub.limits: import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> object:
    return getattr(_moved, name)
