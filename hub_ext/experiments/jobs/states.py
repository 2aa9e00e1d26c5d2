"""Slurm job states -> job/run statuses, and parsing of ``sbatch``/``squeue`` output.

Pure functions: the executor runs the commands and hands their output here. One
``squeue`` call per poll asks for every job in every state (``--states=all``), so jobs
that ended within Slurm's ``MinJobAge`` still show how they ended; a job that is no
longer listed at all is the caller's to mark ``LOST``.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

# A job's state is its run's status: one enum (``JobState is RunStatus``), so a job and its
# run speak the same words and store the same strings.
from ..store.entities import JobState

__all__ = [
    "SQUEUE_ARGS",
    "SQUEUE_DELIMITER",
    "SQUEUE_FIELDS",
    "SQUEUE_FORMAT",
    "STATE_TABLE",
    "JobState",
    "SlurmStatus",
    "exit_code_of",
    "is_terminal",
    "map_state",
    "parse_sbatch_parsable",
    "parse_squeue",
    "slurm_state_name",
]


def is_terminal(state: JobState | str) -> bool:
    """Whether a job in ``state`` has ended (FINISHED, FAILED, KILLED or LOST)."""
    return JobState(state).is_final


@dataclass(frozen=True)
class SlurmStatus:
    """One job as ``squeue`` lists it (all fields as Slurm prints them).

    Attributes:
        job_id: e.g. ``"123"``, ``"123_4"`` (array task) or ``"123+0"`` (het job part).
        state: e.g. ``"PENDING"``, ``"RUNNING"``, ``"CANCELLED by 1000"``.
        reason: e.g. ``"Resources"``, ``"None"``.
        node: the node list, e.g. ``"gpu[01-02]"``, empty while pending.
        exit_code: ``"2:0"`` (exit code 2, signal 0) as ``scontrol``/``sacct`` print it,
            or the raw wait status (``"512"``) as ``squeue --Format=exit_code`` prints it.
    """

    job_id: str
    state: str
    reason: str = ""
    node: str = ""
    exit_code: str = ""


# -- squeue -----------------------------------------------------------------------------

#: ``SlurmStatus`` attribute -> ``squeue --Format`` field, in output order. Change here (and
#: only here) if a Slurm version prints them differently; the parser follows this list.
#: ``exit_code`` is the raw wait status (``exit << 8 | signal``). The reason goes last as it
#: can be free text ("Nodes required for job are DOWN, DRAINED or ..."): a stray delimiter
#: in it stays part of it.
SQUEUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("job_id", "JobID"),
    ("state", "State"),
    ("exit_code", "exit_code"),
    ("node", "NodeList"),
    ("reason", "Reason"),
)

#: Field delimiter of :data:`SQUEUE_FORMAT`.
SQUEUE_DELIMITER = "|"

#: The ``--Format`` value: ``name:|`` prints a field unpadded with ``|`` after it; the last
#: field has no suffix. ``JobID:|,State:|,exit_code:|,NodeList:|,Reason:``.
SQUEUE_FORMAT = ",".join(
    [f"{name}:{SQUEUE_DELIMITER}" for _, name in SQUEUE_FIELDS[:-1]] + [f"{SQUEUE_FIELDS[-1][1]}:"]
)

#: Arguments of the one ``squeue`` call per poll (after the program name).
SQUEUE_ARGS: tuple[str, ...] = ("--states=all", "--noheader", f"--Format={SQUEUE_FORMAT}")

_HEADER_WORDS = {"JOBID", "JOB_ID"}


def parse_squeue(
    output: str, fields: tuple[tuple[str, str], ...] = SQUEUE_FIELDS
) -> dict[str, SlurmStatus]:
    """Parse ``squeue --states=all --noheader --Format=<SQUEUE_FORMAT>`` output.

    Blank lines, surrounding spaces, a trailing delimiter and a header line are tolerated;
    extra delimiters stay in the last field (the free-text reason). Job ids stay strings
    (``123_4``, ``123+0``). A job listed twice keeps its last line.

    Args:
        output: squeue's standard output.
        fields: the ``(attribute, squeue field)`` pairs in output order.

    Returns:
        Job id -> status.

    Raises:
        ValueError: for a line with too few fields (the format and the parser disagree),
            quoting the line and the expected fields.
    """
    names = [attr for attr, _ in fields]
    statuses: dict[str, SlurmStatus] = {}
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split(SQUEUE_DELIMITER)
        if len(parts) > len(names) and not parts[-1].strip():
            parts.pop()  # a trailing delimiter
        if len(parts) > len(names):
            parts[len(names) - 1 :] = [SQUEUE_DELIMITER.join(parts[len(names) - 1 :])]
        parts = [p.strip() for p in parts]
        if len(parts) != len(names):
            raise ValueError(
                f"squeue line {raw!r} has {len(parts)} field(s), expected {len(names)} "
                f"({SQUEUE_DELIMITER.join(n for _, n in fields)}): check SQUEUE_FIELDS against "
                "this Slurm version"
            )
        values = dict(zip(names, parts, strict=True))
        job_id = values.get("job_id", "")
        if job_id.upper() in _HEADER_WORDS:
            continue
        if not job_id:
            raise ValueError(f"squeue line {raw!r} has no job id")
        statuses[job_id] = SlurmStatus(
            job_id=job_id,
            state=values.get("state", ""),
            reason=values.get("reason", ""),
            node=values.get("node", ""),
            exit_code=values.get("exit_code", ""),
        )
    return statuses


_SBATCH_RE = re.compile(r"([0-9]+)(?:;[A-Za-z0-9_.-]+)?")


def parse_sbatch_parsable(output: str) -> str:
    """The job id from ``sbatch --parsable`` output: ``"123"`` or ``"123;cluster"``.

    Raises:
        ValueError: for anything else, quoting the output.

    >>> parse_sbatch_parsable("4711;cluster")
    '4711'
    """
    text = output.strip() if isinstance(output, str) else ""
    m = _SBATCH_RE.fullmatch(text)
    if not m:
        raise ValueError(
            f"sbatch --parsable printed {output!r}, not a job id such as '123' or "
            "'123;cluster': check that sbatch is Slurm's and that --parsable is passed"
        )
    return m[1]


# -- states -----------------------------------------------------------------------------


def _exit_parts(text: str) -> tuple[int, int] | None:
    """``(exit code, signal)`` from ``"2:0"`` or a raw wait status ``"512"``."""
    text = (text or "").strip()
    if m := re.fullmatch(r"([0-9]{1,3}):([0-9]{1,3})", text):
        return int(m[1]), int(m[2])
    if re.fullmatch(r"[0-9]{1,10}", text):
        status = int(text)
        return (status >> 8) & 0xFF, status & 0x7F
    return None


def exit_code_of(status: SlurmStatus) -> int | None:
    """The job's exit code, as a shell reports it (``128 + signal`` if killed by one).

    ``None`` when Slurm printed none (blank, ``N/A``).

    >>> exit_code_of(SlurmStatus("1", "FAILED", exit_code="2:0"))
    2
    >>> exit_code_of(SlurmStatus("1", "FAILED", exit_code="0:9"))
    137
    """
    parts = _exit_parts(status.exit_code)
    if parts is None:
        return None
    code, sig = parts
    return 128 + sig if sig else code


def _signal_name(sig: int) -> str:
    try:
        return f" ({signal.Signals(sig).name})"
    except ValueError:
        return ""


def _failure(status: SlurmStatus) -> str:
    parts = _exit_parts(status.exit_code)
    if parts is None:
        text = "failed"
    elif parts[1]:
        text = f"killed by signal {parts[1]}{_signal_name(parts[1])}"
    else:
        text = f"exit code {parts[0]}"
    reason = status.reason.strip()
    if reason and reason not in ("None", "NonZeroExitCode", "(null)"):
        text += f" ({reason})"
    return text


def _pending(status: SlurmStatus) -> str:
    reason = status.reason.strip().strip("()")
    return "pending" if reason in ("", "None", "null") else f"pending: {reason}"


def _running(status: SlurmStatus) -> str:
    node = status.node.strip()
    return f"running on {node}" if node and node != "(null)" else "running"


#: Slurm state -> (job state, reason). The reason is a string or a function of the status.
STATE_TABLE: dict[str, tuple[JobState, object]] = {
    "PENDING": (JobState.QUEUED, _pending),
    "REQUEUED": (JobState.QUEUED, "requeued"),
    "REQUEUE_HOLD": (JobState.QUEUED, "requeued"),
    "REQUEUE_FED": (JobState.QUEUED, "requeued"),
    "SPECIAL_EXIT": (JobState.QUEUED, "requeued (held after a special exit)"),
    "RESV_DEL_HOLD": (JobState.QUEUED, "held: its reservation was deleted"),
    "CONFIGURING": (JobState.RUNNING, _running),
    "RUNNING": (JobState.RUNNING, _running),
    "COMPLETING": (JobState.RUNNING, _running),
    "RESIZING": (JobState.RUNNING, _running),
    "STAGE_OUT": (JobState.RUNNING, _running),
    "SIGNALING": (JobState.RUNNING, _running),
    "SUSPENDED": (JobState.RUNNING, "suspended"),
    "STOPPED": (JobState.RUNNING, "suspended"),
    "COMPLETED": (JobState.FINISHED, "completed"),
    "FAILED": (JobState.FAILED, _failure),
    "OUT_OF_MEMORY": (
        JobState.FAILED,
        "OUT_OF_MEMORY: the job exceeded its memory limit (ask for more --mem)",
    ),
    "TIMEOUT": (JobState.FAILED, "TIMEOUT: the job reached its time limit"),
    "DEADLINE": (JobState.FAILED, "DEADLINE: the job reached its deadline"),
    "NODE_FAIL": (JobState.FAILED, "NODE_FAIL: a node of the job failed"),
    "BOOT_FAIL": (JobState.FAILED, "BOOT_FAIL: a node of the job failed to boot"),
    "PREEMPTED": (JobState.KILLED, "PREEMPTED"),
    "CANCELLED": (JobState.KILLED, "CANCELLED"),
}


def slurm_state_name(state: str) -> str:
    """The bare state word, e.g. ``"CANCELLED by 1000"`` -> ``"CANCELLED"``."""
    words = (state or "").strip().split()
    return words[0].rstrip("+").upper() if words else ""


def map_state(status: SlurmStatus) -> tuple[JobState, str]:
    """Map a Slurm status to the job's state and a reason for people.

    A requeued preemption shows as ``PENDING``/``REQUEUED`` and so stays ``QUEUED``; an
    unknown state counts as ``RUNNING`` ("unknown Slurm state X") rather than failing.

    >>> map_state(SlurmStatus("7", "PENDING", "Priority"))
    (<RunStatus.QUEUED: 'QUEUED'>, 'pending: Priority')
    """
    name = slurm_state_name(status.state)
    row = STATE_TABLE.get(name)
    if row is None:
        return JobState.RUNNING, f"unknown Slurm state {status.state.strip()}"
    state, reason = row
    return state, reason(status) if callable(reason) else str(reason)
