"""Configuration of the jobs API (traitlets), and building the manager from it."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Int, List, Unicode, default, validate

from latticehub.joblimits import deprecated_job_keys

from ...common.policyfile import PolicyFileConfig, deprecated_setting
from .executors import Executor, LocalExecutor, SlurmExecutor
from .manager import JobManager, default_command
from .spec import parse_job_limits

#: The executors a service may offer.
EXECUTOR_NAMES = ("docker", "slurm", "local")


class JobsConfig(PolicyFileConfig):
    """Settings of ``/api/v1/jobs`` (``--JobsConfig.<name>=...`` or environment variables)."""

    executors = List(
        Unicode(),
        help="""
        Executors to offer: ``docker`` (each job a container from the group's single-user
        image, as the user's uid, with the job's limits enforced by the engine; the default),
        ``slurm`` (``sbatch`` as the user's own account through ``slurm_command_prefix``) and
        ``local`` (processes on the service's host, for single-user development only: refused
        when the service runs as root). Example: ``["docker", "slurm"]``. Default:
        ``$LATTICEHUB_EXECUTORS`` (comma-separated) or ``["docker"]``.
        """,
    ).tag(config=True)

    @default("executors")
    def _default_executors(self) -> list[str]:
        raw = os.environ.get("LATTICEHUB_EXECUTORS", "docker")
        return [e.strip() for e in raw.split(",") if e.strip()]

    @validate("executors")
    def _validate_executors(self, proposal: Any) -> list[str]:
        bad = [e for e in proposal.value if e not in EXECUTOR_NAMES]
        if bad:
            raise ValueError(f"unknown executor(s) {bad}: use any of {list(EXECUTOR_NAMES)}")
        return proposal.value

    job_limits = Dict(
        help="""
        What each group may ask for, by group name (``"*"``: every other group). Keys per
        group (the policy document's ``jobs`` section): ``executors``, ``partitions`` (the
        first is the default), ``accounts``, ``max_jobs`` (queued + running),
        ``max_jobs_per_user``, ``max_nodes``, ``gpus`` (per node), ``cpu_limit`` (per task),
        ``mem_limit`` (per node, e.g. "16G"), ``time_limit`` (Slurm format, e.g. "4:00:00"),
        ``default_time``, ``default_mem``, ``default_cpus``. The old names ``max_gpus``,
        ``max_cpus``, ``max_mem`` and ``max_time`` still work (deprecated). Example:
        ``{"lqcd": {"executors": ["docker", "slurm"], "partitions": ["debug"], "gpus": 1}}``.
        Default: the policy document's ``jobs`` sections (``policy_file``), else ``{"*": {}}``
        (docker jobs with the built-in maxima). The older ``$LATTICEHUB_JOB_LIMITS`` (JSON)
        still wins over the document, with a deprecation message.
        """,
    ).tag(config=True)

    @default("job_limits")
    def _default_job_limits(self) -> dict:
        raw = os.environ.get("LATTICEHUB_JOB_LIMITS")
        if raw:
            deprecated_setting(
                "$LATTICEHUB_JOB_LIMITS", "write each group's jobs section in the policy document"
            )
            return json.loads(raw)
        document = self.policy_document()
        return document.job_limits() if document else {"*": {}}

    @validate("job_limits")
    def _validate_job_limits(self, proposal: Any) -> dict:
        parse_job_limits(proposal.value)  # raises ValueError that names the key and the fix
        renamed = deprecated_job_keys(proposal.value)
        if renamed:
            deprecated_setting("old job_limits key names", "rename them: " + "; ".join(renamed))
        return proposal.value

    jobs_dir = Unicode(
        help="""
        Directory for job directories (config, 0600 environment file, script, output). Must be
        on a filesystem the batch nodes see for Slurm. Default: ``$LATTICEHUB_JOBS_DIR`` or
        ``./run/jobs``.
        """,
    ).tag(config=True)

    @default("jobs_dir")
    def _default_jobs_dir(self) -> str:
        return os.environ.get("LATTICEHUB_JOBS_DIR", os.path.abspath("run/jobs"))

    local_max_concurrent = Int(
        2, help="Local jobs running at once on this host (more wait QUEUED), e.g. 2."
    ).tag(config=True)

    @validate("local_max_concurrent")
    def _validate_local(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise ValueError(f"local_max_concurrent must be >= 1, got {proposal.value}")
        return proposal.value

    slurm_command_prefix = List(
        Unicode(),
        help="""
        argv prefix that runs ``sbatch``/``scancel`` as the requesting user's own account,
        ``{username}`` replaced by ``system_username``, e.g. ``["sudo", "-u", "{username}"]``
        (the service needs a sudoers rule for exactly ``sbatch`` and ``scancel``; never
        ``sudo -E``: the service's environment must not reach the job). Required by the
        ``slurm`` executor: jobs never run as the service's account. Default:
        ``$LATTICEHUB_SLURM_PREFIX`` split on spaces.
        """,
    ).tag(config=True)

    @default("slurm_command_prefix")
    def _default_prefix(self) -> list[str]:
        return os.environ.get("LATTICEHUB_SLURM_PREFIX", "").split()

    @validate("slurm_command_prefix")
    def _validate_prefix(self, proposal: Any) -> list[str]:
        prefix = list(proposal.value)
        if prefix and not any("{username}" in part for part in prefix):
            raise ValueError(
                f"slurm_command_prefix={prefix} does not name the user: it must contain "
                "{username}, e.g. ['sudo', '-u', '{username}'], so that jobs run as their user"
            )
        if any(
            part in ("-E", "--preserve-env") or part.startswith("--preserve-env=")
            for part in prefix
        ):
            raise ValueError(
                f"slurm_command_prefix={prefix} keeps the service's environment (-E / "
                "--preserve-env): drop it, e.g. ['sudo', '-u', '{username}']"
            )
        return prefix

    system_username = Unicode(
        help="""
        The cluster account of a Hub user, ``{username}`` replaced, e.g. ``"{username}"``
        (default: the same name) or ``"lh-{username}"``. Used in ``slurm_command_prefix`` and
        as the owner of job directories when a prefix is set. Default:
        ``$LATTICEHUB_SYSTEM_USERNAME`` or ``{username}``.
        """,
    ).tag(config=True)

    @default("system_username")
    def _default_system_username(self) -> str:
        return os.environ.get("LATTICEHUB_SYSTEM_USERNAME") or "{username}"

    @validate("system_username")
    def _validate_system_username(self, proposal: Any) -> str:
        if "{username}" not in proposal.value:
            raise ValueError(
                "system_username must contain {username}, e.g. 'lh-{username}': got "
                f"{proposal.value!r}"
            )
        return proposal.value

    docker_images = Dict(
        help="""
        The image each group's ``docker`` jobs run, by group name (``"*"``: every other
        group): the single-user image the group's own servers use, so that a job runs
        nothing its user could not run in their notebook. Example:
        ``{"lqcd": "latticehub/singleuser:latest", "*": "latticehub/singleuser:latest"}``.
        Default: JSON in ``$LATTICEHUB_JOB_IMAGES``, else ``{"*": $LATTICEHUB_IMAGE}``
        (``latticehub/singleuser:latest``).
        """,
    ).tag(config=True)

    @default("docker_images")
    def _default_docker_images(self) -> dict:
        raw = os.environ.get("LATTICEHUB_JOB_IMAGES")
        if raw:
            return json.loads(raw)
        return {"*": os.environ.get("LATTICEHUB_IMAGE", "latticehub/singleuser:latest")}

    @validate("docker_images")
    def _validate_docker_images(self, proposal: Any) -> dict:
        value = proposal.value
        bad = {k: v for k, v in value.items() if not isinstance(v, str) or not v.strip()}
        if bad:
            raise ValueError(
                f"docker_images has no image for {sorted(bad)}: map each group to an image "
                'name, e.g. {"lqcd": "latticehub/singleuser:latest"}'
            )
        return value

    docker_network = Unicode(
        help="""
        The Docker network ``docker`` jobs join; the tracking service must be reachable on it
        (``tracking_url``). Default: ``$LATTICEHUB_NETWORK`` or ``latticehub``.
        """,
    ).tag(config=True)

    @default("docker_network")
    def _default_docker_network(self) -> str:
        return os.environ.get("LATTICEHUB_NETWORK", "latticehub")

    docker_swarm = Bool(
        help="""
        Run ``docker`` jobs as Swarm services instead of containers on one engine: Swarm
        places each job on a node with room for its memory and CPUs (both reserved), and
        ``docker_constraints`` narrow the nodes. The service's engine must be a Swarm manager,
        ``docker_network`` an attachable swarm-scope network (or '' for none), and the jobs
        directory on a filesystem every node mounts at the same path. Default:
        ``$LATTICEHUB_JOB_SWARM`` (``1``) or False; ``jupyterhub_config.py`` sets it with the
        Swarm spawner.
        """,
    ).tag(config=True)

    @default("docker_swarm")
    def _default_docker_swarm(self) -> bool:
        return os.environ.get("LATTICEHUB_JOB_SWARM", "") in ("1", "true", "yes")

    docker_constraints = List(
        Unicode(),
        help="""
        Swarm placement constraints of every ``docker`` job (with ``docker_swarm``), e.g.
        ``["node.labels.latticehub.jobs==1"]``. Default: JSON in
        ``$LATTICEHUB_JOB_CONSTRAINTS`` or ``[]`` (any node).
        """,
    ).tag(config=True)

    @default("docker_constraints")
    def _default_docker_constraints(self) -> list[str]:
        raw = os.environ.get("LATTICEHUB_JOB_CONSTRAINTS")
        return json.loads(raw) if raw else []

    @validate("docker_constraints")
    def _validate_docker_constraints(self, proposal: Any) -> list[str]:
        bad = [c for c in proposal.value if not re.fullmatch(r"\S+\s*(==|!=)\s*\S+", c)]
        if bad:
            raise ValueError(
                f"docker_constraints {bad!r}: write each as 'attribute==value' or "
                "'attribute!=value', e.g. 'node.labels.latticehub.jobs==1'"
            )
        return proposal.value

    docker_hub_id = Unicode(
        help="""
        Marks this service's job containers (label and name prefix); services sharing an
        engine need different ids. Lower-case letters, digits, ``_ . -``, e.g. ``prod``.
        Default: ``$LATTICEHUB_HUB_ID`` (as the spawner's ``hub_id``) or ``latticehub``.
        """,
    ).tag(config=True)

    @default("docker_hub_id")
    def _default_docker_hub_id(self) -> str:
        return os.environ.get("LATTICEHUB_HUB_ID", "latticehub")

    docker_max_concurrent = Int(
        4, help="``docker`` jobs running at once on the engine (more wait QUEUED), e.g. 4."
    ).tag(config=True)

    docker_pids_limit = Int(
        512, help="Most processes (and threads) in one ``docker`` job, e.g. 512."
    ).tag(config=True)

    @validate("docker_max_concurrent", "docker_pids_limit")
    def _validate_docker_counts(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise ValueError(
                f"{proposal.trait.name} must be a whole number >= 1, got {proposal.value}"
            )
        return proposal.value

    run_as_user = Dict(
        help="""
        Hub user -> the ``"uid:gid"`` a ``docker`` job of theirs runs as (and that owns the
        job's directory); users not listed run as the image's user, ``1000:100``. uid 0 is
        refused. Example: ``{"alice": "20001:20000"}``. Default: JSON in
        ``$LATTICEHUB_RUN_AS_USER`` or ``{}``.
        """,
    ).tag(config=True)

    @default("run_as_user")
    def _default_run_as_user(self) -> dict:
        raw = os.environ.get("LATTICEHUB_RUN_AS_USER")
        return json.loads(raw) if raw else {}

    @validate("run_as_user")
    def _validate_run_as_user(self, proposal: Any) -> dict:
        for user, value in proposal.value.items():
            parsed = _parse_uid_gid(value)
            if parsed is None or parsed[0] == 0:
                raise ValueError(
                    f"run_as_user[{user!r}]={value!r}: use 'uid:gid' with a uid other than 0, "
                    "e.g. '20001:20000'"
                )
        return proposal.value

    gpu_devices = Dict(
        help="""
        Node -> GPU device ids that ``docker`` jobs may be given (the same inventory as the
        spawner's ``gpu_devices``, so that a job and a server never get the same GPU),
        e.g. ``{"gpu01": ["0", "1"]}``. Default: JSON in ``$LATTICEHUB_GPU_DEVICES`` or
        ``{}`` (no GPUs).
        """,
    ).tag(config=True)

    @default("gpu_devices")
    def _default_gpu_devices(self) -> dict:
        raw = os.environ.get("LATTICEHUB_GPU_DEVICES")
        return json.loads(raw) if raw else {}

    def image_for(self, job: Any) -> str:
        """The image of a job's group (``"*"`` for groups not listed)."""
        image = self.docker_images.get(job.group) or self.docker_images.get("*")
        if not image:
            raise ValueError(f"no image for group {job.group!r}: add it (or '*') to docker_images")
        return image

    def uid_for(self, user: str) -> tuple[int, int]:
        """The ``(uid, gid)`` of a user's docker jobs."""
        value = self.run_as_user.get(user)
        return _parse_uid_gid(value) if value is not None else (1000, 100)  # type: ignore[return-value]

    poll_interval = Float(
        2.0, help="Seconds between status polls (one squeue call per poll), e.g. 2.0."
    ).tag(config=True)

    @validate("poll_interval")
    def _validate_poll(self, proposal: Any) -> float:
        if not 0.1 <= proposal.value <= 600:
            raise ValueError(f"poll_interval must be in [0.1, 600] seconds, got {proposal.value}")
        return proposal.value

    command = List(
        Unicode(),
        help="""
        The payload argv; ``{config}`` and ``{out}`` are replaced by the job's config file and
        output directory. Default: ``python -m flows.train --config {config} --out {out}
        --resume true`` with this service's Python (``$LATTICEHUB_JOB_PYTHON`` to change it).
        """,
    ).tag(config=True)

    @default("command")
    def _default_command(self) -> list[str]:
        return default_command()

    tracking_url = Unicode(
        help="""
        The service's URL as jobs see it, e.g. ``http://hub.example.org/services/experiments``.
        Default: ``$LATTICEHUB_JOB_TRACKING_URL`` or this service's own address.
        """,
    ).tag(config=True)

    def account(self, user: str) -> str:
        """The cluster account of a Hub user."""
        return self.system_username.replace("{username}", user)

    def build(
        self, *, store: Any, hub_auth: Any, service_url: str, log: Any, notify: Any = None
    ) -> JobManager:
        """The manager for this configuration."""
        executors: dict[str, Executor] = {}
        if "local" in self.executors:
            if os.geteuid() == 0:
                raise ValueError(
                    "the local executor runs jobs as the service's own account, and this "
                    "service runs as root: use the docker or slurm executor "
                    "(LATTICEHUB_EXECUTORS=docker), or run the service as an unprivileged "
                    "user for single-user development"
                )
            executors["local"] = LocalExecutor(self.local_max_concurrent)
        if "slurm" in self.executors:
            if not self.slurm_command_prefix:
                raise ValueError(
                    "the slurm executor needs slurm_command_prefix (LATTICEHUB_SLURM_PREFIX), "
                    "e.g. 'sudo -u {username}', so that each job is submitted as its user's "
                    "own account and never as the service's"
                )
            executors["slurm"] = SlurmExecutor(self.slurm_command_prefix, system_user=self.account)
        if "docker" in self.executors:
            # the docker SDK only where used
            from .docker_executor import DockerExecutor
            from .swarm_executor import SwarmJobExecutor

            options: dict[str, Any] = dict(
                image_for=self.image_for,
                network=self.docker_network,
                uid_for=self.uid_for,
                hub_id=self.docker_hub_id,
                pids_limit=self.docker_pids_limit,
                gpu_inventory=self.gpu_devices,
                max_concurrent=self.docker_max_concurrent,
                log=log,
            )
            if self.docker_swarm:
                executors["docker"] = SwarmJobExecutor(
                    constraints=self.docker_constraints, **options
                )
            else:
                executors["docker"] = DockerExecutor(**options)
        jobs = store.job_store()
        if jobs is None:
            raise ValueError(
                f"the tracking store {type(store).__name__} keeps no jobs: use an SQL database "
                "(sqlite:// or postgresql://) for the jobs API"
            )
        Path(self.jobs_dir).mkdir(parents=True, exist_ok=True, mode=0o711)
        return JobManager(
            store=store,
            jobs=jobs,
            executors=executors,
            limits=parse_job_limits(self.job_limits),
            jobs_dir=Path(self.jobs_dir),
            tracking_url=self.tracking_url
            or os.environ.get("LATTICEHUB_JOB_TRACKING_URL", "")
            or service_url,
            command=self.command,
            python=os.environ.get("LATTICEHUB_JOB_PYTHON", sys.executable),
            chown_to=self.account if self.slurm_command_prefix else None,
            log=log,
            notify=notify,
        )


def _parse_uid_gid(value: Any) -> tuple[int, int] | None:
    """``"20001:20000"`` -> ``(20001, 20000)``; None for anything else."""
    if not isinstance(value, str):
        return None
    uid, sep, gid = value.partition(":")
    if not sep or not uid.isdigit() or not gid.isdigit():
        return None
    return int(uid), int(gid)
