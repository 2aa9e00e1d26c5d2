"""GroupLimitDockerSpawner: DockerSpawner with per-group limits on one Docker engine."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from docker.types import DeviceRequest, Mount
from dockerspawner import DockerSpawner
from traitlets import Int, Unicode, default, validate
from traitlets.traitlets import TraitError

from latticehub import labels
from latticehub.limits import GroupLimits, LimitError, ServerRequest
from latticehub.slots import Slot

from .mixin import GroupLimitsMixin
from .resources import docker_resources, drop_unsafe, hardening


class GroupLimitDockerSpawner(GroupLimitsMixin, DockerSpawner):
    """Spawn single-user servers in Docker containers, within each group's share.

    The effective limits are decided in :meth:`start` on every start, from the admin's
    ``group_limits`` lowered by the group's properties and by the user's options; the
    container gets exactly those limits, the hardening options and labels from which the
    ledger is rebuilt after a Hub restart.
    """

    node_name = Unicode(
        "local",
        help="""
        Name of the Docker engine's node in ``gpu_devices`` and in labels, e.g. the
        host name of a dedicated GPU node such as ``"gpu01"``.
        """,
    ).tag(config=True)

    cpu_period = Int(
        100_000,
        help="""
        CFS period in microseconds for CPU limits; a server limited to ``c`` CPUs gets
        ``cpu_quota = c * cpu_period``. Default 100000 (100 ms), as Docker's.
        """,
    ).tag(config=True)

    @validate("cpu_period")
    def _validate_cpu_period(self, proposal: Any) -> int:
        if not 1_000 <= proposal.value <= 1_000_000:
            raise TraitError("cpu_period must be between 1000 and 1000000 microseconds")
        return proposal.value

    pids_limit = Int(
        4096,
        help="Most processes a container may run (fork-bomb guard); 0 or -1: unlimited.",
    ).tag(config=True)

    @default("remove")
    def _default_remove(self) -> bool:
        # a server is recreated with the limits of its next start, never resumed
        return True

    async def engine_slots(self) -> list[Slot]:
        """Running containers of this hub, from their labels."""
        found = await self.docker(
            "containers", filters={"label": f"{labels.HUB}={self.hub_id}", "status": "running"}
        )
        slots = []
        for container in found:
            slot = labels.slot_from_labels(
                container.get("Labels") or {}, container["Id"], float(container.get("Created", 0))
            )
            if slot is not None:
                slots.append(slot)
        return slots

    async def launch(self, slot: Slot, request: ServerRequest, limits: GroupLimits) -> Any:
        """Create the container with the decided limits and start it."""
        await self.pull_image(request.image)
        existing = await self.get_object()
        if existing is not None:
            # never resume an old container: it would keep its old limits
            self.log.info("Removing previous container %s", self.object_name)
            await self.remove_object()
            await self._wait_removed()
            self.object_id = ""
        self.emit(f"Creating container {self.object_name} from {request.image}", 40)
        try:
            created = await self.create_object_for(slot, request, limits)
        except LimitError:
            raise
        self.object_id = created["Id"]
        self.emit("Starting container", 60)
        await self.start_object()
        if self.post_start_cmd:
            await self.post_start_exec()
        return await self.get_ip_and_port()

    async def _wait_removed(self, timeout: float = 30.0) -> None:
        """Wait until the container's name is free again (removal is asynchronous)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.get_object() is not None:
            if loop.time() > deadline:
                raise RuntimeError(f"container {self.object_name} was not removed in {timeout}s")
            await asyncio.sleep(0.2)

    async def _evaluated(self, value: Any) -> Any:
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value) if value else {}

    async def create_object_for(
        self, slot: Slot, request: ServerRequest, limits: GroupLimits
    ) -> dict[str, Any]:
        """Create (not start) the container: configured extras first, limits last.

        The limits and the hardening options are applied after ``extra_host_config``
        and ``extra_create_kwargs``, so configuration cannot loosen them.
        """
        extra_create = await self._evaluated(self.extra_create_kwargs)
        extra_host = dict(await self._evaluated(self.extra_host_config))
        mounts = [
            Mount(m["target"], m["source"], type=m["type"], read_only=m["read_only"])
            for m in self.storage_mounts(slot.pool, limits)
        ]
        binds = dict(self.volume_binds)
        if any(src.rstrip("/").endswith("docker.sock") for src in binds):
            raise LimitError(500, "config", "Refusing to mount the Docker socket; fix volumes")
        host_config: dict[str, Any] = {
            # removed explicitly in stop(), so that the name is free when stop() returns
            "auto_remove": False,
            "binds": binds,
            "links": self.links,
            "mounts": list(self.mount_binds) + mounts,
        }
        if not self.use_internal_ip:
            host_config["port_bindings"] = {self.port: (self.host_ip,)}
        dropped = drop_unsafe(extra_host)
        if dropped:
            self.log.warning(
                "Ignoring extra_host_config keys %s: user containers are never privileged",
                ", ".join(dropped),
            )
        host_config.update(extra_host)
        resources = docker_resources(
            mem_limit=request.mem_limit,
            cpu_limit=request.cpu_limit,
            cpu_period=self.cpu_period,
            pids_limit=self.pids_limit,
        )
        host_config.update(resources)
        host_config.update(hardening())
        if slot.gpus:
            host_config["device_requests"] = [
                DeviceRequest(driver="nvidia", device_ids=list(slot.gpus), capabilities=[["gpu"]])
            ]
        host_config.setdefault("network_mode", self.network_name)

        env = self.get_env()
        env["LATTICEHUB_GROUP"] = slot.pool
        if slot.gpus:
            env["LATTICEHUB_GPUS"] = ",".join(slot.gpus)
        create_kwargs: dict[str, Any] = {
            "image": request.image,
            "environment": env,
            "volumes": self.volume_mount_points,
            "name": self.container_name,
            "command": await self.command_for(request.image),
            "ports": {f"{self.port}/tcp": None},
        }
        create_kwargs.update({k: v for k, v in extra_create.items() if k != "labels"})
        run_as = self._run_as
        if run_as:
            create_kwargs["user"] = run_as
        create_kwargs["labels"] = {
            **(extra_create.get("labels") or {}),
            **labels.render_labels(self.hub_id, slot),
        }
        create_kwargs["host_config"] = self.client.create_host_config(**host_config)
        self.log.debug("Creating container %s with %s", self.container_name, host_config)
        return await self.docker("create_container", **create_kwargs)

    def placement_nodes(self, limits: GroupLimits) -> list[str] | None:
        """The local engine is one node: ``node_name``."""
        return [self.node_name]
