"""Usage entities: a server session and how its times were learnt (no storage, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

#: How the end of a session was learnt: from the engine's own event time, or as the moment
#: the recorder first saw the object gone (late by up to one recording interval).
EXACT, OBSERVED = "exact", "observed"


@dataclass(frozen=True)
class Session:
    """One server's run on the engine.

    Attributes:
        id: the container (or service) id, unique per session.
        group: the group whose slot it held.
        user: the server's user.
        server: the server's name ('' for the default server).
        node: the node it ran on.
        image: its image.
        gpus: GPUs it held.
        cpus: its CPU limit (``None``: none set).
        mem_bytes: its memory limit in bytes (``None``: none set).
        start: start time, seconds since the epoch.
        end: stop time (``None`` while it runs).
        end_source: :data:`EXACT` or :data:`OBSERVED` (``''`` while it runs).
    """

    id: str
    group: str
    user: str
    server: str = ""
    node: str = ""
    image: str = ""
    gpus: int = 0
    cpus: float | None = None
    mem_bytes: int | None = None
    start: float = 0.0
    end: float | None = None
    end_source: str = ""
