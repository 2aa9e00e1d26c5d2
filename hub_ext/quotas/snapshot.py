"""One live reading of the Hub and the engine, turned into usage (the I/O around usage.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from latticehub.policy import Policy

from ..common.hub_client import HubSource
from .docker_source import EngineSource
from .usage import Usage, compute_usage


async def take_snapshot(
    *,
    policy: Policy,
    hub: HubSource,
    engine: EngineSource,
    clock: Callable[[], float] = time.time,
) -> Usage:
    """Read users, groups, the queue gauge, the engine's objects and nodes; compute usage.

    Nothing is cached between calls: every page and API answer reflects the Hub and the
    engine at the time of the request.

    Raises:
        HubError: the Hub API failed.
        EngineUnavailable: the engine could not be read.
    """
    names = None if policy.unlisted is not None else list(policy.ceilings)
    users, groups, queued, objects, nodes = await asyncio.gather(
        hub.active_users(),
        hub.groups(names),
        hub.queued(),
        engine.objects(),
        engine.nodes(),
    )
    return compute_usage(
        policy=policy,
        hub_groups=groups,
        hub_users=users,
        objects=objects,
        nodes=nodes,
        queued=queued,
        now=clock(),
    )
