"""The ``docker`` executor: each job is a container from the group's single-user image.

The container runs as the job's user (``uid_for``), with no capabilities, ``no-new-privileges``,
a read-only root, a pids limit, and the job's memory (no swap), CPUs and GPUs (device ids from
:func:`latticehub.gpus.assign_gpus`) enforced by the engine. Its only mount is the job's directory
at :attr:`DockerExecutor.job_root`; nothing of the service's environment reaches it.

Everything a restarted service needs is on the engine or in files the job cannot reach: labels
on the containers (one list call per poll finds them, running or ended), time limits counted
from the container's creation, and markers (``cancelled``, ``timeout``, ``started``) in the
service's ``state_dir``, never in the job's directory, which the job can write. Queued jobs have
no container: the service's active jobs (passed to :meth:`DockerExecutor.poll`) are the queue.
An ended container is removed at the first poll after its outcome was reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.types import DeviceRequest, LogConfig, Mount

from latticehub import labels as server_labels
from latticehub.gpus import GpuUse, NoGpuAvailable, assign_gpus

from ...common.dblocks import AdvisoryLock
from .docker_states import (
    ENDED,
    GPUS,
    GROUP,
    HUB,
    JOB,
    LIVE,
    NODE,
    TIME_S,
    USER,
    WARN_S,
    observe_inspect,
    warn_seconds,
)
from .executors import Executor, ExecutorError, Observed
from .states import JobState
from .store import Job

#: The container's command: the job's streams go to its directory, not the container log.
RUN = "exec bash {root}/job.sh >>{root}/stdout.log 2>>{root}/stderr.log"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
STATE_DIRNAME = ".docker-executor"


def default_uid(user: str) -> tuple[int, int]:
    """Every user is the image's ``jovyan`` (uid 1000, gid 100 ``users``)."""
    return 1000, 100


#: Seconds a replica waits for another one to finish starting jobs before it skips a round.
ADMISSION_WAIT_S = 10.0


class _Markers:
    """Files ``<state_dir>/<job id>.<kind>`` written by the service only (never mounted)."""

    def __init__(self, state_dir: Path | None):
        self.state_dir = state_dir

    def path(self, job_id: str, workdir: str, kind: str) -> Path:
        base = self.state_dir or Path(workdir).parent / STATE_DIRNAME
        return base / f"{job_id}.{kind}"

    def read(self, job: Job, kind: str) -> tuple[str, float] | None:
        """The marker's text and its time, or None."""
        path = self.path(job.id, job.workdir, kind)
        try:
            return path.read_text().strip(), path.stat().st_mtime
        except OSError:
            return None

    def text(self, job: Job, kind: str) -> str | None:
        found = self.read(job, kind)
        return found[0] if found else None

    def write(self, job: Job, kind: str, text: str) -> None:
        path = self.path(job.id, job.workdir, kind)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # the first reason stays
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)

    def clear(self, job_id: str, workdir: str) -> None:
        for kind in ("started", "cancelled", "timeout"):
            with contextlib.suppress(OSError):
                self.path(job_id, workdir, kind).unlink()


class DockerExecutor(Executor):
    """Jobs as containers on one Docker engine, at most ``max_concurrent`` at a time.

    Args:
        image_for: job -> the image to run (the group's allowed single-user image).
        network: the Docker network the job joins (it reaches the tracking service there).
        client_factory: makes the Docker client (``docker.from_env``); called once, in a
            worker thread, as every Docker call is (the event loop never blocks on the engine).
        uid_for: Hub user name -> ``(uid, gid)`` the job runs as and that owns its directory;
            uid 0 is refused. Default: ``(1000, 100)``, the image's ``jovyan``.
        hub_id: marks this service's containers (label and name prefix): services sharing an
            engine need different ids. Lower-case letters, digits, ``_ . -``.
        labels: extra labels for every job container (they cannot override the executor's).
        pids_limit: most processes in a job (fork-bomb guard).
        gpu_inventory: node -> GPU device ids, e.g. ``{"gpu01": ["0", "1"]}`` (empty: no GPUs).
            GPUs held by running jobs and by the spawner's servers are not handed out again.
        node_name: this engine's node in ``gpu_inventory`` and in reasons (None: its host name).
        max_concurrent: jobs running at once; later ones stay QUEUED until a slot frees.
        kill_grace_s: seconds between SIGTERM and SIGKILL when a job is cancelled or timed out.
        state_dir: where the cancel/timeout/started markers go (None: ``.docker-executor``
            beside the job directories). Not mounted into any container.
        job_python: the interpreter in the image (the payload's ``{python}``).
        tracking_url: the service's URL as a job on ``network`` sees it (None: the manager's).
        home: the job's ``HOME`` (a tmpfs owned by the job's uid).
        read_only_root: mount the image read-only (images that write outside ``/tmp``, the
            home and ``/job`` need False).
        log: logger.
    """

    name = "docker"
    job_root = "/job"

    def __init__(
        self,
        *,
        image_for: Callable[[Job], str],
        network: str,
        client_factory: Callable[[], Any] = docker.from_env,
        uid_for: Callable[[str], tuple[int, int]] = default_uid,
        hub_id: str = "latticehub",
        labels: Mapping[str, str] | None = None,
        pids_limit: int = 512,
        gpu_inventory: Mapping[str, Sequence[str]] | None = None,
        node_name: str | None = None,
        max_concurrent: int = 4,
        kill_grace_s: float = 10.0,
        state_dir: str | Path | None = None,
        job_python: str = "python",
        tracking_url: str | None = None,
        home: str = "/home/jovyan",
        read_only_root: bool = True,
        log: logging.Logger | None = None,
    ):
        if not NAME_RE.fullmatch(hub_id):
            raise ValueError(
                f"hub_id={hub_id!r} cannot name containers: use 1 to 40 lower-case letters, "
                "digits and _ . - (starting with a letter or digit)"
            )
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent={max_concurrent} must be at least 1")
        self.image_for = image_for
        self.network = network
        self.client_factory = client_factory
        self.uid_for = uid_for
        self.hub_id = hub_id
        self.extra_labels = dict(labels or {})
        self.pids_limit = pids_limit
        self.gpu_inventory = {k: list(v) for k, v in (gpu_inventory or {}).items()}
        self.node_name = node_name
        self.max_concurrent = max_concurrent
        self.kill_grace_s = kill_grace_s
        self.markers = _Markers(Path(state_dir) if state_dir else None)
        self.job_python = job_python
        self.tracking_url = tracking_url
        self.home = home
        self.read_only_root = read_only_root
        self.log = log or logging.getLogger("latticehub.jobs.docker")
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lh-docker-jobs")
        self._api: Any = None
        self._lock = asyncio.Lock()
        self._pending: dict[str, Job] = {}  # submitted here, not yet started
        self._failed: dict[str, Observed] = {}  # could not start: reported at the next poll
        self._signalled: dict[str, set[str]] = {}  # job id -> signals sent (TERM, USR1)
        self._kick_task: asyncio.Future | None = None
        self._kick_wanted = False
        #: replicas over one PostgreSQL database: one of them at a time lists and starts
        #: (the service sets it; :data:`~hub_ext.common.dblocks.JOB_ADMIT_KEY`)
        self.admission_lock: AdvisoryLock | None = None

    # -- plumbing ----------------------------------------------------------------------------
    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.api.<method>(...)`` in the worker pool; engine trouble is an ExecutorError."""
        loop = asyncio.get_running_loop()

        def call() -> Any:
            if self._api is None:
                client = self.client_factory()
                self._api = getattr(client, "api", client)
            return getattr(self._api, method)(*args, **kwargs)

        try:
            return await loop.run_in_executor(self._pool, call)
        except docker.errors.APIError:
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise ExecutorError(
                f"cannot reach the Docker engine ({e}): is dockerd running, and DOCKER_HOST right?"
            ) from e

    @functools.cached_property
    def _selector(self) -> str:
        return f"{HUB}={self.hub_id}"

    def container_name(self, job: Job) -> str:
        """The job's container name (also its external id)."""
        return f"lhjob-{self.hub_id}-{job.id}"

    async def _node(self) -> str:
        if self.node_name is None:
            self.node_name = str((await self._call("info")).get("Name") or "docker")
        return self.node_name

    async def _list(self) -> dict[str, dict[str, Any]]:
        """This service's job containers (any state), by job id: the one list call per poll."""
        found = await self._call("containers", all=True, filters={"label": self._selector})
        return {c["Labels"][JOB]: c for c in found if (c.get("Labels") or {}).get(JOB)}

    async def _signal(self, job_id: str, container: str, sig: str) -> None:
        with contextlib.suppress(docker.errors.APIError):  # it ended meanwhile
            await self._call("kill", container, signal=sig)
        self._signalled.setdefault(job_id, set()).add(sig)

    # -- the job's directory ---------------------------------------------------------------
    def job_owner(self, job: Job) -> tuple[int, int]:
        """``(uid, gid)`` the job runs as and that must own its directory (never root).

        Raises:
            ExecutorError: when ``uid_for`` maps the user to root or to something not a uid.
        """
        uid, gid = self.uid_for(job.user)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (uid, gid)):
            raise ExecutorError(f"uid_for({job.user!r}) gave {(uid, gid)!r}, not (uid, gid)")
        if uid == 0:
            raise ExecutorError(
                f"uid_for({job.user!r}) gave uid 0: jobs never run as root; map the user to "
                "their own uid (or leave the default 1000)"
            )
        return uid, gid

    def prepare_workdir(self, job: Job) -> None:
        """Give the job's directory (recursively, links not followed) to its uid, mode 0700.

        :meth:`submit` calls it; files already owned right are left alone.

        Raises:
            ExecutorError: when the directory is not a real directory or cannot be chowned.
        """
        uid, gid = self.job_owner(job)
        work = Path(job.workdir)
        if not work.is_absolute() or not stat.S_ISDIR(os.lstat(work).st_mode):
            raise ExecutorError(f"the job directory {work} must be an absolute, real directory")
        try:
            for top, dirs, files in os.walk(work):
                for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                    st = os.lstat(name)
                    if (st.st_uid, st.st_gid) != (uid, gid):
                        os.chown(name, uid, gid, follow_symlinks=False)
            os.chmod(work, 0o700)
        except PermissionError as e:
            raise ExecutorError(
                f"cannot give the job directory {work} to uid {uid}: {e}; run the service as "
                "root or with CAP_CHOWN, or map users to the service's own uid with uid_for"
            ) from e

    # -- submit --------------------------------------------------------------------------------
    async def submit(self, job: Job, script: Path) -> str:
        """Check the job, then start it in the background (or leave it QUEUED).

        Returns:
            The container's name (stable before the container exists; Docker's API takes it
            wherever it takes an id).

        Raises:
            ExecutorError: for a script outside the job directory, a multi-node job, an image
                that is not on the engine, more GPUs than any node has, or a directory that
                cannot be given to the job's uid.
        """
        work = Path(job.workdir)
        if Path(script) != work / "job.sh":
            raise ExecutorError(f"the docker executor runs {work}/job.sh, not {script}")
        if int(job.resources.get("nodes") or 1) != 1:
            raise ExecutorError("the docker executor runs one-node jobs: ask for nodes=1")
        await self.check_gpus(job)
        image = self.image_for(job)
        try:
            await self._call("inspect_image", image)
        except docker.errors.ImageNotFound:
            raise ExecutorError(
                f"image {image!r} is not on this Docker engine: build it (images/build.sh) or "
                "pull it; jobs run in their group's single-user image"
            ) from None
        self.prepare_workdir(job)
        self._pending[job.id] = job
        self._kick()
        return self.container_name(job)

    async def check_gpus(self, job: Job) -> None:
        """Refuse a job that asks for more GPUs than this engine's node has."""
        gpus = int(job.resources.get("gpus") or 0)
        if gpus:
            node = await self._node()
            have = len(self.gpu_inventory.get(node, ()))
            if have < gpus:
                raise ExecutorError(
                    f"node {node} has {have} GPU(s) in this executor's gpu_inventory, the job "
                    f"asks for {gpus}: ask for at most {have} or use slurm"
                )

    def _kick(self) -> None:
        """Start pending jobs soon, without making submit wait (one admission at a time)."""
        self._kick_wanted = True
        if self._kick_task is None or self._kick_task.done():
            self._kick_task = asyncio.ensure_future(self._kick_loop())

    async def _kick_loop(self) -> None:
        while self._kick_wanted:
            self._kick_wanted = False
            try:
                async with self._lock, self._admission() as admitting:
                    if not admitting:
                        continue  # another replica is busy starting jobs: the poll retries
                    found = await self._list()
                    await self._admit(
                        [j for j in self._pending.values() if j.id not in found], found
                    )
            except Exception:  # noqa: BLE001 - the next poll retries; keep the reason in the log
                self.log.exception("starting queued docker jobs failed")

    @contextlib.asynccontextmanager
    async def _admission(self) -> AsyncIterator[bool]:
        """Hold :attr:`admission_lock` for one list-then-start; yields False if not got.

        Replicas that each listed the containers and then started jobs into the slots they
        saw free would together start more than ``max_concurrent`` jobs, or one job twice.
        Another replica holds the lock only while it starts jobs: this waits up to
        :data:`ADMISSION_WAIT_S` for it.
        """
        lock = self.admission_lock
        if lock is None or not lock.shared:
            yield True
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ADMISSION_WAIT_S
        got = False
        while True:
            try:
                got = await loop.run_in_executor(self._pool, lock.try_acquire)
            except Exception as e:  # noqa: BLE001 - no database: start nothing, say why
                self.log.warning("cannot take the job admission lock: %s", e)
                break
            if got or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        if not got:
            self.log.info("job admission skipped this round: another replica is starting jobs")
        try:
            yield got
        finally:
            if got:
                await loop.run_in_executor(self._pool, lock.release)

    async def _admit(
        self, candidates: Iterable[Job], found: Mapping[str, dict[str, Any]]
    ) -> dict[str, Observed]:
        """Start queued jobs, oldest first, while slots (and GPUs) are free."""
        out: dict[str, Observed] = {}
        candidates = list(candidates)
        ids_here = {j.id for j in candidates}  # a created container of a candidate is no slot yet
        live = [r for k, r in found.items() if self._holds_slot(r) and k not in ids_here]
        admitted = len(live)
        gpu_use: list[GpuUse] | None = None
        for job in sorted(candidates, key=lambda j: (j.created, j.id)):
            if self.markers.read(job, "cancelled") or job.id in self._failed:
                continue
            if admitted >= self.max_concurrent:
                out[job.id] = Observed(
                    JobState.QUEUED,
                    f"waiting for a free slot ({self.max_concurrent} docker jobs at most)",
                )
                continue
            gpus = int(job.resources.get("gpus") or 0)
            node, ids = await self._default_node(), tuple[str, ...]()
            if gpus:
                gpu_use = gpu_use if gpu_use is not None else await self._gpus_in_use(live)
                try:
                    got = assign_gpus(
                        inventory=self.gpu_inventory, in_use=gpu_use, count=gpus, shared=False,
                        nodes=await self._gpu_nodes(),
                    )  # fmt: skip
                except NoGpuAvailable as e:
                    out[job.id] = Observed(JobState.QUEUED, f"waiting for {gpus} GPU(s): {e}")
                    continue
                assert got is not None  # gpus > 0
                node, ids = got.node, got.ids
                gpu_use.append(GpuUse(node=node, ids=ids, shared=False))
            try:
                seen = await self._launch(job, node, ids)
            except (docker.errors.APIError, ExecutorError, OSError) as e:
                self.log.warning("job %s: %s: %s", job.id, self.launch_failure, e)
                text = getattr(e, "explanation", None) or str(e)
                out[job.id] = self._failed[job.id] = Observed(
                    JobState.FAILED, f"{self.launch_failure}: {text}"
                )
                self._pending.pop(job.id, None)
                continue
            self._pending.pop(job.id, None)
            admitted += 1
            out[job.id] = seen
        return out

    #: the reason of a job whose container could not be started (engine's message follows)
    launch_failure = "the job's container could not start"

    @staticmethod
    def _holds_slot(container: Mapping[str, Any]) -> bool:
        return container.get("State") in LIVE

    async def _default_node(self) -> str:
        return await self._node()

    async def _gpu_nodes(self) -> list[str] | None:
        """The nodes whose GPUs this executor hands out: this engine's."""
        return [await self._node()]

    async def _launch(self, job: Job, node: str, gpu_ids: Sequence[str]) -> Observed:
        await self._create_and_start(job, node, gpu_ids)
        return Observed(JobState.RUNNING, f"running on {node}", node=node)

    async def _gpus_in_use(self, live: Iterable[Mapping[str, Any]]) -> list[GpuUse]:
        """GPUs of this service's live jobs and of running single-user servers on this engine.

        Whatever node their labels name, containers of this engine hold GPUs of this node.
        """
        node = await self._node()
        use = [
            GpuUse(node, tuple(c["Labels"][GPUS].split(",")), shared=False)
            for c in live if c["Labels"].get(GPUS)
        ]  # fmt: skip
        servers = await self._call(
            "containers", filters={"label": server_labels.GPUS, "status": "running"}
        )
        for c in servers:
            lab = c.get("Labels") or {}
            ids = tuple(g for g in lab.get(server_labels.GPUS, "").split(",") if g)
            if ids:
                use.append(GpuUse(node, ids, lab.get(server_labels.GPU_SHARED) == "1"))
        return use

    def create_kwargs(self, job: Job, node: str, gpu_ids: Sequence[str]) -> dict[str, Any]:
        """``create_container`` arguments for a job, less ``host_config`` (see :meth:`host_config`).

        Nothing of the service's environment is passed, and the SDK's proxy settings are not
        injected (``use_config_proxy=False``).
        """
        uid, gid = self.job_owner(job)
        res = job.resources
        script = (Path(job.workdir) / "job.sh").read_text(errors="replace")
        job_labels = {
            HUB: self.hub_id, JOB: job.id, USER: job.user, GROUP: job.group, NODE: node,
            TIME_S: str(int(res.get("time_s") or 0)), WARN_S: str(warn_seconds(script)),
            GPUS: ",".join(gpu_ids),
        }  # fmt: skip
        return {
            "image": self.image_for(job),
            "name": self.container_name(job),
            "entrypoint": ["bash", "-c", RUN.format(root=self.job_root)],
            "command": [],
            "user": f"{uid}:{gid}",
            "environment": {"HOME": self.home},
            "working_dir": self.job_root,
            "labels": {**self.extra_labels, **job_labels},
            "use_config_proxy": False,
        }

    def host_config(self, job: Job, gpu_ids: Sequence[str]) -> dict[str, Any]:
        """Host-config keys of a job's container: limits, hardening, its one mount."""
        uid, gid = self.job_owner(job)
        res = job.resources
        mem = int(res.get("mem_mb") or 0) * 2**20
        config: dict[str, Any] = {
            "mounts": [Mount(self.job_root, str(job.workdir), type="bind", read_only=False)],
            "network_mode": self.network,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": self.read_only_root,
            "tmpfs": {
                "/tmp": "rw,nosuid,nodev,mode=1777",
                self.home: f"rw,nosuid,nodev,uid={uid},gid={gid},mode=0700",
            },
            "init": True,  # tini as pid 1: signals reach the payload, zombies are reaped
            "pids_limit": self.pids_limit,
            "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        }
        if mem:
            config["mem_limit"] = config["memswap_limit"] = mem
        if res.get("cpus"):
            config["nano_cpus"] = int(float(res["cpus"]) * 1e9)
        if gpu_ids:
            config["device_requests"] = [
                DeviceRequest(driver="nvidia", device_ids=list(gpu_ids), capabilities=[["gpu"]])
            ]
        return config

    async def _create_and_start(self, job: Job, node: str, gpu_ids: Sequence[str]) -> None:
        kwargs = self.create_kwargs(job, node, gpu_ids)
        kwargs["host_config"] = await self._call(
            "create_host_config", **self.host_config(job, gpu_ids)
        )
        name = kwargs["name"]
        try:
            await self._call("create_container", **kwargs)
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: it exists already (a restart mid-start)
                raise
        try:
            await self._call("start", name)
        except docker.errors.APIError:
            with contextlib.suppress(docker.errors.APIError):
                await self._call("remove_container", name, force=True)
            raise
        self.markers.write(job, "started", name)

    # -- poll ----------------------------------------------------------------------------------
    async def poll(self, jobs: Sequence[Job]) -> dict[str, Observed]:
        """States of ``jobs`` from one list call (plus one inspect per ended container).

        Also starts queued jobs into free slots, enforces time limits and cancel grace periods,
        and removes ended containers of jobs that are no longer active (their outcome has been
        recorded).
        """
        async with self._lock, self._admission() as admitting:
            found = await self._list()
            active = {j.id for j in jobs}
            await self._remove_done(found, active)
            observed: dict[str, Observed] = {}
            waiting: list[Job] = []
            now = time.time()
            for job in jobs:
                record = found.get(job.id)
                seen: Observed | None
                if job.id in self._failed:
                    seen = self._failed.pop(job.id)
                elif record is None:
                    seen = self._absent(job)
                else:
                    seen = await self._observe(job, record, now)
                if seen is None:
                    waiting.append(job)
                else:
                    observed[job.id] = seen
            if admitting:
                observed.update(await self._admit(waiting, found))
            for job in waiting:
                observed.setdefault(job.id, Observed(JobState.QUEUED, "starting"))
                self._failed.pop(job.id, None)  # reported just now
            return observed

    async def _observe(self, job: Job, container: Mapping[str, Any], now: float) -> Observed | None:
        """The state of a job whose container exists (None: start it now)."""
        node = await self._node()
        state = container.get("State")
        if state in ENDED or state == "removing":
            return await self._ended(job, container, node)
        if state == "created":
            return None  # a restart between create and start: start it now
        return await self._running(job, container, node, now)

    def _absent(self, job: Job) -> Observed | None:
        """A job without a container: ended before it started, vanished, or still to start."""
        cancelled = self.markers.read(job, "cancelled")
        if cancelled:
            return Observed(JobState.KILLED, f"{cancelled[0]} before it started")
        if self.markers.read(job, "started"):
            return Observed(
                JobState.LOST,
                "the job's container vanished (removed outside latticehub, or the engine lost "
                "it); resubmit the job",
            )
        return None

    async def _ended(self, job: Job, container: Mapping[str, Any], node: str) -> Observed:
        try:
            info = await self._call("inspect_container", container["Id"])
        except docker.errors.NotFound:
            return Observed(
                JobState.LOST, "the job's container vanished before its outcome was read"
            )
        return observe_inspect(
            info, node=node, cancelled=self.markers.text(job, "cancelled"),
            timed_out=self.markers.text(job, "timeout"),
        )  # fmt: skip

    async def _running(
        self, job: Job, container: Mapping[str, Any], node: str, now: float
    ) -> Observed:
        """RUNNING, after enforcing the time limit and a cancel's grace period."""
        lab = container.get("Labels") or {}
        # Created is in whole seconds: +1 so that a limit is never enforced early
        started = float(container["Created"]) + 1 if container.get("Created") else now
        limit = int(lab.get(TIME_S) or 0)
        warn = int(lab.get(WARN_S) or 0)
        sent = self._signalled.get(job.id, set())
        cancelled = self.markers.read(job, "cancelled")
        if cancelled is None and limit and now >= started + limit:
            self.markers.write(
                job, "timeout", f"TIMEOUT: the job reached its time limit of {limit} s "
                "(ask for more time, or checkpoint and resubmit)",
            )  # fmt: skip
        timed_out = self.markers.text(job, "timeout")
        stop_at = cancelled[1] if cancelled else (started + limit if timed_out else None)
        if stop_at is not None:
            if now >= stop_at + self.kill_grace_s:
                await self._signal(job.id, container["Id"], "SIGKILL")
            elif "SIGTERM" not in sent:
                await self._signal(job.id, container["Id"], "SIGTERM")
        elif warn and limit and now >= started + limit - warn and "SIGUSR1" not in sent:
            await self._signal(job.id, container["Id"], "SIGUSR1")  # checkpoint now
        info = {"State": {"Status": container.get("State", "running")}}
        return observe_inspect(
            info, node=node, cancelled=cancelled[0] if cancelled else None, timed_out=timed_out
        )

    async def _remove_done(self, found: Mapping[str, Mapping[str, Any]], active: set[str]) -> None:
        for job_id, container in found.items():
            if job_id in active or container.get("State") not in {*ENDED, "created"}:
                continue
            with contextlib.suppress(docker.errors.APIError):
                await self._call("remove_container", container["Id"], force=True)
            self._signalled.pop(job_id, None)
            workdir = next((m.get("Source", "") for m in container.get("Mounts") or []
                            if m.get("Destination") == self.job_root), "")  # fmt: skip
            if workdir:
                self.markers.clear(job_id, workdir)

    # -- cancel --------------------------------------------------------------------------------
    async def cancel(self, job: Job) -> None:
        """Stop the job: SIGTERM now, SIGKILL after ``kill_grace_s`` (at a later poll).

        A queued job never starts; a job that has ended is left as it is.
        """
        self._pending.pop(job.id, None)
        try:
            info = await self._call("inspect_container", self.container_name(job))
        except docker.errors.NotFound:
            info = None
        status = ((info or {}).get("State") or {}).get("Status")
        if status in ENDED:
            return
        self.markers.write(job, "cancelled", "CANCELLED")
        if status == "created":
            with contextlib.suppress(docker.errors.APIError):
                await self._call("remove_container", self.container_name(job), force=True)
        elif status is not None:
            await self._signal(job.id, self.container_name(job), "SIGTERM")

    def close(self) -> None:
        """Release the worker threads (the containers keep running)."""
        self._pool.shutdown(wait=False)
