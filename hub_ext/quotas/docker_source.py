"""This Hub's containers (or Swarm services) and the engine's nodes, read through the docker SDK.

The seam between :mod:`hub_ext.quotas.usage` (pure) and the engine: an
:class:`EngineSource` returns plain :class:`~hub_ext.quotas.usage.EngineObject` and
:class:`~hub_ext.quotas.usage.NodeCapacity` records. The docker SDK is blocking, so calls run
in a worker thread. Objects are selected as the spawner selects them when it rebuilds its
ledger: by the label ``org.latticehub.hub=<hub id>`` (containers: running ones only).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from latticehub import labels as L

from .usage import EngineObject, NodeCapacity


class EngineUnavailable(Exception):
    """The engine could not be read (the message says why)."""


def _iso(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Docker writes nanoseconds; Python parses up to microseconds
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class EngineEvent:
    """A container started (``start``) or stopped (``die``), at the engine's own time.

    Attributes:
        action: ``start`` or ``die``.
        id: the container id.
        time: seconds since the epoch (the engine's clock, to the nanosecond).
        labels: the container's labels (the engine sends them with each event).
        image: the container's image.
    """

    action: str
    id: str
    time: float
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""


class EngineSource(abc.ABC):
    """Reads this Hub's objects and the nodes from a container engine."""

    @abc.abstractmethod
    async def objects(self) -> list[EngineObject]:
        """This Hub's running containers (or services) with their labels."""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeCapacity]:
        """The engine's nodes and their CPUs and memory."""

    async def lifecycle_events(self, since: float, until: float) -> list[EngineEvent]:
        """This Hub's objects' starts and stops in ``[since, until]``, oldest first.

        Engines that keep no event log return ``[]``; usage accounting then learns stops
        only by seeing objects gone.
        """
        return []


class _DockerSDKSource(EngineSource):
    """Shared by the Docker and Swarm sources: a lazily made, reused low-level client."""

    def __init__(self, hub_id: str, *, client_factory: Callable[[], Any] | None = None):
        self.hub_id = hub_id
        self._factory = client_factory or _default_client
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, "api", self._client)

    async def _run(self, what: str, call: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            return call(self._api())

        try:
            return await asyncio.to_thread(work)
        except Exception as e:  # docker raises many kinds (requests, APIError, OSError)
            self._client = None  # reconnect on the next request
            raise EngineUnavailable(f"the Docker engine could not list {what}: {e}") from e

    @property
    def _selector(self) -> str:
        return f"{L.HUB}={self.hub_id}"


def _default_client() -> Any:
    import docker

    return docker.from_env(timeout=10)


class DockerEngineSource(_DockerSDKSource):
    """One Docker engine (``GroupLimitDockerSpawner``): containers and the engine's node.

    Args:
        hub_id: the Hub's label value.
        node_name: the engine's node name in labels and ``gpu_devices``.
        client_factory: makes a ``docker.DockerClient`` (or its low-level ``APIClient``).
    """

    def __init__(
        self,
        hub_id: str,
        *,
        node_name: str = "local",
        client_factory: Callable[[], Any] | None = None,
    ):
        super().__init__(hub_id, client_factory=client_factory)
        self.node_name = node_name

    async def objects(self) -> list[EngineObject]:
        """Running containers labelled with this hub (as ``docker ps --filter label=...``)."""
        found = await self._run(
            "containers",
            lambda api: api.containers(filters={"label": self._selector, "status": "running"}),
        )
        return [
            EngineObject(
                id=c.get("Id", ""),
                labels=c.get("Labels") or {},
                image=c.get("Image", ""),
                created=float(c["Created"]) if c.get("Created") is not None else None,
            )
            for c in found
        ]

    async def lifecycle_events(self, since: float, until: float) -> list[EngineEvent]:
        """``start`` and ``die`` events of this Hub's containers (as ``docker events``).

        The engine keeps a short log of recent events; ``until`` in the past makes the call
        return at once with what it holds.
        """
        filters = {"type": "container", "event": ["start", "die"], "label": self._selector}

        def read(api: Any) -> list[dict]:
            stream = api.events(since=since, until=until, filters=filters, decode=True)
            try:
                return list(stream)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

        found = await self._run("events", read)
        events = []
        for e in found:
            actor = e.get("Actor") or {}
            attributes = dict(actor.get("Attributes") or {})
            nano = e.get("timeNano")
            events.append(
                EngineEvent(
                    action=str(e.get("Action") or e.get("status") or ""),
                    id=str(actor.get("ID") or e.get("id") or ""),
                    time=nano / 1e9 if nano else float(e.get("time") or 0),
                    labels=attributes,
                    image=str(attributes.get("image") or e.get("from") or ""),
                )
            )
        return sorted(events, key=lambda ev: ev.time)

    async def nodes(self) -> list[NodeCapacity]:
        """The engine itself, as node ``node_name``."""
        info = await self._run("its info", lambda api: api.info())
        mem = info.get("MemTotal")
        return [
            NodeCapacity(
                name=self.node_name,
                cpus=float(info["NCPU"]) if info.get("NCPU") else None,
                mem_bytes=int(mem) if mem else None,
                hostname=info.get("Name", ""),
            )
        ]


class SwarmEngineSource(_DockerSDKSource):
    """A Docker Swarm (``GroupLimitSwarmSpawner``): services, their running tasks' nodes."""

    async def objects(self) -> list[EngineObject]:
        """Services labelled with this hub; the node is the one running its task."""

        def read(api: Any) -> tuple[list, list, list]:
            services = api.services(filters={"label": self._selector})
            tasks = api.tasks(filters={"desired-state": "running"}) if services else []
            nodes = api.nodes() if services else []
            return services, tasks, nodes

        services, tasks, nodes = await self._run("services", read)
        hostnames = {n.get("ID"): (n.get("Description") or {}).get("Hostname", "") for n in nodes}
        node_of = {t.get("ServiceID"): hostnames.get(t.get("NodeID"), "") for t in tasks}
        found = []
        for s in services:
            spec = s.get("Spec") or {}
            container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
            found.append(
                EngineObject(
                    id=s.get("ID", ""),
                    labels=spec.get("Labels") or {},
                    image=str(container.get("Image", "")).split("@", 1)[0],
                    created=_iso(s.get("CreatedAt")),
                    node=node_of.get(s.get("ID"), ""),
                )
            )
        return found

    async def nodes(self) -> list[NodeCapacity]:
        """Every Swarm node (by hostname) with its CPUs and memory."""
        found = await self._run("nodes", lambda api: api.nodes())
        result = []
        for n in found:
            description = n.get("Description") or {}
            resources = description.get("Resources") or {}
            hostname = description.get("Hostname", "")
            nano = resources.get("NanoCPUs")
            result.append(
                NodeCapacity(
                    name=hostname or n.get("ID", ""),
                    cpus=nano / 1e9 if nano else None,
                    mem_bytes=resources.get("MemoryBytes"),
                    hostname=hostname,
                )
            )
        return result


def engine_source(
    engine: str, hub_id: str, *, node_name: str = "local", client_factory: Any = None
) -> EngineSource:
    """The source for the spawner's engine (``docker`` or ``swarm``)."""
    if engine == "swarm":
        return SwarmEngineSource(hub_id, client_factory=client_factory)
    return DockerEngineSource(hub_id, node_name=node_name, client_factory=client_factory)
