"""Validate a job request against the admins' per-group job limits (pure functions).

Every value that ends up in a batch script or on a command line is checked against an
allow-list here; nothing is ever "escaped" into shape. :mod:`.sbatch` checks the same
values again when it renders the script.

Times use Slurm's ``--time`` formats (a bare number means minutes) and memory sizes use
``K``/``M``/``G``/``T`` suffixes in powers of 1024 (a bare number means MB), as Slurm's
``--mem`` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latticehub.joblimits import (  # noqa: F401 - re-exported: their old home
    EXECUTORS,
    JOB_LIMIT_KEYS,
    NAME_RE,
    JobLimits,
    format_time,
    parse_group_job_limits,
    parse_job_limits,
    parse_mem_mb,
    parse_time,
)
from latticehub.joblimits import show as _show

#: Longest run/job display name.
MAX_JOB_NAME = 100


class JobInputError(ValueError):
    """A job request (or part of it) that policy refuses.

    Attributes:
        field: the offending field, e.g. ``resources.gpus`` or ``jobs``.
        message: what the user reads: the field, the problem and the fix.
        status_code: the HTTP status for the REST API (400 unless said otherwise).
    """

    status_code = 400

    def __init__(self, field: str, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class JobLimitError(JobInputError):
    """A job refused because the group or the user already has too many (HTTP 429)."""

    status_code = 429


@dataclass(frozen=True)
class Resources:
    """What one job gets, after validation (all counts are whole numbers).

    Attributes:
        executor: ``docker``, ``slurm`` or ``local``.
        partition: Slurm partition (``None``: the cluster's default, or ``local``).
        nodes: nodes of the job.
        gpus: GPUs per node.
        cpus: CPUs per task.
        mem_mb: memory per node, MB.
        time_s: time limit, seconds.
        account: Slurm account to charge (``None``: no ``--account``).
        tasks_per_node: tasks per node, one per GPU by default.
    """

    executor: str
    partition: str | None
    nodes: int = 1
    gpus: int = 0
    cpus: int = 1
    mem_mb: int = 1024
    time_s: int = 3600
    account: str | None = None
    tasks_per_node: int = 1

    @property
    def total_tasks(self) -> int:
        """Tasks of the whole job (``nodes * tasks_per_node``)."""
        return self.nodes * self.tasks_per_node


def limits_for(limits: Mapping[str, JobLimits], group: str) -> JobLimits:
    """The job limits of ``group``, else those of ``"*"``.

    Raises:
        JobInputError: (403) when neither is configured: the group may not submit jobs.
    """
    found = limits.get(group, limits.get("*"))
    if found is None:
        raise JobInputError(
            "group",
            f"group {group!r} may not submit jobs: ask an admin to add it to the job limits "
            "(job_limits)",
            status_code=403,
        )
    return found


# -- user requests ----------------------------------------------------------------------

#: Keys a job's ``resources`` may have. ``time`` and ``mem`` take Slurm's units,
#: ``time_s`` and ``mem_mb`` whole seconds and MB.
RESOURCE_KEYS = frozenset(
    {
        "executor",
        "partition",
        "account",
        "nodes",
        "gpus",
        "cpus",
        "mem",
        "mem_mb",
        "time",
        "time_s",
        "tasks_per_node",
    }
)


def _user_int(
    raw: Mapping[str, Any], key: str, default: int, low: int, high: int, what: str, group: str
) -> int:
    value = raw.get(key)
    if value is None:
        return default
    field = f"resources.{key}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobInputError(field, f"{field}={_show(value)} must be a whole number, e.g. {low}")
    if value < low:
        raise JobInputError(field, f"{field}={value} is below {low}: ask for at least {low}")
    if value > high:
        raise JobInputError(
            field,
            f"{field}={value} is above the limit {high} {what} of group {group}: ask for at "
            f"most {high}",
        )
    return value


def _user_choice(
    raw: Mapping[str, Any], key: str, allowed: tuple[str, ...], executor: str, group: str
) -> str | None:
    value = raw.get(key)
    field = f"resources.{key}"
    if value is None:
        return allowed[0] if allowed and executor == "slurm" else None
    if executor != "slurm":
        raise JobInputError(
            field, f"{field} is only for executor 'slurm': leave it out for {executor!r}"
        )
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise JobInputError(
            field,
            f"{field}={_show(value)} is not a name: use 1 to 64 letters, digits and _ . - "
            f"({', '.join(allowed) or 'none allowed'})",
        )
    if value not in allowed:
        if not allowed:
            raise JobInputError(
                field, f"group {group} has no {key}s to choose from: leave {field} out"
            )
        raise JobInputError(
            field,
            f"{field}={value!r} is not allowed for group {group}: use one of {', '.join(allowed)}",
        )
    return value


def _user_units(
    raw: Mapping[str, Any],
    human: str,
    exact: str,
    parse: Any,
    default: int,
    cap: int,
    group: str,
    show: Any,
    unit: str,
) -> int:
    if raw.get(human) is not None and raw.get(exact) is not None:
        raise JobInputError(
            f"resources.{human}", f"resources has both {human} and {exact}: keep one of them"
        )
    if raw.get(exact) is not None:
        return _user_int(raw, exact, default, 1, cap, unit, group)
    if raw.get(human) is None:
        return min(default, cap)
    field = f"resources.{human}"
    try:
        value = parse(raw[human], name=field)
    except ValueError as e:
        raise JobInputError(field, str(e)) from None
    if value > cap:
        raise JobInputError(
            field,
            f"{field}={_show(raw[human])} is above the limit {show(cap)} of group {group}: ask "
            f"for at most {show(cap)}",
        )
    return value


def validate_resources(raw: Mapping[str, Any] | None, limits: JobLimits, group: str) -> Resources:
    """Check a job's ``resources`` against its group's limits and fill in the defaults.

    Requests above a limit are refused, never lowered, so nobody silently gets less
    than asked for. Strings are checked against allow-lists (a partition must be one
    of the group's partitions, and so on), so shell or ``#SBATCH`` injection attempts
    are refused rather than escaped.

    Args:
        raw: the request's ``resources`` dict (``None``: all defaults). Keys:
            ``executor``, ``partition``, ``account``, ``nodes``, ``gpus`` (per node),
            ``cpus`` (per task), ``mem`` (``"4G"`` or MB) or ``mem_mb``, ``time``
            (Slurm format or minutes) or ``time_s``, ``tasks_per_node``.
        limits: the group's limits.
        group: the group's name, for messages.

    Returns:
        The validated resources. ``tasks_per_node`` defaults to one task per GPU
        (``max(1, gpus)``) on Slurm; ``docker`` and ``local`` run one process on one node.

    Raises:
        JobInputError: naming the field, the problem and the fix.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise JobInputError(
            "resources", f"resources={_show(raw)} must be an object such as {{'gpus': 1}}"
        )
    unknown = sorted(_show(k) for k in raw if k not in RESOURCE_KEYS)
    if unknown:
        raise JobInputError(
            "resources",
            f"resources has unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(RESOURCE_KEYS))}",
        )
    if not limits.executors:
        raise JobInputError(
            "resources.executor",
            f"group {group} may not run jobs on any executor: ask an admin to set its executors",
            status_code=403,
        )
    executor = raw.get("executor")
    if executor is None:
        executor = limits.executors[0]
    elif executor not in limits.executors:
        raise JobInputError(
            "resources.executor",
            f"resources.executor={_show(executor)} is not allowed for group {group}: use one "
            f"of {', '.join(limits.executors)}",
        )
    partition = _user_choice(raw, "partition", limits.partitions, executor, group)
    account = _user_choice(raw, "account", limits.accounts, executor, group)
    local = executor != "slurm"  # one process on one node
    nodes = _user_int(raw, "nodes", 1, 1, 1 if local else limits.max_nodes, "nodes", group)
    gpus = _user_int(raw, "gpus", 0, 0, limits.max_gpus, "GPUs per node", group)
    cpus = _user_int(
        raw,
        "cpus",
        min(limits.default_cpus, limits.max_cpus),
        1,
        limits.max_cpus,
        "CPUs per task",
        group,
    )
    mem_mb = _user_units(
        raw,
        "mem",
        "mem_mb",
        parse_mem_mb,
        limits.default_mem_mb,
        limits.max_mem_mb,
        group,
        lambda mb: f"{mb}M",
        "MB",
    )
    time_s = _user_units(
        raw,
        "time",
        "time_s",
        parse_time,
        limits.default_time_s,
        limits.max_time_s,
        group,
        format_time,
        "seconds",
    )
    most_tasks = 1 if local else max(1, gpus)
    tasks_per_node = _user_int(
        raw, "tasks_per_node", most_tasks, 1, most_tasks, "(one task per GPU) per node", group
    )
    return Resources(
        executor=executor,
        partition=partition,
        nodes=nodes,
        gpus=gpus,
        cpus=cpus,
        mem_mb=mem_mb,
        time_s=time_s,
        account=account,
        tasks_per_node=tasks_per_node,
    )


def validate_job_name(name: Any) -> str:
    """Check a run/job display name: printable text of at most 100 characters.

    Returns:
        The name, unchanged (``""`` means "no name": the caller picks one).

    Raises:
        JobInputError: for a non-string, a too long name, or one with control
            characters (newlines, tabs, NUL, bidi overrides ...).
    """
    if not isinstance(name, str):
        raise JobInputError("name", f"name={_show(name)} must be a string")
    if len(name) > MAX_JOB_NAME:
        raise JobInputError(
            "name", f"name has {len(name)} characters: shorten it to at most {MAX_JOB_NAME}"
        )
    for char in name:
        if not char.isprintable():
            raise JobInputError(
                "name",
                f"name={_show(name)} contains the control character {char!r}: use printable "
                "text on one line",
            )
    return name


def safe_slurm_name(job_id: str) -> str:
    """The Slurm ``--job-name`` of a job: ``lh-<job_id>`` in lowercase ``[a-z0-9-]``.

    Other characters become ``-``; the name is at most 64 characters.

    Raises:
        ValueError: if nothing of the job id is left.

    >>> safe_slurm_name("3F2a_b7")
    'lh-3f2a-b7'
    """
    if not isinstance(job_id, str):
        raise ValueError(f"job_id={_show(job_id)} must be a string")
    slug = re.sub(r"[^a-z0-9]+", "-", job_id.lower()).strip("-")
    if not slug:
        raise ValueError(f"job_id={_show(job_id)} has no letters or digits to name the Slurm job")
    return f"lh-{slug}"[:64].rstrip("-")


def count_check(
    active_group: int, active_user: int, limits: JobLimits, group: str, user: str
) -> None:
    """Refuse a new job when the group or the user has too many queued or running.

    Args:
        active_group: the group's jobs that are queued or running now.
        active_user: the user's jobs in the group that are queued or running now.
        limits: the group's limits.
        group: the group's name.
        user: the user's name.

    Raises:
        JobLimitError: (429) naming the group or user, the limit and the count.
    """
    if active_group >= limits.max_jobs:
        raise JobLimitError(
            "jobs",
            f"group {group} has {active_group} job(s) queued or running, its limit "
            f"(max_jobs={limits.max_jobs}): wait until one ends, or cancel one",
        )
    cap = limits.max_jobs_per_user
    if cap is not None and active_user >= cap:
        raise JobLimitError(
            "jobs",
            f"{user} has {active_user} job(s) of group {group} queued or running, its limit "
            f"per user (max_jobs_per_user={cap}): wait until one ends, or cancel one",
        )
