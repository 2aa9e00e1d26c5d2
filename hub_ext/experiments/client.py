"""Deprecated: moved to :mod:`latticehub.client` (this alias goes after one release)."""

from latticehub._moved import moved_module

__getattr__ = moved_module(__name__, "latticehub.client")
