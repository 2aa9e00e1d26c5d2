"""Names safe for Docker objects (volumes, labels values) from user and group names."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^a-z0-9_.-]")
_HASHED = re.compile(r"-[0-9a-f]{6}$")


def safe_name(name: str) -> str:
    """A Docker-safe, collision-free form of ``name``.

    Lower-case letters, digits, ``_``, ``.`` and ``-`` are kept; when anything had to be
    replaced, a short hash of the original is appended so that ``"A b"`` and ``"a-b"``
    never map to the same volume.

    >>> safe_name("alice")
    'alice'
    >>> safe_name("Alice Smith")
    'alice-smith-8ae10d'
    """
    cleaned = _UNSAFE.sub("-", name.lower())[:48].strip("-.") or "x"
    # a safe name that looks like a hashed one is hashed too, so that nobody can pick the
    # name another user's name maps to
    if cleaned == name and not _HASHED.search(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{cleaned}-{digest}"
