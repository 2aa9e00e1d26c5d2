"""Deprecated: moved to :mod:`latticehub.gpus` (this alias goes after one release)."""

import warnings

import latticehub.gpus as _moved

warnings.warn(
    "spawner.gpus moved to latticehub.gpus: import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> object:
    return getattr(_moved, name)
