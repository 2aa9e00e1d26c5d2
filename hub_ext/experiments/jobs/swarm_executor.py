"""The ``docker`` executor on a Swarm: each job is a one-task service that never restarts.

Everything :mod:`.docker_executor` promises holds, with Swarm choosing the node: the job's
memory and CPUs are both limited and *reserved*, so Swarm places the task only on a node with
room (and says why it waits while none has); ``constraints`` narrow the nodes; a job with GPUs
is pinned to the node whose devices :func:`latticehub.gpus.assign_gpus` picked. The task runs as
the job's uid with no capabilities, a read-only root, a pids limit and an init process;
``no-new-privileges`` (which Swarm services cannot ask for before Engine API 1.44) is set by
``setpriv --no-new-privs`` in front of the job's shell, so the image needs util-linux's
``setpriv`` (Debian and Ubuntu images have it).

State comes from the service's task (:mod:`.swarm_states`); labels on the service and markers
in the service's ``state_dir`` make a restarted service re-attach. A cancel or a time limit
scales the service to 0: Swarm sends SIGTERM, then SIGKILL after ``kill_grace_s``. Two things
need the task on this executor's own node: the checkpoint warning (SIGUSR1 before the time
limit) and the out-of-memory flag (elsewhere an exit 137 is reported as "killed, perhaps out
of memory"). The jobs directory must be on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker.errors
from docker.types import (
    ContainerSpec,
    DriverConfig,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from latticehub import labels as server_labels
from latticehub.gpus import GpuUse

from .docker_executor import RUN, DockerExecutor
from .docker_states import GPUS, GROUP, HUB, JOB, NODE, TIME_S, USER, WARN_S, warn_seconds
from .executors import ExecutorError, Observed
from .states import JobState
from .store import Job
from .swarm_states import (
    ENDED,
    latest_task,
    observe_stopped,
    observe_task,
    parse_time,
    task_state,
)

#: In front of the job's shell: no process of the job can gain privileges (setuid binaries).
NO_NEW_PRIVS = ("setpriv", "--no-new-privs")
#: The job's HOME, made by the job in its ``/tmp`` tmpfs: a tmpfs of its own over the image's
#: home would belong to root (Swarm's tmpfs mounts take no uid or gid on Engine API 1.41).
SWARM_HOME = "/tmp/home"
MAKE_HOME = 'mkdir -p -m 700 "$HOME" && '


class SwarmJobExecutor(DockerExecutor):
    """Jobs as Swarm services, at most ``max_concurrent`` admitted at a time.

    Takes :class:`DockerExecutor`'s arguments (``network``: an attachable swarm-scope
    network, or '' for none: the job then reaches the tracking service through the node's
    gateway), plus:

    Args:
        constraints: Swarm placement constraints of every job, e.g. ``["node.labels.jobs==1"]``.
        **kwargs: as for :class:`DockerExecutor`.
    """

    def __init__(self, *, constraints: Sequence[str] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.constraints = list(constraints)
        self._hostnames: dict[str, str] = {}  # node id -> host name
        self._local_node_id: str | None = None
        self._stopped: set[str] = set()  # services scaled to 0

    # -- engine facts --------------------------------------------------------------------------
    async def _hostname(self, node_id: str) -> str:
        if node_id and node_id not in self._hostnames:
            for n in await self._call("nodes"):
                self._hostnames[n["ID"]] = (n.get("Description") or {}).get("Hostname", n["ID"])
        return self._hostnames.get(node_id, "")

    async def _local_node(self) -> str:
        if self._local_node_id is None:
            swarm = (await self._call("info")).get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                raise ExecutorError(
                    "this Docker engine is not part of an active Swarm: run `docker swarm init` "
                    "(or join one), or use the plain docker executor (JobsConfig.docker_swarm)"
                )
            self._local_node_id = str(swarm.get("NodeID") or "")
        return self._local_node_id

    async def _list(self) -> dict[str, dict[str, Any]]:
        """This service's job services, by job id, each with its latest task under ``Task``."""
        services = await self._call("services", filters={"label": self._selector})
        if not services:
            return {}
        tasks: dict[str, list[dict[str, Any]]] = {}
        for task in await self._call("tasks", filters={"service": [s["ID"] for s in services]}):
            tasks.setdefault(task.get("ServiceID", ""), []).append(task)
        found = {}
        for s in services:
            spec_labels = (s.get("Spec") or {}).get("Labels") or {}
            if spec_labels.get(JOB):
                found[spec_labels[JOB]] = {
                    "Id": s["ID"],
                    "Labels": spec_labels,
                    "Spec": s.get("Spec") or {},
                    "Task": latest_task(tasks.get(s["ID"], [])),
                }
        return found

    @staticmethod
    def _scaled_down(record: Mapping[str, Any]) -> bool:
        """Scaled to 0 with no task left (Swarm deletes a scaled-down service's task)."""
        mode = ((record.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}
        return record.get("Task") is None and mode.get("Replicas") == 0

    @classmethod
    def _live(cls, record: Mapping[str, Any]) -> bool:
        return task_state(record.get("Task")) not in ENDED and not cls._scaled_down(record)

    # -- submit and admission ------------------------------------------------------------------
    async def submit(self, job: Job, script: Path) -> str:
        """As :meth:`DockerExecutor.submit`, on a Swarm manager."""
        await self._local_node()
        return await super().submit(job, script)

    async def check_gpus(self, job: Job) -> None:
        """More GPUs than any node of the inventory has is refused (any node may run it)."""
        gpus = int(job.resources.get("gpus") or 0)
        most = max((len(ids) for ids in self.gpu_inventory.values()), default=0)
        if gpus > most:
            raise ExecutorError(
                f"no node has {gpus} GPU(s) in this executor's gpu_inventory (at most {most}): "
                "ask for fewer or use slurm"
            )

    # admission: DockerExecutor._admit, with Swarm choosing the node (GPUs: any node's)
    launch_failure = "the job's service could not be created"

    @classmethod
    def _holds_slot(cls, record: Mapping[str, Any]) -> bool:
        return cls._live(record)

    async def _default_node(self) -> str:
        return ""  # Swarm places the task

    async def _gpu_nodes(self) -> list[str] | None:
        return None  # every node of the inventory

    async def _launch(self, job: Job, node: str, gpu_ids: Sequence[str]) -> Observed:
        await self._create_service(job, node, gpu_ids)
        return Observed(JobState.QUEUED, "waiting for Swarm to place the task")

    async def _gpus_in_use(self, live: Iterable[Mapping[str, Any]]) -> list[GpuUse]:
        """GPUs of this service's live jobs and of the spawner's Swarm servers, by node."""
        use = [
            GpuUse(r["Labels"].get(NODE, ""), tuple(r["Labels"][GPUS].split(",")), shared=False)
            for r in live if r["Labels"].get(GPUS)
        ]  # fmt: skip
        for s in await self._call("services", filters={"label": server_labels.GPUS}):
            lab = (s.get("Spec") or {}).get("Labels") or {}
            ids = tuple(g for g in lab.get(server_labels.GPUS, "").split(",") if g)
            if ids:
                use.append(
                    GpuUse(lab.get(server_labels.NODE, ""), ids,
                           lab.get(server_labels.GPU_SHARED) == "1")
                )  # fmt: skip
        return use

    def task_template(self, job: Job, node: str, gpu_ids: Sequence[str]) -> TaskTemplate:
        """The job's task: limits and reservations, hardening, its one bind mount."""
        uid, gid = self.job_owner(job)
        res = job.resources
        script = (Path(job.workdir) / "job.sh").read_text(errors="replace")
        job_labels = {
            **self.extra_labels,
            HUB: self.hub_id, JOB: job.id, USER: job.user, GROUP: job.group, NODE: node,
            TIME_S: str(int(res.get("time_s") or 0)), WARN_S: str(warn_seconds(script)),
            GPUS: ",".join(gpu_ids),
        }  # fmt: skip
        env = {"HOME": SWARM_HOME}
        if gpu_ids:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        mounts = [
            Mount(self.job_root, str(job.workdir), type="bind", read_only=False),
            Mount("/tmp", None, type="tmpfs", tmpfs_mode=0o1777),
        ]
        spec = ContainerSpec(
            self.image_for(job),
            command=[*NO_NEW_PRIVS, "bash", "-c", MAKE_HOME + RUN.format(root=self.job_root)],
            user=f"{uid}:{gid}",
            env=env,
            workdir=self.job_root,
            labels=job_labels,
            mounts=mounts,
            read_only=self.read_only_root,
            init=True,
            cap_drop=["ALL"],
            stop_signal="SIGTERM",
            stop_grace_period=int(self.kill_grace_s * 1e9),
        )
        mem = int(res.get("mem_mb") or 0) * 2**20
        nano = int(float(res.get("cpus") or 0) * 1e9)
        resources = Resources(
            mem_limit=mem or None,
            mem_reservation=mem or None,
            cpu_limit=nano or None,
            cpu_reservation=nano or None,
        )
        resources.setdefault("Limits", {})["Pids"] = self.pids_limit
        constraints = list(self.constraints)
        if node:
            constraints.append(f"node.hostname=={node}")
        return TaskTemplate(
            spec,
            resources=resources,
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=constraints) if constraints else None,
            log_driver=DriverConfig("json-file", {"max-size": "1m", "max-file": "1"}),
            networks=[self.network] if self.network else None,
        )

    async def _create_service(self, job: Job, node: str, gpu_ids: Sequence[str]) -> None:
        template = self.task_template(job, node, gpu_ids)
        try:
            await self._call(
                "create_service",
                template,
                name=self.container_name(job),
                labels=dict(template["ContainerSpec"]["Labels"]),
                mode=ServiceMode("replicated", replicas=1),
            )
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: it exists already (a restart mid-create)
                raise
        self.markers.write(job, "started", self.container_name(job))

    # -- poll (DockerExecutor.poll, with services for containers) -----------------------------
    async def _observe(self, job: Job, record: Mapping[str, Any], now: float) -> Observed:
        """The job's state; stops it at its time limit or after a cancel."""
        if self._scaled_down(record):
            return observe_stopped(
                cancelled=self.markers.text(job, "cancelled"),
                timed_out=self.markers.text(job, "timeout"),
            )
        task = record.get("Task")
        state = task_state(task)
        node = await self._hostname(str((task or {}).get("NodeID") or ""))
        cancelled = self.markers.read(job, "cancelled")
        if state == "running":
            await self._enforce(job, record, task, now, cancelled)
        elif cancelled and state not in ENDED:
            await self._stop(record)
        container = ((task or {}).get("Status") or {}).get("ContainerStatus") or {}
        oom = False
        if state in ENDED and container.get("ExitCode") == 137:
            oom = await self._oom_killed(task or {}, container.get("ContainerID", ""))
        limits = ((record.get("Spec") or {}).get("TaskTemplate") or {}).get("Resources") or {}
        return observe_task(
            task, node=node, mem_bytes=int((limits.get("Limits") or {}).get("MemoryBytes") or 0),
            cancelled=cancelled[0] if cancelled else None,
            timed_out=self.markers.text(job, "timeout"), oom_killed=oom,
        )  # fmt: skip

    async def _enforce(
        self,
        job: Job,
        record: Mapping[str, Any],
        task: Any,
        now: float,
        cancelled: tuple[str, float] | None,
    ) -> None:
        lab = record.get("Labels") or {}
        started = parse_time(str((task.get("Status") or {}).get("Timestamp") or "")) or now
        limit, warn = int(lab.get(TIME_S) or 0), int(lab.get(WARN_S) or 0)
        if cancelled is None and limit and now >= started + limit:
            self.markers.write(
                job, "timeout", f"TIMEOUT: the job reached its time limit of {limit} s "
                "(ask for more time, or checkpoint and resubmit)",
            )  # fmt: skip
        if cancelled or self.markers.text(job, "timeout"):
            await self._stop(record)
        elif warn and limit and now >= started + limit - warn:
            await self._warn(job, task)

    async def _stop(self, record: Mapping[str, Any]) -> None:
        """Scale the service to 0: SIGTERM, then SIGKILL after the grace period."""
        if record["Id"] in self._stopped:
            return
        with contextlib.suppress(docker.errors.APIError):  # gone meanwhile
            info = await self._call("inspect_service", record["Id"])
            await self._call(
                "update_service",
                record["Id"],
                info["Version"]["Index"],
                mode=ServiceMode("replicated", replicas=0),
                fetch_current_spec=True,
            )
            self._stopped.add(record["Id"])

    async def _warn(self, job: Job, task: Mapping[str, Any]) -> None:
        """SIGUSR1 (checkpoint now) to a task on this node; elsewhere Swarm cannot signal."""
        if "SIGUSR1" in self._signalled.get(job.id, set()):
            return
        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if container and task.get("NodeID") == await self._local_node():
            await self._signal(job.id, container, "SIGUSR1")
        else:
            self._signalled.setdefault(job.id, set()).add("SIGUSR1")  # not possible: once

    async def _oom_killed(self, task: Mapping[str, Any], container: str) -> bool:
        if not container or task.get("NodeID") != await self._local_node():
            return False
        try:
            info = await self._call("inspect_container", container)
        except docker.errors.APIError:
            return False
        return bool((info.get("State") or {}).get("OOMKilled"))

    async def _remove_done(self, found: Mapping[str, Mapping[str, Any]], active: set[str]) -> None:
        for job_id, record in found.items():
            if job_id in active or self._live(record):
                continue
            with contextlib.suppress(docker.errors.APIError):
                await self._call("remove_service", record["Id"])
            self._signalled.pop(job_id, None)
            self._stopped.discard(record["Id"])
            mounts = ((record.get("Spec") or {}).get("TaskTemplate") or {}).get(
                "ContainerSpec", {}
            ).get("Mounts") or []
            workdir = next(
                (m.get("Source", "") for m in mounts if m.get("Target") == self.job_root), ""
            )
            if workdir:
                self.markers.clear(job_id, workdir)

    # -- cancel --------------------------------------------------------------------------------
    async def cancel(self, job: Job) -> None:
        """Stop the job: the service is scaled to 0 (SIGTERM, SIGKILL after the grace)."""
        self._pending.pop(job.id, None)
        try:
            info = await self._call("inspect_service", self.container_name(job))
        except docker.errors.NotFound:
            info = None
        if info is not None:
            tasks = await self._call("tasks", filters={"service": info["ID"]})
            if task_state(latest_task(tasks)) in ENDED:
                return
        self.markers.write(job, "cancelled", "CANCELLED")
        if info is not None:
            await self._stop({"Id": info["ID"]})
