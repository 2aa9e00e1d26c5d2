"""Swarm job services -> job states (pure): a task's status read as a container's ``inspect``.

A ``docker`` job on a Swarm is a service with one task that never restarts
(:mod:`.swarm_executor`). Its task's status (``new`` ... ``running`` ... ``complete`` /
``failed`` / ``shutdown`` / ``rejected``) carries what the plain engine's ``inspect`` does
(exit code, error), except the OOM flag: the executor adds it where it can read the
container (on its own node).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from .docker_states import observe_inspect
from .executors import Observed
from .states import JobState

#: Task states before the container runs (Swarm is finding a node, pulling, creating).
PENDING = frozenset({"new", "pending", "assigned", "accepted", "ready", "preparing", "starting"})
#: Task states after which nothing more happens.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})


def latest_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's newest task (the only one: job services never restart)."""
    return max(
        tasks, key=lambda t: ((t.get("Version") or {}).get("Index", 0), t.get("CreatedAt", "")),
        default=None,
    )  # fmt: skip


def task_state(task: Mapping[str, Any] | None) -> str:
    """The task's state ('' for no task yet)."""
    return str(((task or {}).get("Status") or {}).get("State") or "")


def parse_time(stamp: str) -> float | None:
    """Seconds since the epoch of Swarm's RFC 3339 time with nanoseconds (None if unreadable).

    >>> parse_time("2026-12-07T13:48:17.555138575Z")
    1796651297.555138
    """
    if not stamp:
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    digits = "".join(c for c in frac if c.isdigit())[:6]
    return base.timestamp() + (int(digits.ljust(6, "0")) / 1e6 if digits else 0.0)


def observe_stopped(*, cancelled: str | None, timed_out: str | None) -> Observed:
    """A service scaled to 0 whose task Swarm has already deleted (the markers say why).

    >>> observe_stopped(cancelled="CANCELLED", timed_out=None).state.value
    'KILLED'
    """
    if cancelled:
        return Observed(JobState.KILLED, cancelled)
    if timed_out:
        return Observed(JobState.FAILED, timed_out)
    return Observed(
        JobState.LOST, "the job's service was scaled to 0 outside latticehub; resubmit the job"
    )


def observe_task(
    task: Mapping[str, Any] | None,
    *,
    node: str,
    mem_bytes: int = 0,
    cancelled: str | None = None,
    timed_out: str | None = None,
    oom_killed: bool = False,
) -> Observed:
    """Map a job service's task and the service's markers to the job's state.

    Args:
        task: the service's latest task (None: Swarm has not made one yet).
        node: the host name of the task's node ('' while none is chosen).
        mem_bytes: the job's memory limit (for the out-of-memory reason).
        cancelled: text of the cancel marker, if any.
        timed_out: text of the timeout marker, if any.
        oom_killed: the container was killed for memory (known on the executor's own node).

    Returns:
        QUEUED while Swarm looks for a node with room (with Swarm's reason), RUNNING while the
        task runs, else the outcome as :func:`.docker_states.observe_inspect` words it; LOST
        when the task's node is gone.
    """
    state = task_state(task)
    status = (task or {}).get("Status") or {}
    err = str(status.get("Err") or "").strip()
    if not state or state in PENDING:
        if cancelled:
            return Observed(JobState.QUEUED, "cancelled: stopping")
        why = err or str(status.get("Message") or "") or "waiting for Swarm"
        return Observed(JobState.QUEUED, f"waiting for a node with room: {why}")
    if state in ("orphaned", "remove"):
        return Observed(
            JobState.LOST, "the job's node left the swarm (or its task was removed); resubmit it",
            node=node,
        )  # fmt: skip
    if state == "running":
        info: dict[str, Any] = {"State": {"Status": "running"}}
    else:
        code = int(((status.get("ContainerStatus") or {}).get("ExitCode")) or 0)
        error = ""
        if state == "rejected" or (state == "failed" and code == 0):
            error = err or f"Swarm {state} the task"
        info = {
            "State": {
                # an error without an exit code is not a completion
                "Status": "dead" if error else "exited",
                "ExitCode": code,
                "OOMKilled": oom_killed,
                "Error": error,
            }
        }
    info["HostConfig"] = {"Memory": mem_bytes}
    return observe_inspect(info, node=node, cancelled=cancelled, timed_out=timed_out)
