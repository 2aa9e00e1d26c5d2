"""Validate a job request against the admins' per-group job limits (pure functions).

Every value that ends up in a batch script or on a command line is checked against an
allow-list here; nothing is ever "escaped" into shape. :mod:`.sbatch` checks the same
values again when it renders the script.

Times use Slurm's ``--time`` formats (a bare number means minutes) and memory sizes use
``K``/``M``/``G``/``T`` suffixes in powers of 1024 (a bare number means MB), as Slurm's
``--mem`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latticehub.units import parse_bytes

#: Executors a job may run on: ``docker`` (a container from the group's image, the default),
#: ``slurm`` (a batch job as the user's account) or ``local`` (a subprocess of the service,
#: single-user development only).
EXECUTORS = ("docker", "slurm", "local")

#: Allow-list for Slurm partition and account names.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: Longest run/job display name.
MAX_JOB_NAME = 100

_MIB = 1024**2
_MEM_RE = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?([KMGTkmgt](?:i?[Bb])?)?")
_CLOCK_RE = re.compile(r"[0-9]{1,7}(?::[0-9]{1,2}){0,2}")
_DAYS_RE = re.compile(r"([0-9]{1,5})-([0-9]{1,2})(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?")
_TIME_FORMS = "minutes (90), 'MM:SS', 'HH:MM:SS' ('1:30:00') or 'D-HH:MM:SS' ('2-00:00:00')"


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


@dataclass(frozen=True)
class JobLimits:
    """What one group's jobs may ask for (configured by admins).

    Attributes:
        executors: executors the group may use; the first is the default.
        partitions: Slurm partitions the group may use; the first is the default
            (empty: no ``--partition``, the cluster's default).
        accounts: Slurm accounts the group may charge; the first is the default
            (empty: no ``--account``).
        max_jobs: jobs of the group queued or running at once.
        max_jobs_per_user: jobs of one user of the group at once (``None``: no own limit).
        max_nodes: nodes per job.
        max_gpus: GPUs per node.
        max_cpus: CPUs per task.
        max_mem_mb: memory per node, MB.
        max_time_s: time limit, seconds.
        default_time_s: time limit when the request gives none, seconds.
        default_mem_mb: memory when the request gives none, MB.
        default_cpus: CPUs per task when the request gives none.
    """

    executors: tuple[str, ...] = ("docker",)
    partitions: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    max_jobs: int = 4
    max_jobs_per_user: int | None = None
    max_nodes: int = 1
    max_gpus: int = 0
    max_cpus: int = 4
    max_mem_mb: int = 8192
    max_time_s: int = 4 * 3600
    default_time_s: int = 3600
    default_mem_mb: int = 2048
    default_cpus: int = 1


def _show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, shortened, for messages (never prints raw newlines)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_chars(text: str) -> str | None:
    """Describe whitespace or control characters in ``text``, if any."""
    for char in text:
        if char.isspace() or not char.isprintable():
            return f"contains {char!r} (whitespace or a control character)"
    return None


def parse_time(value: Any, *, name: str = "time") -> int:
    """Parse a Slurm time limit into seconds.

    Accepts Slurm's ``--time`` formats ``"MM"``, ``"MM:SS"``, ``"HH:MM:SS"``,
    ``"D-HH"``, ``"D-HH:MM"`` and ``"D-HH:MM:SS"``; a number (as in JSON) means minutes,
    as ``--time=90`` does. ``unlimited``, zero and negative times are refused.

    Args:
        value: the time as a string or a whole number of minutes.
        name: the setting's name, used in the error message.

    Returns:
        The time in seconds (at least 1).

    Raises:
        ValueError: naming the value and the accepted formats.

    >>> parse_time("1-12:00:00")
    129600
    >>> parse_time(90)
    5400
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name}={_show(value)} is not a time: use {_TIME_FORMS}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{name}={value} must be a positive number of minutes, e.g. 90")
        return value * 60
    problem = _bad_chars(value)
    if problem:
        raise ValueError(f"{name}={_show(value)} {problem}: write it as {_TIME_FORMS}")
    if m := _DAYS_RE.fullmatch(value):
        days, hours = int(m[1]), int(m[2])
        minutes, seconds = int(m[3] or 0), int(m[4] or 0)
        if hours >= 24 or minutes >= 60 or seconds >= 60:
            raise ValueError(
                f"{name}={_show(value)} is out of range: hours must be below 24 and minutes "
                "and seconds below 60 in 'D-HH:MM:SS', e.g. '1-12:00:00'"
            )
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    elif _CLOCK_RE.fullmatch(value):
        parts = [int(p) for p in value.split(":")]
        if any(p >= 60 for p in parts[1:]):
            raise ValueError(
                f"{name}={_show(value)} is out of range: minutes and seconds after a ':' must "
                "be below 60, e.g. '1:30:00'"
            )
        if len(parts) == 1:
            total = parts[0] * 60
        elif len(parts) == 2:
            total = parts[0] * 60 + parts[1]
        else:
            total = (parts[0] * 60 + parts[1]) * 60 + parts[2]
    else:
        raise ValueError(f"{name}={_show(value)} is not a Slurm time: use {_TIME_FORMS}")
    if total <= 0:
        raise ValueError(f"{name}={_show(value)} must be longer than zero, e.g. '1:00:00'")
    return total


def format_time(seconds: int) -> str:
    """Format seconds as Slurm prints times: ``"D-HH:MM:SS"``, or ``"HH:MM:SS"`` under a day.

    Raises:
        ValueError: for anything but a positive whole number (Slurm reads 0 as unlimited).

    >>> format_time(5400)
    '01:30:00'
    >>> format_time(86400 + 61)
    '1-00:01:01'
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(
            f"time={_show(seconds)} must be a positive whole number of seconds "
            "(Slurm reads 0 as 'no limit')"
        )
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def parse_mem_mb(value: Any, *, name: str = "mem") -> int:
    """Parse a memory size into MB (MiB), rounding up.

    Args:
        value: a whole number of MB, or a string such as ``"512M"``, ``"4G"``, ``"1.5G"``
            (``K``/``M``/``G``/``T`` in powers of 1024; a string without a unit is MB, as
            in Slurm's ``--mem``).
        name: the setting's name, used in the error message.

    Raises:
        ValueError: naming the value and the accepted forms.

    >>> parse_mem_mb("1.5G")
    1536
    """
    forms = "a whole number of MB (4096) or a size such as '512M', '4G' or '1.5G'"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name}={_show(value)} is not a memory size: use {forms}")
    if isinstance(value, int):
        mb = value
    else:
        problem = _bad_chars(value)
        if problem:
            raise ValueError(f"{name}={_show(value)} {problem}: use {forms}")
        m = _MEM_RE.fullmatch(value)
        if not m:
            raise ValueError(f"{name}={_show(value)} is not a memory size: use {forms}")
        if m[3] is None:
            if m[2] is not None:
                raise ValueError(f"{name}={_show(value)} needs a unit for a fraction: use {forms}")
            mb = int(m[1])
        else:
            mb = math.ceil(parse_bytes(value, name=name) / _MIB)
    if mb <= 0:
        raise ValueError(f"{name}={_show(value)} must be more than zero: use {forms}")
    return mb


# -- admin configuration ----------------------------------------------------------------


def _count(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={_show(value)} must be a whole number >= {minimum}")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key}={_show(value)} must be a list of names, e.g. {key}=['a', 'b']")
    for item in value:
        if not isinstance(item, str) or not NAME_RE.fullmatch(item):
            raise ValueError(
                f"{key} has {_show(item)}, which is not a name: use 1 to 64 letters, digits "
                "and _ . -"
            )
    return tuple(value)


def _executors(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{key}={_show(value)} must be a non-empty list, e.g. ['docker', 'slurm']")
    for item in value:
        if item not in EXECUTORS:
            raise ValueError(f"{key} has {_show(item)}: known executors are {', '.join(EXECUTORS)}")
    return tuple(value)


#: Admin keys -> (JobLimits field, parser). ``max_time``/``max_mem`` ... take human units.
_LIMIT_KEYS: dict[str, tuple[str, Any]] = {
    "executors": ("executors", _executors),
    "partitions": ("partitions", _names),
    "accounts": ("accounts", _names),
    "max_jobs": ("max_jobs", lambda v, k: _count(v, k, 0)),
    "max_jobs_per_user": ("max_jobs_per_user", lambda v, k: _count(v, k, 0)),
    "max_nodes": ("max_nodes", lambda v, k: _count(v, k, 1)),
    "max_gpus": ("max_gpus", lambda v, k: _count(v, k, 0)),
    "max_cpus": ("max_cpus", lambda v, k: _count(v, k, 1)),
    "max_mem_mb": ("max_mem_mb", lambda v, k: _count(v, k, 1)),
    "max_mem": ("max_mem_mb", lambda v, k: parse_mem_mb(v, name=k)),
    "max_time_s": ("max_time_s", lambda v, k: _count(v, k, 1)),
    "max_time": ("max_time_s", lambda v, k: parse_time(v, name=k)),
    "default_time_s": ("default_time_s", lambda v, k: _count(v, k, 1)),
    "default_time": ("default_time_s", lambda v, k: parse_time(v, name=k)),
    "default_mem_mb": ("default_mem_mb", lambda v, k: _count(v, k, 1)),
    "default_mem": ("default_mem_mb", lambda v, k: parse_mem_mb(v, name=k)),
    "default_cpus": ("default_cpus", lambda v, k: _count(v, k, 1)),
}

#: Keys an admin may set for a group in the job limits.
JOB_LIMIT_KEYS = frozenset(_LIMIT_KEYS)

#: Defaults that must not be above their maximum: (default field, max field, admin key).
_DEFAULT_CAPS = (
    ("default_time_s", "max_time_s", "default_time"),
    ("default_mem_mb", "max_mem_mb", "default_mem"),
    ("default_cpus", "max_cpus", "default_cpus"),
)


def parse_group_job_limits(raw: Mapping[str, Any], *, where: str = "job_limits") -> JobLimits:
    """Validate one group's admin settings into :class:`JobLimits`.

    A default left out is lowered to its maximum when the built-in default is above it;
    an explicit default above its maximum is an error.

    Args:
        raw: e.g. ``{"executors": ["slurm"], "max_time": "2:00:00", "max_mem": "16G"}``.
        where: where the dict came from, used in error messages.

    Raises:
        ValueError: naming the bad key or value and what to write instead.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict such as {{'max_jobs': 4}}, not {_show(raw)}")
    unknown = sorted(str(k) for k in set(raw) - JOB_LIMIT_KEYS)
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(JOB_LIMIT_KEYS))}"
        )
    values: dict[str, Any] = {}
    given_by: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        target, parser = _LIMIT_KEYS[key]
        if target in given_by:
            raise ValueError(f"{where} sets both {given_by[target]} and {key}: keep one of them")
        try:
            values[target] = parser(value, key)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        given_by[target] = key
    limits = JobLimits(**values)
    for default_field, max_field, key in _DEFAULT_CAPS:
        default, cap = getattr(limits, default_field), getattr(limits, max_field)
        if default <= cap:
            continue
        if default_field in given_by:
            raise ValueError(
                f"{where}: {given_by[default_field]} is above {given_by.get(max_field, max_field)}"
                f" ({default} > {cap} in {default_field}/{max_field}): lower {key} or raise "
                "the maximum"
            )
        values[default_field] = cap
        limits = JobLimits(**values)
    return limits


def parse_job_limits(config: Mapping[str, Mapping[str, Any]]) -> dict[str, JobLimits]:
    """Validate the admins' job limits: group name -> settings.

    The group ``"*"`` holds the limits of every group not listed.

    Args:
        config: e.g. ``{"lqcd": {"executors": ["docker", "slurm"], "partitions": ["debug"],
            "max_gpus": 1, "max_time": "2:00:00", "max_mem": "16G", "max_jobs": 5}}``.

    Raises:
        ValueError: naming the group, the key and the fix.
    """
    if not isinstance(config, Mapping):
        raise ValueError(
            "job_limits must be a dict of group name -> limits dict, e.g. {'lqcd': {'max_jobs': 4}}"
        )
    parsed = {}
    for group, raw in config.items():
        if not isinstance(group, str) or not group:
            raise ValueError(f"job_limits has the key {_show(group)}: use group names (or '*')")
        parsed[group] = parse_group_job_limits(raw, where=f"job_limits[{group!r}]")
    return parsed


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
