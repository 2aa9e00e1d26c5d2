"""Deprecated: moved to :mod:`latticehub.labels` (this alias goes after one release)."""

import warnings

import latticehub.labels as _moved

warnings.warn(
    "spawner.labels moved to latticehub.labels: import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> object:
    return getattr(_moved, name)
