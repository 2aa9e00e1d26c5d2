"""Live usage per group and per node, against the limits (pure).

Inputs are what the service reads on each request, never a copy kept in between:

- the Hub's group models (``properties``: a manager's lowered values under ``latticehub``),
- the Hub's active users with their server models (``pending``, ``ready``, ``started``,
  ``last_activity``, ``user_options``),
- the engine's objects (containers, or Swarm services) with the ``org.latticehub.*`` labels
  the spawner wrote, and the engine's nodes,
- the spawner's queue gauge per group (``latticehub_group_spawns_queued``),
- the admin's ceilings (:class:`~latticehub.policy.Policy`).

Counting follows the spawner's ledger: a group's slots are held by its containers (exactly
what ``docker ps --filter label=org.latticehub.group=<g>`` lists) plus the spawns the Hub
reports pending that have no container yet and are not waiting in the group's queue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from latticehub import labels as L
from latticehub.limits import (
    PROPERTIES_KEY,
    GroupLimits,
    apply_properties,
)
from latticehub.policy import Policy, charged_group

#: Server states: a container that the Hub reports ready, one that is still starting or
#: stopping, a container no Hub server owns, and a spawn with no container yet.
RUNNING, STARTING, STOPPING = "running", "starting", "stopping"
ORPHAN, PENDING = "orphan", "pending"
#: Group kinds: listed in ``group_limits``, an unlisted group with its own pool, the pool of
#: users in no group, a group that only labels still name (its ceiling was removed).
LISTED, UNLISTED, NO_GROUP, UNCONFIGURED = "listed", "unlisted", "no-group", "unconfigured"


@dataclass(frozen=True)
class EngineObject:
    """A container (or Swarm service) of this Hub, as the engine lists it.

    Attributes:
        id: the container or service id.
        labels: its labels (``org.latticehub.*``).
        image: the image it runs.
        created: creation time, seconds since the epoch.
        node: the node it runs on, if the engine says (Swarm tasks); '' otherwise.
    """

    id: str
    labels: Mapping[str, str]
    image: str = ""
    created: float | None = None
    node: str = ""


@dataclass(frozen=True)
class NodeCapacity:
    """A node of the engine and what it has (``None``: unknown)."""

    name: str
    cpus: float | None = None
    mem_bytes: int | None = None
    hostname: str = ""


@dataclass(frozen=True)
class ServerUse:
    """A server holding (or waiting for) one of a group's slots."""

    user: str
    server: str
    group: str
    state: str
    image: str = ""
    node: str = ""
    gpus: tuple[str, ...] = ()
    mem_bytes: int | None = None
    cpus: float | None = None
    started: float | None = None
    last_activity: float | None = None
    object_id: str = ""
    age_s: float | None = None
    idle_s: float | None = None

    @property
    def holds_slot(self) -> bool:
        """Whether an engine object exists for it (it counts against the group)."""
        return self.state != PENDING


@dataclass(frozen=True)
class GroupUsage:
    """One group's usage and limits.

    Attributes:
        name: the group (pool) name.
        kind: :data:`LISTED`, :data:`UNLISTED`, :data:`NO_GROUP` or :data:`UNCONFIGURED`.
        exists: whether the Hub has a group of that name.
        ceiling: the admin's limits (``None``: no share).
        effective: the ceiling lowered by the group's properties (what the next spawn gets).
        lowered: the group's ``properties["latticehub"]`` as stored.
        warnings: lowered values the spawner ignores, and why.
        members: the Hub group's member count.
        servers: containers of the group, then pending spawns, oldest first.
        queued: spawns waiting in the group's queue (``None``: the gauge was not read).
    """

    name: str
    kind: str
    exists: bool
    ceiling: GroupLimits | None
    effective: GroupLimits | None
    lowered: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    members: int | None = None
    servers: tuple[ServerUse, ...] = ()
    queued: int | None = None

    @property
    def containers(self) -> int:
        """Containers (services) of the group in the engine."""
        return sum(1 for s in self.servers if s.holds_slot)

    @property
    def pending(self) -> int:
        """Spawns the Hub reports pending that have no container yet."""
        return sum(1 for s in self.servers if not s.holds_slot)

    @property
    def used(self) -> int:
        """Slots held: containers plus pending spawns that are not waiting in the queue."""
        return self.containers + max(self.pending - (self.queued or 0), 0)

    @property
    def limit(self) -> int | None:
        """The effective ``max_servers`` (``None``: unlimited)."""
        return self.effective.max_servers if self.effective is not None else None

    @property
    def free(self) -> int | None:
        """Slots left (``None``: unlimited)."""
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def over(self) -> bool:
        """More slots held than the limit (after a manager lowered it below the usage)."""
        return self.limit is not None and self.used > self.limit

    @property
    def lowerable(self) -> bool:
        """Whether managers may lower it (a Hub group with a share)."""
        return self.exists and self.kind in (LISTED, UNLISTED)

    @property
    def mem_bytes(self) -> int:
        """Memory reserved by the group's containers."""
        return sum(s.mem_bytes or 0 for s in self.servers if s.holds_slot)

    @property
    def cpus(self) -> float:
        """CPUs reserved by the group's containers."""
        return sum(s.cpus or 0.0 for s in self.servers if s.holds_slot)

    @property
    def gpus(self) -> int:
        """GPUs held by the group's containers."""
        return sum(len(s.gpus) for s in self.servers if s.holds_slot)

    def per_user(self) -> dict[str, int]:
        """Containers per user (for ``max_servers_per_user``)."""
        counts: dict[str, int] = {}
        for s in self.servers:
            if s.holds_slot:
                counts[s.user] = counts.get(s.user, 0) + 1
        return counts


@dataclass(frozen=True)
class NodeUsage:
    """One node's usage: what this Hub's servers reserve there, by group."""

    name: str
    hostname: str = ""
    cpus_total: float | None = None
    mem_total: int | None = None
    servers: int = 0
    cpus: float = 0.0
    mem_bytes: int = 0
    gpus_used: tuple[str, ...] = ()
    gpus_total: tuple[str, ...] = ()
    groups: Mapping[str, int] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Every group's and node's usage at ``taken_at``."""

    groups: tuple[GroupUsage, ...]
    nodes: tuple[NodeUsage, ...]
    taken_at: float

    def group(self, name: str) -> GroupUsage | None:
        """One group's usage, or ``None``."""
        for g in self.groups:
            if g.name == name:
                return g
        return None


def parse_time(value: Any) -> float | None:
    """An ISO 8601 time from the Hub API as seconds since the epoch (``None`` if absent).

    >>> parse_time("1970-01-01T00:01:00Z")
    60.0
    """
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _since(now: float, then: float | None) -> float | None:
    return None if then is None else max(now - then, 0.0)


def collect_servers(
    *,
    policy: Policy,
    hub_users: Iterable[Mapping[str, Any]],
    objects: Iterable[EngineObject],
    now: float,
) -> list[ServerUse]:
    """Every server holding or waiting for a slot, from the engine and the Hub.

    Containers come from the engine (their labels name group, user, server and resources);
    the Hub adds the state, start and last activity, and the spawns that have no container
    yet. A container that no active Hub server owns is an orphan: it still counts.
    """
    hub: dict[tuple[str, str], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for user in hub_users:
        for name, server in (user.get("servers") or {}).items():
            hub[(str(user.get("name")), str(name))] = (user, server)
    found: list[ServerUse] = []
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        slot = L.slot_from_labels(obj.labels, obj.id, obj.created or 0.0)
        if slot is None:
            continue
        key = (slot.user, slot.server)
        seen.add(key)
        user_model, server = hub.get(key, ({}, None))
        if server is None:
            state = ORPHAN
        elif server.get("pending") == "spawn":
            state = STARTING
        elif server.get("pending") == "stop":
            state = STOPPING
        else:
            state = RUNNING
        started = parse_time(server.get("started")) if server else None
        if started is None:
            started = obj.created
        activity = parse_time(server.get("last_activity")) if server else None
        node = slot.node or obj.node or (policy.node_name if policy.engine == "docker" else "")
        found.append(
            ServerUse(
                user=slot.user,
                server=slot.server,
                group=slot.pool,
                state=state,
                image=obj.image,
                node=node,
                gpus=slot.gpus,
                mem_bytes=slot.mem_limit,
                cpus=slot.cpu_limit,
                started=started,
                last_activity=activity,
                object_id=obj.id[:12],
                age_s=_since(now, started),
                idle_s=_since(now, activity),
            )
        )
    for key, (user_model, server) in hub.items():
        if key in seen or server.get("pending") != "spawn":
            continue
        options = server.get("user_options") or {}
        group = charged_group(policy, user_model, options)
        if group is None:
            continue
        started = parse_time(server.get("started"))
        image = options.get("image") if isinstance(options, Mapping) else None
        found.append(
            ServerUse(
                user=key[0],
                server=key[1],
                group=group,
                state=PENDING,
                image=image if isinstance(image, str) else "",
                started=started,
                last_activity=parse_time(server.get("last_activity")),
                age_s=_since(now, started),
            )
        )
    return sorted(found, key=lambda s: (not s.holds_slot, s.started or 0.0, s.user, s.server))


def _pools(policy: Policy, hub_groups: Mapping[str, Any], named: Iterable[str]) -> list[str]:
    pools = list(policy.ceilings)
    if policy.unlisted is not None:
        pools += sorted(g for g in hub_groups if g not in policy.ceilings)
    if policy.no_group is not None and policy.no_group_pool not in pools:
        pools.append(policy.no_group_pool)
    pools += sorted(set(named) - set(pools))
    return pools


def compute_usage(
    *,
    policy: Policy,
    hub_groups: Iterable[Mapping[str, Any]],
    hub_users: Iterable[Mapping[str, Any]],
    objects: Iterable[EngineObject],
    nodes: Iterable[NodeCapacity] = (),
    queued: Mapping[str, int] | None = None,
    now: float,
) -> Usage:
    """Usage of every group (in the admin's order) and every node.

    Args:
        policy: the admin's ceilings and the spawner's settings.
        hub_groups: Hub group models (``name``, ``users``, ``properties``).
        hub_users: Hub user models with their (active) ``servers``.
        objects: this Hub's containers / services in the engine.
        nodes: the engine's nodes and their capacity.
        queued: spawns waiting per group (``None``: unknown).
        now: the current time, seconds since the epoch.
    """
    groups = {str(g.get("name")): g for g in hub_groups}
    servers = collect_servers(policy=policy, hub_users=hub_users, objects=objects, now=now)
    by_group: dict[str, list[ServerUse]] = {}
    for s in servers:
        by_group.setdefault(s.group, []).append(s)
    result = []
    for name in _pools(policy, groups, by_group):
        model = groups.get(name)
        exists = model is not None
        if name in policy.ceilings:
            kind = LISTED
        elif name == policy.no_group_pool and policy.no_group is not None:
            kind = NO_GROUP
        elif policy.unlisted is not None and exists:
            kind = UNLISTED
        else:
            kind = UNCONFIGURED
        ceiling = policy.ceiling_of(name, hub_group=exists) if kind != UNCONFIGURED else None
        properties = (model or {}).get("properties") or {}
        lowered = properties.get(PROPERTIES_KEY) if kind in (LISTED, UNLISTED) else None
        lowered = lowered if isinstance(lowered, Mapping) else {}
        effective, warnings = ceiling, list[str]()
        if ceiling is not None and kind in (LISTED, UNLISTED):
            effective, warnings = apply_properties(ceiling, properties)
        mine = by_group.get(name, [])
        waiting = None
        if queued is not None:
            waiting = min(int(queued.get(name, 0)), sum(1 for s in mine if not s.holds_slot))
        result.append(
            GroupUsage(
                name=name,
                kind=kind,
                exists=exists,
                ceiling=ceiling,
                effective=effective,
                lowered=dict(lowered),
                warnings=tuple(warnings),
                members=len(model.get("users") or []) if model and "users" in model else None,
                servers=tuple(mine),
                queued=waiting,
            )
        )
    return Usage(
        groups=tuple(result),
        nodes=tuple(node_usage(policy, result, nodes)),
        taken_at=now,
    )


def node_usage(
    policy: Policy, groups: Sequence[GroupUsage], capacity: Iterable[NodeCapacity]
) -> list[NodeUsage]:
    """Per node: servers, reserved CPUs / memory / GPUs, by group, and who may use it."""
    known = {c.name: c for c in capacity}
    names = list(known)
    names += [n for n in policy.gpu_devices if n not in known]
    for g in groups:
        for s in g.servers:
            if s.holds_slot and s.node and s.node not in names:
                names.append(s.node)
    result = []
    for name in names:
        held = [s for g in groups for s in g.servers if s.holds_slot and s.node == name]
        by_group: dict[str, int] = {}
        for s in held:
            by_group[s.group] = by_group.get(s.group, 0) + 1
        cap = known.get(name, NodeCapacity(name))
        allowed = tuple(
            g.name
            for g in groups
            if g.effective is not None and (g.effective.nodes is None or name in g.effective.nodes)
        )
        result.append(
            NodeUsage(
                name=name,
                hostname=cap.hostname,
                cpus_total=cap.cpus,
                mem_total=cap.mem_bytes,
                servers=len(held),
                cpus=sum(s.cpus or 0.0 for s in held),
                mem_bytes=sum(s.mem_bytes or 0 for s in held),
                gpus_used=tuple(sorted({gpu for s in held for gpu in s.gpus})),
                gpus_total=policy.gpu_devices.get(name, ()),
                groups=by_group,
                allowed=allowed,
            )
        )
    return result


# -- JSON ------------------------------------------------------------------------------


def limits_json(limits: GroupLimits | None) -> dict[str, Any] | None:
    """Limits as JSON: every key, ``null`` for "no limit"; memory in bytes, CPUs in cores."""
    if limits is None:
        return None
    out: dict[str, Any] = {}
    for f in dataclasses.fields(limits):
        value = getattr(limits, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def server_json(s: ServerUse) -> dict[str, Any]:
    """One server as JSON (times as seconds since the epoch, ages in seconds)."""
    return {
        "user": s.user,
        "server": s.server,
        "group": s.group,
        "state": s.state,
        "image": s.image,
        "node": s.node,
        "gpus": list(s.gpus),
        "mem_bytes": s.mem_bytes,
        "cpus": s.cpus,
        "started": s.started,
        "last_activity": s.last_activity,
        "age_s": _round(s.age_s),
        "idle_s": _round(s.idle_s),
        "object_id": s.object_id,
    }


def group_json(g: GroupUsage, *, servers: bool = True) -> dict[str, Any]:
    """One group as JSON (with its servers unless ``servers=False``)."""
    out: dict[str, Any] = {
        "name": g.name,
        "kind": g.kind,
        "exists": g.exists,
        "lowerable": g.lowerable,
        "members": g.members,
        "usage": {
            "used": g.used,
            "limit": g.limit,
            "free": g.free,
            "over": g.over,
            "containers": g.containers,
            "pending": g.pending,
            "queued": g.queued,
            "mem_bytes": g.mem_bytes,
            "cpus": g.cpus,
            "gpus": g.gpus,
            "per_user": g.per_user(),
        },
        "ceiling": limits_json(g.ceiling),
        "effective": limits_json(g.effective),
        "lowered": dict(g.lowered),
        "warnings": list(g.warnings),
    }
    if servers:
        out["servers"] = [server_json(s) for s in g.servers]
    return out


def node_json(n: NodeUsage, can_see: Callable[[str], bool] = lambda _: True) -> dict[str, Any]:
    """One node as JSON; the per-group split shows only groups ``can_see`` allows."""
    return {
        "name": n.name,
        "hostname": n.hostname,
        "capacity": {"cpus": n.cpus_total, "mem_bytes": n.mem_total, "gpus": list(n.gpus_total)},
        "reserved": {
            "servers": n.servers,
            "cpus": n.cpus,
            "mem_bytes": n.mem_bytes,
            "gpus": list(n.gpus_used),
        },
        "groups": {g: c for g, c in n.groups.items() if can_see(g)},
        "allowed": [g for g in n.allowed if can_see(g)],
    }
