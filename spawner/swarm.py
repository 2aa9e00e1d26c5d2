"""GroupLimitSwarmSpawner: per-group limits and node placement on a Docker Swarm."""

from __future__ import annotations

import asyncio
from typing import Any

from docker.types import ContainerSpec, EndpointSpec, Mount, Placement, Resources, TaskTemplate
from dockerspawner import SwarmSpawner
from traitlets import Float, Unicode, validate
from traitlets.traitlets import TraitError

from latticehub import labels
from latticehub.limits import GroupLimits, ServerRequest
from latticehub.slots import Slot

from .mixin import GroupLimitsMixin
from .resources import swarm_constraints, swarm_resources


class GroupLimitSwarmSpawner(GroupLimitsMixin, SwarmSpawner):
    """Spawn single-user servers as Swarm services on the dedicated nodes of each group.

    A group's ``nodes`` pin its servers to those nodes (the least used one is chosen,
    or the one holding the assigned GPUs); ``constraints`` are added verbatim. Memory
    and CPU are both limited and reserved, so Swarm only places a server where it fits.
    """

    publish_mode = Unicode(
        "host",
        help="""
        How a server's port is published when ``use_internal_ip`` is False: ``"host"``
        (default) binds a random port on the node that runs the task, which the Hub's
        proxy reaches at the node's address (``host_ip`` for the Hub's own node);
        ``"ingress"`` uses Swarm's routing mesh. Host mode needs no routing mesh and
        works on single-node swarms, where the mesh is not reachable from loopback.
        """,
    ).tag(config=True)

    @validate("publish_mode")
    def _validate_publish_mode(self, proposal: Any) -> str:
        if proposal.value not in ("host", "ingress"):
            raise TraitError(f"publish_mode={proposal.value!r}: use 'host' or 'ingress'")
        return proposal.value

    task_wait_timeout = Float(
        60.0,
        help="Seconds to wait for Swarm to create the service's task before failing.",
    ).tag(config=True)

    async def engine_slots(self) -> list[Slot]:
        """Services of this hub, from their labels."""
        found = await self.docker("services", filters={"label": f"{labels.HUB}={self.hub_id}"})
        slots = []
        for service in found:
            spec_labels = (service.get("Spec") or {}).get("Labels") or {}
            slot = labels.slot_from_labels(spec_labels, service["ID"])
            if slot is not None:
                slots.append(slot)
        return slots

    def pick_node(self, limits: GroupLimits) -> str:
        """The allowed node with the fewest of this hub's servers ('' = let Swarm pick)."""
        if not limits.nodes:
            return ""
        load = {node: 0 for node in limits.nodes}
        for slot in self.ledger.slots():
            if slot.node in load:
                load[slot.node] += 1
        return min(limits.nodes, key=lambda n: (load[n], n))

    async def launch(self, slot: Slot, request: ServerRequest, limits: GroupLimits) -> Any:
        """Create the service with the decided limits and placement; wait until it runs."""
        node = slot.node or self.pick_node(limits)
        if node != slot.node:
            slot = self.ledger.update(slot, node=node) or slot
            self._slot = slot
        if await self.get_object() is not None:
            self.log.info("Removing previous service %s", self.object_name)
            await self.remove_object()
            self.object_id = ""
        self.emit(f"Creating service {self.object_name} on {node or 'any node'}", 40)
        service = await self.create_service_for(slot, request, limits)
        self.object_id = service["ID"]
        self.emit("Waiting for Swarm to start the task", 60)
        await self.start_object()
        return await self.get_ip_and_port()

    async def create_service_for(
        self, slot: Slot, request: ServerRequest, limits: GroupLimits
    ) -> dict[str, Any]:
        """Create the service: configured extras first, limits and hardening last."""
        service_labels = labels.render_labels(self.hub_id, slot)
        env = self.get_env()
        env["LATTICEHUB_GROUP"] = slot.pool
        if slot.gpus:
            env["LATTICEHUB_GPUS"] = ",".join(slot.gpus)
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        mounts = [
            Mount(m["target"], m["source"], type=m["type"], read_only=m["read_only"])
            for m in self.storage_mounts(slot.pool, limits)
        ]
        container_kwargs: dict[str, Any] = dict(self.extra_container_spec)
        container_kwargs.update(
            image=request.image,
            env=env,
            args=await self.command_for(request.image),
            mounts=list(self.mounts) + mounts,
            labels=service_labels,
            cap_drop=["ALL"],
        )
        run_as = self._run_as
        if run_as:
            container_kwargs["user"] = run_as
        resources = Resources(
            **{
                **self.extra_resources_spec,
                **swarm_resources(mem_limit=request.mem_limit, cpu_limit=request.cpu_limit),
            }
        )
        extra_placement = dict(self.extra_placement_spec)
        constraints = list(limits.constraints) + list(extra_placement.pop("constraints", []) or [])
        placement = Placement(
            constraints=swarm_constraints(slot.node, constraints), **extra_placement
        )
        task_kwargs: dict[str, Any] = dict(
            container_spec=ContainerSpec(**container_kwargs),
            resources=resources,
            networks=[self.network_name] if self.network_name else [],
            placement=placement,
        )
        task_kwargs.update({k: v for k, v in self.extra_task_spec.items() if k != "placement"})
        endpoint: dict[str, Any] = {}
        if not self.use_internal_ip:
            endpoint["ports"] = [
                {
                    "Protocol": "tcp",
                    "TargetPort": self.port,
                    "PublishMode": self.publish_mode,
                }
            ]
        endpoint.update(self.extra_endpoint_spec)
        create_kwargs = dict(self.extra_create_kwargs)
        create_kwargs.update(
            task_template=TaskTemplate(**task_kwargs),
            endpoint_spec=EndpointSpec(**endpoint),
            name=self.service_name,
            labels={**(create_kwargs.get("labels") or {}), **service_labels},
        )
        service = await self.docker("create_service", **create_kwargs)
        deadline = asyncio.get_running_loop().time() + self.task_wait_timeout
        while not await self.docker("tasks", filters={"service": self.service_name}):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"Swarm created no task for {self.service_name}")
            await asyncio.sleep(0.5)
        return service

    async def get_ip_and_port(self) -> tuple[str, int]:
        """Where the proxy reaches the server: the task's node and its host-mode port."""
        if self.use_internal_ip or self.use_internal_hostname or self.publish_mode != "host":
            return await super().get_ip_and_port()
        task = await self.get_task()
        if task is None:
            raise RuntimeError(f"Service {self.service_name} has no task")
        ports = (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or []
        published = [p["PublishedPort"] for p in ports if p.get("TargetPort") == self.port]
        if not published:
            raise RuntimeError(f"Task of {self.service_name} publishes no port {self.port}")
        info = await self.docker("info")
        if task.get("NodeID") == info.get("Swarm", {}).get("NodeID"):
            return self.host_ip, int(published[0])
        node = await self.docker("inspect_node", task["NodeID"])
        return node["Status"]["Addr"], int(published[0])
