"""Deprecated: the registry's entities and ABC moved to :mod:`.registry` (one release)."""

from latticehub._moved import moved_module

__getattr__ = moved_module(__name__, "hub_ext.experiments.store.registry")
