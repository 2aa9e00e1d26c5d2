"""Old import paths of modules that moved into :mod:`latticehub` (kept for one release)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def moved_module(old: str, new: str) -> Callable[[str], object]:
    """Warn that ``old`` moved to ``new``; return the ``__getattr__`` that forwards to it.

    Called at the top of the old module (``__getattr__ = moved_module(__name__, "...")``),
    so the warning names the code that imported the old path.
    """
    warnings.warn(f"{old} moved to {new}: import it from there", DeprecationWarning, stacklevel=3)
    target = importlib.import_module(new)

    def forward(name: str) -> object:
        return getattr(target, name)

    return forward
