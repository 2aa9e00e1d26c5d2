"""Configuration of the jobs API (traitlets), and building the manager from it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from traitlets import Dict, Float, Int, List, Unicode, default, validate
from traitlets.config import Configurable

from .executors import Executor, LocalExecutor, SlurmExecutor
from .manager import JobManager, default_command
from .spec import parse_job_limits
from .store import SqlJobStore
from .tokens import HubTokenMinter, LocalTokenMinter, TokenMinter


class JobsConfig(Configurable):
    """Settings of ``/api/v1/jobs`` (``--JobsConfig.<name>=...`` or environment variables)."""

    executors = List(
        Unicode(),
        help="""
        Executors to offer: ``local`` (subprocesses on this host, the embedded default) and/or
        ``slurm``. Example: ``["local", "slurm"]``. Default: ``$LATTICEHUB_EXECUTORS``
        (comma-separated) or ``["local"]``.
        """,
    ).tag(config=True)

    @default("executors")
    def _default_executors(self) -> list[str]:
        raw = os.environ.get("LATTICEHUB_EXECUTORS", "local")
        return [e.strip() for e in raw.split(",") if e.strip()]

    @validate("executors")
    def _validate_executors(self, proposal: Any) -> list[str]:
        bad = [e for e in proposal.value if e not in ("local", "slurm")]
        if bad:
            raise ValueError(f"unknown executor(s) {bad}: use 'local' and/or 'slurm'")
        return proposal.value

    job_limits = Dict(
        help="""
        What each group may ask for, by group name (``"*"``: every other group). Keys per
        group: ``executors``, ``partitions`` (the first is the default), ``accounts``,
        ``max_jobs`` (queued + running), ``max_jobs_per_user``, ``max_nodes``, ``max_gpus``,
        ``max_cpus``, ``max_mem`` (e.g. "16G"), ``max_time`` (Slurm format, e.g. "4:00:00"),
        ``default_time``, ``default_mem``, ``default_cpus``. Example:
        ``{"lqcd": {"executors": ["local", "slurm"], "partitions": ["debug"], "max_gpus": 1}}``.
        Default: JSON in ``$LATTICEHUB_JOB_LIMITS``, else ``{"*": {}}`` (local jobs with the
        built-in maxima).
        """,
    ).tag(config=True)

    @default("job_limits")
    def _default_job_limits(self) -> dict:
        raw = os.environ.get("LATTICEHUB_JOB_LIMITS")
        return json.loads(raw) if raw else {"*": {}}

    @validate("job_limits")
    def _validate_job_limits(self, proposal: Any) -> dict:
        parse_job_limits(proposal.value)  # raises ValueError that names the key and the fix
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
        argv prefix to run sbatch/scancel as the requesting user, ``{username}`` replaced, e.g.
        ``["sudo", "-E", "-u", "{username}"]`` (the batchspawner convention). Empty (default,
        ``$LATTICEHUB_SLURM_PREFIX`` split on spaces): the service account submits.
        """,
    ).tag(config=True)

    @default("slurm_command_prefix")
    def _default_prefix(self) -> list[str]:
        return os.environ.get("LATTICEHUB_SLURM_PREFIX", "").split()

    system_username = Unicode(
        "{username}",
        help="""
        The cluster account of a Hub user, ``{username}`` replaced, e.g. ``"{username}"``
        (default: the same name) or ``"lh-{username}"``. Used in ``slurm_command_prefix`` and
        as the owner of job directories when a prefix is set.
        """,
    ).tag(config=True)

    @validate("system_username")
    def _validate_system_username(self, proposal: Any) -> str:
        if "{username}" not in proposal.value:
            raise ValueError(
                "system_username must contain {username}, e.g. 'lh-{username}': got "
                f"{proposal.value!r}"
            )
        return proposal.value

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
        return default_command(os.environ.get("LATTICEHUB_JOB_PYTHON", sys.executable))

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
            executors["local"] = LocalExecutor(self.local_max_concurrent)
        if "slurm" in self.executors:
            executors["slurm"] = SlurmExecutor(self.slurm_command_prefix, system_user=self.account)
        minter: TokenMinter
        if getattr(hub_auth, "api_token", None):
            minter = HubTokenMinter(hub_auth.api_url, hub_auth.api_token)
        else:
            minter = LocalTokenMinter()
        Path(self.jobs_dir).mkdir(parents=True, exist_ok=True, mode=0o711)
        return JobManager(
            store=store,
            jobs=SqlJobStore(store.engine),
            executors=executors,
            limits=parse_job_limits(self.job_limits),
            jobs_dir=Path(self.jobs_dir),
            tracking_url=self.tracking_url
            or os.environ.get("LATTICEHUB_JOB_TRACKING_URL", "")
            or service_url,
            minter=minter,
            command=self.command,
            chown_to=self.account if self.slurm_command_prefix else None,
            log=log,
            notify=notify,
        )
