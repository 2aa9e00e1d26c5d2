"""Render a job's Slurm batch script (pure functions).

The script is a :class:`string.Template`: :data:`DEFAULT_TEMPLATE`, or an admin's own
template with the same ``$placeholders`` (see :data:`PLACEHOLDERS`). Every value is
checked again here, whatever :mod:`.spec` did before (defence in depth): paths must be
absolute and made of safe characters, names must match allow-lists, numbers must be
whole and in range, and each argument of the payload is ``shlex.quote``-d. A value
that could break out of its line raises :class:`ValueError`; nothing is escaped into
shape. The job's secrets live in an ``env_file`` that the script sources, never on a
command line.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .spec import EXECUTORS, NAME_RE, Resources, format_time, safe_slurm_name

#: Allow-list for paths written into ``#SBATCH`` lines and the script (absolute, no
#: whitespace, quotes, ``$``, ``%`` (a Slurm file name pattern), ``#`` or backslash).
PATH_RE = re.compile(r"/[A-Za-z0-9_.,+=@:/-]{0,4095}")

#: Allow-list for job ids.
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: Allow-list for the names of exported environment variables.
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")

#: Largest ``--signal`` offset Slurm accepts, seconds.
MAX_SIGNAL_S = 65535

#: What each placeholder of a template holds.
PLACEHOLDERS = {
    "directives": "all #SBATCH lines, one per line",
    "environment": "sourcing env_file and the exports (LATTICEHUB_JOB_ID, extra_env)",
    "payload": "the line that runs the command: exec [srun --kill-on-bad-exit=1 ...] ARGV",
    "command": "the payload's argv, shell-quoted",
    "job_id": "the job's id",
    "job_name": "the Slurm job name (lh-<job_id>)",
    "partition": "the partition, or empty",
    "account": "the account, or empty",
    "nodes": "nodes",
    "ntasks_per_node": "tasks per node",
    "cpus_per_task": "CPUs per task",
    "mem_mb": "memory per node, MB",
    "time": "the time limit as D-HH:MM:SS",
    "gpus": "GPUs per node",
    "workdir": "the job's working directory",
    "stdout": "the standard output file",
    "stderr": "the standard error file",
    "env_file": "the file of KEY=VALUE lines that the script sources",
}

#: The batch script: directives, then a strict shell that loads the job's environment and
#: replaces itself with the payload (so that ``--signal=B:USR1`` reaches it).
DEFAULT_TEMPLATE = """\
#!/bin/bash
$directives

set -euo pipefail
$environment

$payload
"""

#: Placeholders that every template must use.
REQUIRED_PLACEHOLDERS = ("environment", "payload")


@dataclass(frozen=True)
class BatchJob:
    """One job to render as a batch script.

    Attributes:
        job_id: the job's id (letters, digits, ``_ . -``).
        resources: what the job gets.
        workdir: absolute working directory (``--chdir``).
        env_file: absolute path of a 0600 file of ``KEY=VALUE`` lines (see
            :func:`render_env_file`) that the script sources: the job's token lives there.
        command: the payload's argv, e.g. ``("python", "-m", "flows.train", ...)``.
        stdout: absolute path of the standard output file.
        stderr: absolute path of the standard error file.
        signal_before_end_s: send ``SIGUSR1`` this long before the time limit so that the
            training checkpoints (0: no signal).
        requeue: whether Slurm may requeue the job (after preemption or a node failure).
        extra_env: more ``(NAME, value)`` pairs to export.
    """

    job_id: str
    resources: Resources
    workdir: str
    env_file: str
    command: tuple[str, ...]
    stdout: str
    stderr: str
    signal_before_end_s: int = 120
    requeue: bool = True
    extra_env: tuple[tuple[str, str], ...] = ()


def _check_path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{field}={value!r} must be an absolute path, e.g. /srv/jobs/abc/out.log")
    if not PATH_RE.fullmatch(value):
        bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9_.,+=@:/-]", c)})
        raise ValueError(
            f"{field}={value!r} has {', '.join(map(repr, bad)) or 'too many characters'}, which "
            "cannot go safely into a batch script: use letters, digits and _ . , + = @ : / -"
        )
    return value


def _check_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"{field}={value!r} is not a name: use 1 to 64 letters, digits and _ . -")
    return value


def _check_int(value: Any, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field}={value!r} must be a whole number >= {low}")
    if high is not None and value > high:
        raise ValueError(f"{field}={value!r} must be at most {high}")
    return value


def _check_resources(res: Any) -> Resources:
    if not isinstance(res, Resources):
        raise ValueError(f"resources={res!r} must be a Resources (see spec.validate_resources)")
    if res.executor not in EXECUTORS:
        raise ValueError(f"resources.executor={res.executor!r} must be one of {EXECUTORS}")
    _check_name(res.partition, "resources.partition")
    _check_name(res.account, "resources.account")
    _check_int(res.nodes, "resources.nodes", 1)
    _check_int(res.gpus, "resources.gpus", 0)
    _check_int(res.cpus, "resources.cpus", 1)
    _check_int(res.mem_mb, "resources.mem_mb", 1)
    _check_int(res.time_s, "resources.time_s", 1)
    _check_int(res.tasks_per_node, "resources.tasks_per_node", 1)
    return res


def _check_env_value(name: Any, value: Any, field: str) -> str:
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            f"{field} has the name {name!r}: use capitals, digits and _, not starting with a "
            "digit, e.g. OMP_NUM_THREADS"
        )
    if not isinstance(value, str) or "\0" in value:
        raise ValueError(f"{field}[{name}]={value!r} must be a string without NUL characters")
    return value


def _check_command(command: Any) -> tuple[str, ...]:
    if isinstance(command, str) or not isinstance(command, Sequence) or not command:
        raise ValueError(
            f"command={command!r} must be a non-empty argv tuple, e.g. ('python', '-m', 'x')"
        )
    for i, arg in enumerate(command):
        if not isinstance(arg, str) or "\0" in arg:
            raise ValueError(f"command[{i}]={arg!r} must be a string without NUL characters")
    if not command[0]:
        raise ValueError("command[0] is empty: name the program to run, e.g. 'python'")
    return tuple(command)


def _quote_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(arg) for arg in argv)


def directives(job: BatchJob) -> list[str]:
    """The ``#SBATCH`` lines of a job (values checked by :func:`render_batch_script`)."""
    res = job.resources
    lines = [f"--job-name={safe_slurm_name(job.job_id)}"]
    if res.partition:
        lines.append(f"--partition={res.partition}")
    if res.account:
        lines.append(f"--account={res.account}")
    lines += [
        f"--nodes={res.nodes}",
        f"--ntasks-per-node={res.tasks_per_node}",
        f"--cpus-per-task={res.cpus}",
        f"--mem={res.mem_mb}M",
        f"--time={format_time(res.time_s)}",
    ]
    if res.gpus:
        lines.append(f"--gres=gpu:{res.gpus}")
    lines += [f"--output={job.stdout}", f"--error={job.stderr}", f"--chdir={job.workdir}"]
    if job.signal_before_end_s:
        lines.append(f"--signal=B:USR1@{job.signal_before_end_s}")
    lines.append("--requeue" if job.requeue else "--no-requeue")
    lines.append("--open-mode=append")
    # nothing of the submitter's environment (the service's) reaches the job: the script
    # exports what the job needs explicitly
    lines.append("--export=NONE")
    return [f"#SBATCH {line}" for line in lines]


def _check_template(template: str) -> string.Template:
    if not isinstance(template, str):
        raise ValueError(f"template={template!r} must be a string")
    if not template.startswith("#!"):
        raise ValueError("the batch script template must start with a '#!' line, e.g. #!/bin/bash")
    tpl = string.Template(template)
    if not tpl.is_valid():
        bad = next(m for m in tpl.pattern.finditer(template) if m.group("invalid") is not None)
        where = template[bad.start() : bad.start() + 12]
        raise ValueError(
            f"the batch script template has an invalid placeholder near {where!r}: write $$ "
            "for a literal $, or use one of " + ", ".join(f"${p}" for p in PLACEHOLDERS)
        )
    used = tpl.get_identifiers()
    unknown = sorted(set(used) - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"the batch script template has unknown placeholder(s) "
            f"{', '.join('$' + u for u in unknown)}; known: "
            + ", ".join(f"${p}" for p in PLACEHOLDERS)
            + " (write $$ for a literal $)"
        )
    missing = [p for p in REQUIRED_PLACEHOLDERS if p not in used]
    if missing:
        raise ValueError(
            f"the batch script template lacks {', '.join('$' + m for m in missing)}: without "
            "them the job gets no token or runs nothing"
        )
    return tpl


def render_batch_script(job: BatchJob, template: str | None = None) -> str:
    """Render the batch script of a job.

    The payload runs under ``srun --kill-on-bad-exit=1 --cpus-per-task=N`` (srun of Slurm
    22.05 to 23.02 does not inherit ``--cpus-per-task``) when the job has more than one
    task (``nodes * tasks_per_node > 1``) and directly otherwise; either way through
    ``exec``, so that ``--signal=B:USR1@N`` reaches it and the training can checkpoint.

    Args:
        job: the job.
        template: an admin's template (``None``: :data:`DEFAULT_TEMPLATE`); it must
            start with ``#!`` and use ``$environment`` and ``$payload``.

    Returns:
        The script's text.

    Raises:
        ValueError: for a value that is not allowed (naming it and the fix), or a
            template with unknown or invalid placeholders.
    """
    tpl = _check_template(DEFAULT_TEMPLATE if template is None else template)
    if not isinstance(job, BatchJob):
        raise ValueError(f"job={job!r} must be a BatchJob")
    if not isinstance(job.job_id, str) or not JOB_ID_RE.fullmatch(job.job_id):
        raise ValueError(
            f"job_id={job.job_id!r} is not a job id: use letters, digits and _ . - (at most 128)"
        )
    res = _check_resources(job.resources)
    for field in ("workdir", "env_file", "stdout", "stderr"):
        _check_path(getattr(job, field), field)
    command = _check_command(job.command)
    _check_int(job.signal_before_end_s, "signal_before_end_s", 0, MAX_SIGNAL_S)
    if not isinstance(job.requeue, bool):
        raise ValueError(f"requeue={job.requeue!r} must be true or false")
    exports = [f"export LATTICEHUB_JOB_ID={shlex.quote(job.job_id)}"]
    seen = {"LATTICEHUB_JOB_ID"}
    for pair in job.extra_env:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"extra_env has {pair!r}: use (NAME, value) pairs")
        name, value = pair
        _check_env_value(name, value, "extra_env")
        if name in seen:
            raise ValueError(f"extra_env sets {name} twice (or overrides it): set it once")
        seen.add(name)
        exports.append(f"export {name}={shlex.quote(value)}")
    environment = "\n".join([f"set -a; source {shlex.quote(job.env_file)}; set +a", *exports])
    argv = _quote_argv(command)
    # srun of Slurm 22.05 to 23.02 does not inherit --cpus-per-task from sbatch: repeat it
    runner = f"srun --kill-on-bad-exit=1 --cpus-per-task={res.cpus} " if res.total_tasks > 1 else ""
    values = {
        "directives": "\n".join(directives(job)),
        "environment": environment,
        "payload": f"exec {runner}{argv}",
        "command": argv,
        "job_id": job.job_id,
        "job_name": safe_slurm_name(job.job_id),
        "partition": res.partition or "",
        "account": res.account or "",
        "nodes": str(res.nodes),
        "ntasks_per_node": str(res.tasks_per_node),
        "cpus_per_task": str(res.cpus),
        "mem_mb": str(res.mem_mb),
        "time": format_time(res.time_s),
        "gpus": str(res.gpus),
        "workdir": job.workdir,
        "stdout": job.stdout,
        "stderr": job.stderr,
        "env_file": job.env_file,
    }
    script = tpl.substitute(values)
    if "\0" in script:  # pragma: no cover - every value above is checked for NUL
        raise ValueError("the rendered batch script contains a NUL character")
    return script


def render_env_file(env: Mapping[str, str]) -> str:
    r"""Render ``KEY=VALUE`` lines for the ``env_file`` that the batch script sources.

    Values are ``shlex.quote``-d, so that sourcing the file with ``set -a`` exports them
    literally (a token with ``$`` or quotes stays as it is). Write the file with mode 0600.

    Raises:
        ValueError: for a name that is not ``^[A-Z_][A-Z0-9_]*$`` or a value with NUL.

    >>> render_env_file({"LATTICEHUB_TOKEN": "a b$c"})
    "LATTICEHUB_TOKEN='a b$c'\n"
    """
    if not isinstance(env, Mapping):
        raise ValueError(f"env={env!r} must be a dict of NAME -> value")
    lines = []
    for name, value in env.items():
        _check_env_value(name, value, "env")
        lines.append(f"{name}={shlex.quote(value)}\n")
    return "".join(lines)
