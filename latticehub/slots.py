"""A server's hold on a group's share (``Slot``) and its states: the shared vocabulary.

The spawner's ledger (``spawner.ledger``) keeps them; the quotas service and the jobs read
them back from container labels (:mod:`latticehub.labels`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from .limits import Holder

PENDING = "pending"
RUNNING = "running"


@dataclass(frozen=True)
class Slot:
    """One server's hold on a group's share.

    Attributes:
        pool: the charged group.
        user: the server's owner.
        server: the named server ('' for the default server).
        token: identifies this reservation, so that a late release of an older start
            never frees a newer one.
        state: ``pending`` while starting, ``running`` once the container runs.
        node: where the server runs ('' if unknown).
        gpus: GPU device ids on ``node``.
        gpu_shared: whether those GPUs may be shared.
        mem_limit: reserved memory, bytes.
        cpu_limit: reserved CPUs.
        image: the image.
        object_id: Docker container or service id once created.
        since: time.time() of the reservation.
        claimed: whether a Hub spawner owns it (``False`` for orphans found at rebuild).
    """

    pool: str
    user: str
    server: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = PENDING
    node: str = ""
    gpus: tuple[str, ...] = ()
    gpu_shared: bool = False
    mem_limit: int | None = None
    cpu_limit: float | None = None
    image: str = ""
    object_id: str = ""
    since: float = field(default_factory=time.time)
    claimed: bool = True

    @property
    def key(self) -> tuple[str, str]:
        """``(user, server)``: a server holds at most one slot."""
        return (self.user, self.server)

    @property
    def holder(self) -> Holder:
        """The slot as named in messages."""
        return Holder(self.user, self.server)
