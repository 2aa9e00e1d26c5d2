"""Deprecated: moved to :mod:`latticehub.naming` (this alias goes after one release)."""

import warnings

import latticehub.naming as _moved

warnings.warn(
    "spawner.naming moved to latticehub.naming: import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> object:
    return getattr(_moved, name)
