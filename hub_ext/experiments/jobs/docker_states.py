"""Docker job containers -> job states (pure): label keys, ``inspect`` mapping, signal directive.

The executor (:mod:`.docker_executor`) does the I/O and hands container data here, as the Slurm
executor hands ``squeue`` output to :mod:`.states`.
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Mapping
from typing import Any

from latticehub.labels import PREFIX

from .executors import Observed
from .states import JobState

LABEL = f"{PREFIX}.job"
#: Label keys of job containers (distinct from the spawner's: a job is not a server slot).
HUB, JOB, USER, GROUP = f"{LABEL}.hub", f"{LABEL}.id", f"{LABEL}.user", f"{LABEL}.group"
TIME_S, WARN_S, GPUS, NODE = f"{LABEL}.time-s", f"{LABEL}.warn-s", f"{LABEL}.gpus", f"{LABEL}.node"

#: Container states that hold (or are about to hold) a slot.
LIVE = frozenset({"created", "running", "restarting", "paused"})
ENDED = frozenset({"exited", "dead"})
#: The warning signal directive of a rendered batch script (``#SBATCH --signal=B:USR1@120``).
SIGNAL_RE = re.compile(r"^#SBATCH --signal=(?:B:)?USR1@([0-9]{1,5})\s*$", re.MULTILINE)


def _signal_text(code: int) -> str:
    with contextlib.suppress(ValueError):
        return f" (killed by {signal.Signals(code - 128).name})"
    return ""


def observe_inspect(
    info: Mapping[str, Any],
    *,
    node: str,
    cancelled: str | None = None,
    timed_out: str | None = None,
) -> Observed:
    """Map a container's ``inspect`` data and the service's markers to the job's state (pure).

    Args:
        info: ``docker inspect`` of the job's container (``State``, ``HostConfig``).
        node: the engine's host name, reported for running and ended jobs.
        cancelled: text of the cancel marker (the job was cancelled), if any.
        timed_out: text of the timeout marker (the executor stopped it at its limit), if any.

    Returns:
        QUEUED while created, RUNNING while it runs (or is stopping), else the outcome: the
        markers first (KILLED ``CANCELLED``, FAILED ``TIMEOUT: ...``), then FAILED
        ``OUT_OF_MEMORY: ...``, FINISHED for exit 0, FAILED ``exit code N`` otherwise.
    """
    state = info.get("State") or {}
    status = state.get("Status", "")
    if status == "created":
        return Observed(JobState.QUEUED, "starting")
    if status in LIVE:
        if cancelled:
            return Observed(JobState.RUNNING, "cancelled: stopping", node=node)
        if timed_out:
            return Observed(JobState.RUNNING, "time limit reached: stopping", node=node)
        return Observed(JobState.RUNNING, f"running on {node}", node=node)
    code = int(state.get("ExitCode") or 0)
    if cancelled:
        return Observed(JobState.KILLED, cancelled, node=node, exit_code=code)
    if timed_out:
        return Observed(JobState.FAILED, timed_out, node=node, exit_code=code)
    mem_mb = int((info.get("HostConfig") or {}).get("Memory") or 0) // 2**20
    if state.get("OOMKilled") and code != 0:
        return Observed(
            JobState.FAILED,
            f"OUT_OF_MEMORY: the job exceeded its memory limit of {mem_mb} MB (ask for more mem)",
            node=node,
            exit_code=code,
        )
    if code == 0 and status == "exited":
        return Observed(JobState.FINISHED, "completed", node=node, exit_code=0)
    error = (state.get("Error") or "").strip()
    if error:
        return Observed(
            JobState.FAILED, f"the job's container could not run: {error}", node=node,
            exit_code=code or None,
        )  # fmt: skip
    if status == "dead":
        return Observed(JobState.FAILED, "the job's container died (engine error)", node=node)
    reason = f"exit code {code}{_signal_text(code)}"
    if code == 137 and mem_mb:
        reason += f": if you did not kill it, it ran out of its {mem_mb} MB (ask for more mem)"
    return Observed(JobState.FAILED, reason, node=node, exit_code=code)


def warn_seconds(script_text: str) -> int:
    r"""Seconds before the limit at which the script asked for SIGUSR1 (0: none).

    >>> warn_seconds("#!/bin/bash\n#SBATCH --signal=B:USR1@120\n")
    120
    """
    m = SIGNAL_RE.search(script_text)
    return int(m[1]) if m else 0
