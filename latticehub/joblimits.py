"""Job limits: what each group's batch jobs may ask for, and Slurm's units (pure, stdlib).

The admins' per-group job limits are one section of the policy document
(:mod:`latticehub.policy`); :func:`parse_group_job_limits` validates them with messages that
name the key and the fix. Times use Slurm's ``--time`` formats (a bare number means minutes)
and memory sizes use ``K``/``M``/``G``/``T`` suffixes in powers of 1024 (a bare number means
MB), as Slurm's ``--mem`` does.
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

_MIB = 1024**2
_MEM_RE = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?([KMGTkmgt](?:i?[Bb])?)?")
_CLOCK_RE = re.compile(r"[0-9]{1,7}(?::[0-9]{1,2}){0,2}")
_DAYS_RE = re.compile(r"([0-9]{1,5})-([0-9]{1,2})(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?")
_TIME_FORMS = "minutes (90), 'MM:SS', 'HH:MM:SS' ('1:30:00') or 'D-HH:MM:SS' ('2-00:00:00')"


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


def show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, shortened, for messages (never prints raw newlines)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_chars(text: str) -> str | None:
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
        raise ValueError(f"{name}={show(value)} is not a time: use {_TIME_FORMS}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{name}={value} must be a positive number of minutes, e.g. 90")
        return value * 60
    problem = bad_chars(value)
    if problem:
        raise ValueError(f"{name}={show(value)} {problem}: write it as {_TIME_FORMS}")
    if m := _DAYS_RE.fullmatch(value):
        days, hours = int(m[1]), int(m[2])
        minutes, seconds = int(m[3] or 0), int(m[4] or 0)
        if hours >= 24 or minutes >= 60 or seconds >= 60:
            raise ValueError(
                f"{name}={show(value)} is out of range: hours must be below 24 and minutes "
                "and seconds below 60 in 'D-HH:MM:SS', e.g. '1-12:00:00'"
            )
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    elif _CLOCK_RE.fullmatch(value):
        parts = [int(p) for p in value.split(":")]
        if any(p >= 60 for p in parts[1:]):
            raise ValueError(
                f"{name}={show(value)} is out of range: minutes and seconds after a ':' must "
                "be below 60, e.g. '1:30:00'"
            )
        if len(parts) == 1:
            total = parts[0] * 60
        elif len(parts) == 2:
            total = parts[0] * 60 + parts[1]
        else:
            total = (parts[0] * 60 + parts[1]) * 60 + parts[2]
    else:
        raise ValueError(f"{name}={show(value)} is not a Slurm time: use {_TIME_FORMS}")
    if total <= 0:
        raise ValueError(f"{name}={show(value)} must be longer than zero, e.g. '1:00:00'")
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
            f"time={show(seconds)} must be a positive whole number of seconds "
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
        raise ValueError(f"{name}={show(value)} is not a memory size: use {forms}")
    if isinstance(value, int):
        mb = value
    else:
        problem = bad_chars(value)
        if problem:
            raise ValueError(f"{name}={show(value)} {problem}: use {forms}")
        m = _MEM_RE.fullmatch(value)
        if not m:
            raise ValueError(f"{name}={show(value)} is not a memory size: use {forms}")
        if m[3] is None:
            if m[2] is not None:
                raise ValueError(f"{name}={show(value)} needs a unit for a fraction: use {forms}")
            mb = int(m[1])
        else:
            mb = math.ceil(parse_bytes(value, name=name) / _MIB)
    if mb <= 0:
        raise ValueError(f"{name}={show(value)} must be more than zero: use {forms}")
    return mb


# -- admin configuration ----------------------------------------------------------------


def _count(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={show(value)} must be a whole number >= {minimum}")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key}={show(value)} must be a list of names, e.g. {key}=['a', 'b']")
    for item in value:
        if not isinstance(item, str) or not NAME_RE.fullmatch(item):
            raise ValueError(
                f"{key} has {show(item)}, which is not a name: use 1 to 64 letters, digits "
                "and _ . -"
            )
    return tuple(value)


def _executors(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{key}={show(value)} must be a non-empty list, e.g. ['docker', 'slurm']")
    for item in value:
        if item not in EXECUTORS:
            raise ValueError(f"{key} has {show(item)}: known executors are {', '.join(EXECUTORS)}")
    return tuple(value)


#: Admin keys -> (JobLimits field, parser). ``max_time``/``max_mem`` ... take human units.
_LIMIT_KEYS: dict[str, tuple[str, Any]] = {
    "executors": ("executors", _executors),
    "partitions": ("partitions", _names),
    "accounts": ("accounts", _names),
    "max_jobs": ("max_jobs", lambda v, k: _count(v, k, 0)),
    "max_jobs_per_user": ("max_jobs_per_user", lambda v, k: _count(v, k, 0)),
    "max_nodes": ("max_nodes", lambda v, k: _count(v, k, 1)),
    "gpus": ("max_gpus", lambda v, k: _count(v, k, 0)),
    "max_gpus": ("max_gpus", lambda v, k: _count(v, k, 0)),
    "cpu_limit": ("max_cpus", lambda v, k: _count(v, k, 1)),
    "max_cpus": ("max_cpus", lambda v, k: _count(v, k, 1)),
    "mem_limit": ("max_mem_mb", lambda v, k: parse_mem_mb(v, name=k)),
    "max_mem_mb": ("max_mem_mb", lambda v, k: _count(v, k, 1)),
    "max_mem": ("max_mem_mb", lambda v, k: parse_mem_mb(v, name=k)),
    "time_limit": ("max_time_s", lambda v, k: parse_time(v, name=k)),
    "max_time_s": ("max_time_s", lambda v, k: _count(v, k, 1)),
    "max_time": ("max_time_s", lambda v, k: parse_time(v, name=k)),
    "default_time_s": ("default_time_s", lambda v, k: _count(v, k, 1)),
    "default_time": ("default_time_s", lambda v, k: parse_time(v, name=k)),
    "default_mem_mb": ("default_mem_mb", lambda v, k: _count(v, k, 1)),
    "default_mem": ("default_mem_mb", lambda v, k: parse_mem_mb(v, name=k)),
    "default_cpus": ("default_cpus", lambda v, k: _count(v, k, 1)),
}

#: Old spellings of the job limits -> the policy document's names, which are the server
#: ceilings' names for the same things (``mem_limit``, ``cpu_limit``, ``gpus``). The old ones
#: keep working in ``JobsConfig.job_limits`` and ``$LATTICEHUB_JOB_LIMITS`` with a deprecation
#: message; the policy document takes only the new ones.
DEPRECATED_JOB_KEYS = {
    "max_mem": "mem_limit",
    "max_mem_mb": "mem_limit",
    "max_cpus": "cpu_limit",
    "max_gpus": "gpus",
    "max_time": "time_limit",
    "max_time_s": "time_limit",
}

#: Keys an admin may set for a group in the job limits (the policy document's names).
JOB_LIMIT_KEYS = frozenset(_LIMIT_KEYS) - frozenset(DEPRECATED_JOB_KEYS)


def deprecated_job_keys(config: Mapping[str, Any]) -> list[str]:
    """The old spellings used in job limits (group -> settings), as ``"old -> new"`` lines."""
    found = set()
    for raw in config.values():
        if isinstance(raw, Mapping):
            found |= {f"{k} -> {DEPRECATED_JOB_KEYS[k]}" for k in raw if k in DEPRECATED_JOB_KEYS}
    return sorted(found)


#: Defaults that must not be above their maximum: (default field, max field, admin key).
_DEFAULT_CAPS = (
    ("default_time_s", "max_time_s", "default_time"),
    ("default_mem_mb", "max_mem_mb", "default_mem"),
    ("default_cpus", "max_cpus", "default_cpus"),
)


def parse_group_job_limits(
    raw: Mapping[str, Any], *, where: str = "job_limits", old_names: bool = True
) -> JobLimits:
    """Validate one group's admin settings into :class:`JobLimits`.

    A default left out is lowered to its maximum when the built-in default is above it;
    an explicit default above its maximum is an error.

    Args:
        raw: e.g. ``{"executors": ["slurm"], "time_limit": "2:00:00", "mem_limit": "16G"}``.
        where: where the dict came from, used in error messages.
        old_names: accept the :data:`DEPRECATED_JOB_KEYS` too (``False`` in the policy
            document, which has only the new names).

    Raises:
        ValueError: naming the bad key or value and what to write instead.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict such as {{'max_jobs': 4}}, not {show(raw)}")
    known = JOB_LIMIT_KEYS | (frozenset(DEPRECATED_JOB_KEYS) if old_names else frozenset())
    renamed = sorted(k for k in raw if k in DEPRECATED_JOB_KEYS and not old_names)
    if renamed:
        raise ValueError(
            f"{where} uses the old name(s) "
            + ", ".join(f"{k} (write {DEPRECATED_JOB_KEYS[k]})" for k in renamed)
        )
    unknown = sorted(str(k) for k in set(raw) - known)
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
            "gpus": 1, "time_limit": "2:00:00", "mem_limit": "16G", "max_jobs": 5}}``
            (the old names, e.g. ``max_mem``, are accepted too).

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
            raise ValueError(f"job_limits has the key {show(group)}: use group names (or '*')")
        parsed[group] = parse_group_job_limits(raw, where=f"job_limits[{group!r}]")
    return parsed
