"""The job lifecycle: validate, create the QUEUED run, mint the token, submit, poll, cancel.

One :class:`JobManager` per service. Policy (what a group may ask for) lives in
:mod:`.spec`, script text in :mod:`.sbatch`, Slurm states in :mod:`.states`; this module holds
the order of operations and keeps the job, its run and the run's timeline consistent.

Jobs are launched in the request that submits them (:meth:`JobManager.submit`), on the
replica that took the request. With several replicas over one PostgreSQL database, one of
them polls the executors: the one holding the advisory lock
:data:`~hub_ext.common.dblocks.JOB_POLL_KEY` (:attr:`JobManager.poll_lock`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import stat
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...common.dblocks import AdvisoryLock
from ..access import can_write_project, find_project_by_name, require
from ..blobs import BlobStore
from ..store.abstract import AbstractStore, now_ms
from ..store.entities import Param, Project, RunStatus, Tag, Viewer
from ..store.errors import (
    BAD_REQUEST,
    CONFLICT,
    EXECUTOR_UNAVAILABLE,
    JOB_LIMIT_EXCEEDED,
    UNAUTHENTICATED,
    TrackingError,
    invalid,
    not_found,
)
from ..store.registry import AbstractArtifactRegistry
from .executors import Executor, ExecutorError, Observed
from .inputs import INPUTS_DIR, ResolvedInput, copy_inputs, resolve_inputs
from .sbatch import BatchJob, render_batch_script, render_env_file
from .spec import (
    JobInputError,
    JobLimitError,
    JobLimits,
    Resources,
    count_check,
    limits_for,
    validate_job_name,
    validate_resources,
)
from .states import JobState, is_terminal
from .store import AbstractJobStore, Job, JobToken
from .tokens import new_job_token, token_hash

#: Job fields a request may carry.
REQUEST_FIELDS = {"project", "config", "resources", "name", "group"}
#: Seconds a job token outlives the job's time limit.
TOKEN_MARGIN_S = 3600


def default_command() -> list[str]:
    """The payload: train the config into the job's directory, resuming after a requeue.

    ``{python}`` is the job's interpreter: the executor's (``python`` in the image for
    ``docker``), else the manager's ``python``.
    """
    return [
        "{python}",
        "-m",
        "flows.train",
        "--config",
        "{config}",
        "--out",
        "{out}",
        "--resume",
        "true",
    ]


class JobManager:
    """Submits, tracks and cancels jobs.

    Args:
        store: the tracking store (runs, params).
        jobs: the job store.
        executors: executor name -> executor.
        limits: group -> job limits (``"*"`` for everybody else).
        jobs_dir: where each job gets a private directory (shared with batch nodes for Slurm).
        tracking_url: the service's URL as the job sees it.
        command: payload argv with ``{python}``, ``{config}`` and ``{out}`` placeholders.
        python: the job's interpreter where the executor names none (``local``, ``slurm``).
        blobs: the artifact blob store that config data references resolve from.
        registry: the artifact registry (for ``name:v3`` references).
        validate_config: check the config as a ``flows.train`` config before submitting.
        chown_to: Hub user name -> local account that owns the job directory (when jobs run as
            the user); None keeps the service's ownership.
        log: logger.
    """

    def __init__(
        self,
        *,
        store: AbstractStore,
        jobs: AbstractJobStore,
        executors: dict[str, Executor],
        limits: dict[str, JobLimits],
        jobs_dir: Path,
        tracking_url: str,
        command: Sequence[str],
        python: str = sys.executable,
        blobs: BlobStore | None = None,
        registry: AbstractArtifactRegistry | None = None,
        validate_config: bool = True,
        chown_to: Callable[[str], str] | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], int] = now_ms,
        notify: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.notify = notify or (lambda run_id: None)
        self.jobs = jobs
        self.executors = executors
        self.limits = limits
        self.jobs_dir = Path(jobs_dir)
        self.tracking_url = tracking_url
        self.command = list(command)
        self.python = python
        self.blobs = blobs
        self.registry = registry
        self.validate_config = validate_config
        self.chown_to = chown_to
        self.log = log or logging.getLogger("latticehub.jobs")
        self.clock = clock
        self._lock = asyncio.Lock()
        #: held while this manager polls, so that one replica of several polls (None: always)
        self.poll_lock: AdvisoryLock | None = None

    # -- submit --------------------------------------------------------------------------
    def _project_and_group(self, viewer: Viewer, body: dict) -> tuple[Project | None, str, str]:
        """``(project or None, group to charge, name)`` of a submission.

        A new project is made only after every check has passed (:meth:`submit`), so a
        refused job leaves nothing behind.
        """
        name = body.get("project")
        if not isinstance(name, str) or not name.strip():
            raise invalid("project is required: the name of the project to record the run in")
        group = body.get("group")
        if group is not None and not isinstance(group, str):
            raise invalid(f"group must be the name of one of your groups, not {group!r}")
        if group is not None and group not in viewer.groups:
            raise invalid(
                f"you are not a member of group {group!r}: use one of {sorted(viewer.groups)}"
            )
        project = find_project_by_name(self.store, viewer, name)
        if project is None:
            if group is None and len(viewer.groups) == 1:
                group = next(iter(viewer.groups))
            if group is None:
                raise invalid(
                    f"project {name!r} does not exist: say which group owns it with 'group'"
                )
            return None, group, name
        require(can_write_project(viewer, project), f"you may not add runs to project {name!r}")
        charged = project.group or group
        if charged is None:
            if len(viewer.groups) != 1:
                raise invalid(
                    "the project is private: say which of your groups to charge with 'group'"
                )
            charged = next(iter(viewer.groups))
        return project, charged, name

    def _account_owner(self, executor: Executor, user: str) -> tuple[int, int] | None:
        """``(uid, gid)`` of the user's cluster account, for executors that run jobs as it.

        None when the executor owns its job directories itself (``docker``) or no account
        mapping is set. Called before a job exists, so that a missing account is a 400.

        Raises:
            TrackingError: 400 naming the account when it does not exist.
        """
        if self.chown_to is None or type(executor).job_owner is not Executor.job_owner:
            return None
        account = self.chown_to(user)
        try:
            found = pwd.getpwnam(account)
        except KeyError:
            raise invalid(
                f"user {user!r} has no account {account!r} on the batch system, which their "
                f"{executor.name} jobs run as: ask an admin to create it (or to map the user "
                "with JobsConfig.system_username)"
            ) from None
        return found.pw_uid, found.pw_gid

    def _check_config(self, config: Any) -> dict:
        if not isinstance(config, dict):
            raise invalid('config must be an object of training settings, e.g. {"action": "phi4"}')
        if not self.validate_config:
            return config
        from flows.config import ConfigError, make_config

        try:
            checked = make_config({k: v for k, v in config.items() if k not in ("out", "resume")})
        except ConfigError as e:
            raise invalid(f"config: {e}") from None
        return {k: v for k, v in checked.to_dict().items() if k not in ("out", "resume")}

    async def submit(self, viewer: Viewer, body: Any, resubmit_of: str | None = None) -> Job:
        """Validate and launch a job; returns it (QUEUED, or FAILED if the executor refused)."""
        require(viewer.run_id is None, "job tokens cannot submit jobs")
        if not isinstance(body, dict):
            raise invalid("send a JSON object {project, config, resources}")
        unknown = set(body) - REQUEST_FIELDS
        if unknown:
            raise TrackingError(
                f"unknown field(s) {sorted(unknown)}: a job has {sorted(REQUEST_FIELDS)}",
                BAD_REQUEST,
            )
        project, group, project_name = self._project_and_group(viewer, body)
        try:
            limits = limits_for(self.limits, group)
            resources = validate_resources(body.get("resources"), limits, group)
            name = validate_job_name(body.get("name") or "")
        except JobInputError as e:
            raise invalid(str(e)) from None
        config = self._check_config(body.get("config") or {})
        inputs = resolve_inputs(
            config,
            viewer=viewer,
            project=project,
            store=self.store,
            registry=self.registry,
            blobs=self.blobs,
        )
        if resources.executor not in self.executors:
            raise TrackingError(
                f"executor {resources.executor!r} is not configured on this service: use one of "
                f"{sorted(self.executors)}",
                EXECUTOR_UNAVAILABLE,
            )
        self._account_owner(self.executors[resources.executor], viewer.name)
        async with self._lock:  # the count and the insert are one step
            counts = self.jobs.count_active(group)
            try:
                count_check(
                    sum(counts.values()), counts.get(viewer.name, 0), limits, group, viewer.name
                )
            except JobLimitError as e:
                raise TrackingError(str(e), JOB_LIMIT_EXCEEDED) from None
            if project is None:  # every check passed: now the new project may exist
                project = self.store.create_project(project_name, owner=viewer.name, group=group)
            job = self._create(viewer, project, group, resources, config, name, resubmit_of)
        return await self._launch(job, inputs)

    def _create(
        self,
        viewer: Viewer,
        project: Project,
        group: str,
        resources: Resources,
        config: dict,
        name: str,
        resubmit_of: str | None,
    ) -> Job:
        job_id = uuid.uuid4().hex
        run = self.store.create_run(
            project.id,
            user=viewer.name,
            name=name or f"job-{job_id[:8]}",
            status=RunStatus.QUEUED,
            tags=[Tag("latticehub.job_id", job_id), Tag("latticehub.executor", resources.executor)],
        )
        params = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()]
        self.store.log_batch(run.id, params=params)
        workdir = self.jobs_dir / job_id
        workdir.mkdir(parents=True, mode=0o700)
        job = Job(
            id=job_id,
            run_id=run.id,
            project_id=project.id,
            user=viewer.name,
            group=group,
            executor=resources.executor,
            state=JobState.QUEUED,
            created=self.clock(),
            resources=asdict(resources),
            config=config,
            workdir=str(workdir),
            reason="submitting",
            resubmit_of=resubmit_of,
        )
        return self.jobs.create_job(job)

    def _write_files(
        self, job: Job, resources: Resources, executor: Executor, inputs: list[ResolvedInput]
    ) -> Path:
        work = Path(job.workdir)
        # paths as the job sees its directory (``/job`` in a container)
        seen = executor.job_root or str(work)
        # the config keeps its references (as the run's params show them); the job finds the
        # copies through LATTICEHUB_INPUTS, reference -> path
        copies: dict[str, str] = {}
        if inputs:
            assert self.blobs is not None  # resolve_inputs refused without an artifact store
            paths = copy_inputs(inputs, self.blobs, work, seen)
            copies = {item.reference: paths[item.key] for item in inputs}
            for item in inputs:
                if item.version_id is not None and self.registry is not None:
                    self.registry.record_use(job.run_id, item.version_id)
        (work / "config.json").write_text(json.dumps(job.config, indent=1))
        token = new_job_token()
        self.jobs.add_token(
            JobToken(
                token_hash=token_hash(token),
                job_id=job.id,
                run_id=job.run_id,
                user=job.user,
                expires=self.clock() + 1000 * (resources.time_s + TOKEN_MARGIN_S),
            )
        )
        env_file = work / "job.env"
        text = render_env_file(
            {
                "LATTICEHUB_TRACKING_URL": executor.tracking_url or self.tracking_url,
                "LATTICEHUB_TOKEN": token,
                "LATTICEHUB_RUN_ID": job.run_id,
                "LATTICEHUB_GROUP": job.group,
                **({"LATTICEHUB_INPUTS": json.dumps(copies)} if copies else {}),
            }
        )
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        python = executor.job_python or self.python
        argv = [
            part.replace("{python}", python)
            .replace("{config}", f"{seen}/config.json")
            .replace("{out}", f"{seen}/out")
            for part in self.command
        ]
        # Warn (SIGUSR1: checkpoint now) 2 minutes before the limit, or at 3/4 of short jobs.
        batch = BatchJob(
            signal_before_end_s=min(120, resources.time_s // 4),
            extra_env=(
                ("OMP_NUM_THREADS", str(resources.cpus)),
                ("MKL_NUM_THREADS", str(resources.cpus)),
                *executor.job_exports(job),
            ),
            job_id=job.id,
            resources=resources,
            workdir=seen,
            env_file=f"{seen}/job.env",
            command=tuple(argv),
            stdout=f"{seen}/stdout.log",
            stderr=f"{seen}/stderr.log",
        )
        script = work / "job.sh"
        script.write_text(render_batch_script(batch))
        owner = executor.job_owner(job) or self._account_owner(executor, job.user)
        if owner is not None:
            owned = [work, work / "config.json", env_file, script]
            if inputs:
                owned += [work / INPUTS_DIR, *(work / INPUTS_DIR).iterdir()]
            for path in owned:
                os.chown(path, *owner)
        return script

    async def _launch(self, job: Job, inputs: list[ResolvedInput]) -> Job:
        resources = Resources(**job.resources)
        executor = self.executors[job.executor]
        self.jobs.add_event(job.run_id, "submitted", f"job {job.id} submitted to {job.executor}")
        try:
            script = self._write_files(job, resources, executor, inputs)
            external = await executor.submit(job, script)
        except (ExecutorError, OSError, RuntimeError, ValueError, TrackingError) as e:
            self.log.warning("job %s could not be submitted: %s", job.id, e)
            return self._end(job, Observed(JobState.FAILED, f"submission failed: {e}"))
        job = self.jobs.update_job(job.id, external_id=external, reason="queued")
        self.jobs.add_event(job.run_id, "queued", f"{job.executor} job {external}")
        self.notify(job.run_id)
        return job

    # -- track ---------------------------------------------------------------------------
    async def poll_once(self) -> None:
        """Ask every executor about its active jobs (one query each) and apply changes.

        Skipped while another replica holds :attr:`poll_lock`.
        """
        if self.poll_lock is not None and not self.poll_lock.try_acquire():
            self.log.debug("job poll skipped: another replica holds its lock")
            return
        active = self.jobs.list_jobs(
            states=[JobState.QUEUED.value, JobState.RUNNING.value], limit=100000
        )
        for name, executor in self.executors.items():
            mine = [j for j in active if j.executor == name and j.external_id]
            if not mine:
                continue
            try:
                observed = await executor.poll(mine)
            except ExecutorError as e:
                self.log.warning("polling %s failed: %s", name, e)
                continue
            for job in mine:
                if job.id in observed:
                    self._apply(job, observed[job.id])

    def _apply(self, job: Job, seen: Observed) -> None:
        if (
            seen.state == job.state
            and seen.reason == job.reason
            and seen.node == (job.node or seen.node)
        ):
            return
        if is_terminal(seen.state):
            self._end(job, seen)
            return
        changes: dict[str, Any] = {"state": seen.state, "reason": seen.reason}
        if seen.node:
            changes["node"] = seen.node
        if seen.state == JobState.RUNNING and job.state != JobState.RUNNING:
            changes["started"] = self.clock()
            self.jobs.add_event(job.run_id, "started", f"running on {seen.node or 'a node'}")
            run = self.store.get_run(job.run_id)
            if run.status == RunStatus.QUEUED:
                self.store.update_run(job.run_id, status=RunStatus.RUNNING, status_reason="")
        elif seen.state == JobState.QUEUED and job.state == JobState.RUNNING:
            self.jobs.add_event(job.run_id, "requeued", seen.reason)
        elif seen.state == JobState.QUEUED and seen.reason != job.reason:
            self.store.update_run(job.run_id, status_reason=seen.reason)
        self.jobs.update_job(job.id, **changes)
        self.notify(job.run_id)

    def _end(self, job: Job, seen: Observed) -> Job:
        now = self.clock()
        job = self.jobs.update_job(
            job.id, state=seen.state, reason=seen.reason, ended=now,
            exit_code=seen.exit_code, node=seen.node or job.node,
        )  # fmt: skip
        self.jobs.add_event(job.run_id, "ended", f"{seen.state.value}: {seen.reason}")
        run = self.store.get_run(job.run_id)
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING) or seen.state == JobState.LOST:
            changes: dict[str, Any] = {"status": RunStatus(seen.state), "end_time": now}
            changes["status_reason"] = seen.reason
            if seen.state != JobState.FINISHED:
                changes["failure"] = {
                    **(run.failure or {}),
                    "type": "JobEnded",
                    "message": seen.reason,
                    "exit_code": seen.exit_code,
                    "stderr_tail": _tail(Path(job.workdir) / "stderr.log"),
                }
            self.store.update_run(job.run_id, **changes)
        self.notify(job.run_id)
        self.jobs.revoke_tokens(job.id)
        return job

    # -- job tokens ----------------------------------------------------------------------
    def viewer_for_token(
        self, token: str, groups_of: Callable[[str], Iterable[str]] | None = None
    ) -> Viewer:
        """Who a job token speaks for: its job's user, writing only its run.

        Job tokens are looked up on every request, so that revocation takes effect at once.
        A token speaks for its user no longer than the user belongs to the group the job is
        charged to: with ``groups_of`` (the user's current groups, as every request sees
        them), a user who left that group finds the token refused on the next request, like
        their own. The job itself goes on running (an admin or the group's managers decide
        whether to cancel it); its writes to the run are refused and the tracking client
        says so on the job's stderr, which stays in the job's directory.

        Raises:
            TrackingError: UNAUTHENTICATED for an unknown, revoked or expired job token, or
                one whose user is no longer in the job's group.
        """
        found = self.jobs.find_token(token_hash(token))
        if found is None or found.revoked or found.expires < self.clock():
            raise TrackingError(
                "this job token is unknown, has been revoked (its job ended) or has expired",
                UNAUTHENTICATED,
            )
        job = self.jobs.get_job(found.job_id)
        if groups_of is not None and job.group not in set(groups_of(found.user)):
            raise TrackingError(
                f"this job token speaks for {found.user}, who is no longer a member of group "
                f"{job.group!r} that job {job.id} is charged to: the run takes no more "
                "writes unless an admin adds them back to the group",
                UNAUTHENTICATED,
            )
        return Viewer(name=found.user, run_id=found.run_id, project_id=job.project_id)

    # -- cancel, resubmit ------------------------------------------------------------------
    def can_see(self, viewer: Viewer, job: Job) -> bool:
        """Owner, members of the job's group, admins."""
        return viewer.admin or job.user == viewer.name or job.group in viewer.groups

    def find(self, viewer: Viewer, job_id: str) -> Job:
        """The job, or 404 when the viewer may not see it (existence not shown)."""
        try:
            job = self.jobs.get_job(job_id)
        except TrackingError:
            raise not_found(f"Job with id={job_id}") from None
        if viewer.run_id is not None or not self.can_see(viewer, job):
            raise not_found(f"Job with id={job_id}")
        return job

    async def cancel(self, viewer: Viewer, job: Job) -> Job:
        """Stop a job (its owner or an admin)."""
        require(
            viewer.admin or viewer.name == job.user,
            "only the job's owner or an admin may cancel it",
        )
        if is_terminal(job.state):
            raise TrackingError(f"job {job.id} has already ended ({job.state.value})", CONFLICT)
        try:
            await self.executors[job.executor].cancel(job)
        except ExecutorError as e:
            raise TrackingError(str(e), EXECUTOR_UNAVAILABLE) from None
        self.jobs.add_event(job.run_id, "cancel", f"cancel requested by {viewer.name}")
        self.notify(job.run_id)
        return self.jobs.update_job(job.id, reason=f"cancelling (requested by {viewer.name})")

    async def resubmit(self, viewer: Viewer, job: Job) -> Job:
        """A new job (and run) with the same project, config and resources."""
        require(viewer.admin or viewer.name == job.user, "only the job's owner may resubmit it")
        project = self.store.get_project(job.project_id)
        body = {
            "project": project.name,
            "config": job.config,
            "resources": _request_resources(job.resources),
            "group": job.group if job.group in viewer.groups else None,
        }
        return await self.submit(viewer, {k: v for k, v in body.items() if v is not None}, job.id)

    async def run_forever(self, interval_s: float) -> None:
        """Poll until cancelled (then give :attr:`poll_lock` back)."""
        try:
            while True:
                try:
                    await self.poll_once()
                except Exception:  # noqa: BLE001 - a bad poll must not stop tracking
                    self.log.exception("job poll failed")
                await asyncio.sleep(interval_s)
        finally:
            if self.poll_lock is not None:
                self.poll_lock.release()


def _request_resources(stored: dict[str, Any]) -> dict[str, Any]:
    keys = ("executor", "partition", "nodes", "gpus", "cpus", "account")
    out = {k: stored[k] for k in keys if stored.get(k) is not None}
    out["mem"] = f"{stored['mem_mb']}M"
    out["time"] = int(stored["time_s"]) // 60 or 1
    return out


def _tail(path: Path, lines: int = 40) -> str:
    """The end of a job's output file; never through a link the job may have planted there.

    The job owns its directory, so ``stderr.log`` may be a symlink to a file only the service
    can read: open it without following links, and only if it is a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 16384))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
