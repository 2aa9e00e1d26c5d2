"""Swarm job tasks -> job states (pure): observe_task, latest_task, task_state, parse_time."""

from __future__ import annotations

import datetime as dt

import pytest

from hub_ext.experiments.jobs.executors import Observed
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.swarm_states import (
    ENDED,
    PENDING,
    latest_task,
    observe_task,
    parse_time,
    task_state,
)

Q, R, F, X, K, L = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.FINISHED,
    JobState.FAILED,
    JobState.KILLED,
    JobState.LOST,
)
MB64 = 64 * 2**20
NODE = "gpu01"
WAITING = "waiting for a node with room: "
NO_ROOM = "no suitable node (insufficient resources on 1 node)"
TIMEOUT = "TIMEOUT: the job reached its time limit of 5 s (ask for more time)"
OOM = "OUT_OF_MEMORY: the job exceeded its memory limit of 64 MB (ask for more mem)"
KILL9 = (
    "exit code 137 (killed by SIGKILL): if you did not kill it, it ran out of its 64 MB "
    "(ask for more mem)"
)


def task(state: str, code: int | None = None, err: str = "", message: str = "", index=1) -> dict:
    """A task as the Engine API's ``GET /tasks`` lists it (only the keys the mapping reads)."""
    status: dict = {"State": state, "Message": message, "Timestamp": "2026-01-02T03:04:05.5Z"}
    if err:
        status["Err"] = err
    if code is not None:
        status["ContainerStatus"] = {"ContainerID": "c0ffee", "PID": 0, "ExitCode": code}
    return {
        "ID": f"task{index}",
        "Version": {"Index": index},
        "NodeID": "n1",
        "Status": status,
        "DesiredState": "running",
    }


# -- observe_task: the state table ----------------------------------------------------------
@pytest.mark.parametrize("state", sorted(PENDING))
def test_each_pending_state_is_queued_with_swarms_err(state):
    seen = observe_task(task(state, err=NO_ROOM, message="pending task scheduling"), node="")
    assert seen == Observed(Q, WAITING + NO_ROOM)


@pytest.mark.parametrize("state", sorted(PENDING))
def test_each_pending_state_without_err_gives_swarms_message(state):
    seen = observe_task(task(state, message="pending task scheduling"), node="")
    assert seen == Observed(Q, WAITING + "pending task scheduling")


@pytest.mark.parametrize(
    ("the_task", "kwargs", "expected"),
    [
        pytest.param(None, {}, Observed(Q, WAITING + "waiting for Swarm"), id="no-task"),
        pytest.param({}, {}, Observed(Q, WAITING + "waiting for Swarm"), id="empty-task"),
        pytest.param({"Status": {}}, {}, Observed(Q, WAITING + "waiting for Swarm"), id="no-state"),
        pytest.param(
            task("pending", err="  " + NO_ROOM + "\n"),
            {},
            Observed(Q, WAITING + NO_ROOM),
            id="pending-err-stripped",
        ),
        pytest.param(
            task("new", message="created"), {}, Observed(Q, WAITING + "created"), id="new"
        ),
        pytest.param(
            task("pending", err=NO_ROOM),
            {"cancelled": "CANCELLED"},
            Observed(Q, "cancelled: stopping"),
            id="pending-cancelled",
        ),
        pytest.param(
            None,
            {"cancelled": "CANCELLED"},
            Observed(Q, "cancelled: stopping"),
            id="no-task-cancelled",
        ),
        pytest.param(
            task("running", message="started"),
            {"node": NODE},
            Observed(R, f"running on {NODE}", node=NODE),
            id="running",
        ),
        pytest.param(
            task("running"),
            {"node": NODE, "cancelled": "CANCELLED"},
            Observed(R, "cancelled: stopping", node=NODE),
            id="running-cancelled",
        ),
        pytest.param(
            task("running"),
            {"node": NODE, "timed_out": TIMEOUT},
            Observed(R, "time limit reached: stopping", node=NODE),
            id="running-timed-out",
        ),
        pytest.param(
            task("complete", 0, message="finished"),
            {"node": NODE},
            Observed(F, "completed", node=NODE, exit_code=0),
            id="complete",
        ),
        pytest.param(
            task("failed", 3, err="task: non-zero exit (3)"),
            {"node": NODE},
            Observed(X, "exit code 3", node=NODE, exit_code=3),
            id="failed-exit-3",
        ),
        pytest.param(
            task("failed", 137, err="task: non-zero exit (137)"),
            {"node": NODE, "mem_bytes": MB64, "oom_killed": True},
            Observed(X, OOM, node=NODE, exit_code=137),
            id="failed-137-oom",
        ),
        pytest.param(
            task("failed", 137, err="task: non-zero exit (137)"),
            {"node": NODE, "mem_bytes": MB64, "oom_killed": False},
            Observed(X, KILL9, node=NODE, exit_code=137),
            id="failed-137-not-known-oom",
        ),
        pytest.param(
            task("failed", 137),
            {"node": NODE},
            Observed(X, "exit code 137 (killed by SIGKILL)", node=NODE, exit_code=137),
            id="failed-137-no-limit",
        ),
        pytest.param(
            task("failed", 0, err="starting container failed: OCI runtime create failed"),
            {"node": NODE},
            Observed(
                X,
                "the job's container could not run: starting container failed: OCI runtime "
                "create failed",
                node=NODE,
            ),
            id="failed-exit-0-with-err",
        ),
        pytest.param(
            task("failed"),
            {"node": NODE},
            Observed(X, "the job's container could not run: Swarm failed the task", node=NODE),
            id="failed-no-container",
        ),
        pytest.param(
            task("rejected", err="No such image: latticehub/nope:latest"),
            {"node": NODE},
            Observed(
                X,
                "the job's container could not run: No such image: latticehub/nope:latest",
                node=NODE,
            ),
            id="rejected-with-err",
        ),
        pytest.param(
            task("rejected"),
            {"node": NODE},
            Observed(X, "the job's container could not run: Swarm rejected the task", node=NODE),
            id="rejected-without-err",
        ),
        pytest.param(
            task("shutdown", 143),
            {"node": NODE, "cancelled": "CANCELLED"},
            Observed(K, "CANCELLED", node=NODE, exit_code=143),
            id="shutdown-cancelled",
        ),
        pytest.param(
            task("shutdown"),
            {"node": "", "cancelled": "CANCELLED"},
            Observed(K, "CANCELLED", exit_code=0),
            id="shutdown-before-start-cancelled",
        ),
        pytest.param(
            task("shutdown", 137),
            {"node": NODE, "mem_bytes": MB64, "timed_out": TIMEOUT},
            Observed(X, TIMEOUT, node=NODE, exit_code=137),
            id="shutdown-timed-out",
        ),
        pytest.param(
            task("failed", 137),
            {"node": NODE, "oom_killed": True, "cancelled": "CANCELLED"},
            Observed(K, "CANCELLED", node=NODE, exit_code=137),
            id="cancel-beats-oom",
        ),
        pytest.param(
            task("orphaned"),
            {"node": NODE},
            Observed(
                L,
                "the job's node left the swarm (or its task was removed); resubmit it",
                node=NODE,
            ),
            id="orphaned",
        ),
        pytest.param(
            task("remove", 0),
            {"node": NODE, "cancelled": "CANCELLED"},
            Observed(
                L,
                "the job's node left the swarm (or its task was removed); resubmit it",
                node=NODE,
            ),
            id="remove",
        ),
    ],
)
def test_observe_task(the_task, kwargs, expected):
    assert observe_task(the_task, **{"node": "", **kwargs}) == expected


def test_oom_reason_starts_with_out_of_memory():
    seen = observe_task(task("failed", 137), node=NODE, mem_bytes=MB64, oom_killed=True)
    assert seen.reason.startswith("OUT_OF_MEMORY")
    assert "64 MB" in seen.reason


def test_not_known_oom_still_mentions_the_memory_limit():
    seen = observe_task(task("failed", 137), node=NODE, mem_bytes=128 * 2**20)
    assert seen.state == X and not seen.reason.startswith("OUT_OF_MEMORY")
    assert "ran out of its 128 MB" in seen.reason


def test_oom_flag_needs_a_nonzero_exit():
    seen = observe_task(task("complete", 0), node=NODE, mem_bytes=MB64, oom_killed=True)
    assert seen == Observed(F, "completed", node=NODE, exit_code=0)


def test_rejected_reason_includes_err():
    err = 'invalid mount config for type "bind": bind source path does not exist: /nope'
    seen = observe_task(task("rejected", err=err), node=NODE)
    assert seen.state == X and err in seen.reason


@pytest.mark.parametrize("state", sorted(ENDED - {"orphaned", "remove"}))
def test_ended_states_are_terminal_outcomes(state):
    seen = observe_task(task(state, 1, err="task: non-zero exit (1)"), node=NODE)
    assert seen.state in (F, X, K, L)
    assert seen.state != R and seen.state != Q


def test_pending_and_ended_do_not_overlap():
    assert not PENDING & ENDED
    assert "running" not in PENDING | ENDED


# -- latest_task, task_state ----------------------------------------------------------------
def test_latest_task_picks_highest_version_index():
    tasks = [task("failed", 1, index=7), task("running", index=12), task("shutdown", index=3)]
    assert latest_task(tasks)["ID"] == "task12"
    assert latest_task(reversed(tasks))["ID"] == "task12"


def test_latest_task_falls_back_to_created_at_on_equal_index():
    older = {**task("shutdown", index=5), "ID": "older", "CreatedAt": "2026-01-01T00:00:00Z"}
    newer = {**task("running", index=5), "ID": "newer", "CreatedAt": "2026-01-02T00:00:00Z"}
    assert latest_task([newer, older])["ID"] == "newer"
    assert latest_task([older, newer])["ID"] == "newer"


def test_latest_task_without_version_counts_as_zero():
    bare = {"ID": "bare", "Status": {"State": "new"}}
    assert latest_task([bare, task("running", index=1)])["ID"] == "task1"
    assert latest_task([bare])["ID"] == "bare"


def test_latest_task_of_nothing_is_none():
    assert latest_task([]) is None
    assert latest_task(iter(())) is None


@pytest.mark.parametrize(
    ("the_task", "expected"),
    [
        (None, ""),
        ({}, ""),
        ({"Status": None}, ""),
        ({"Status": {}}, ""),
        ({"Status": {"State": None}}, ""),
        (task("running"), "running"),
        (task("complete", 0), "complete"),
    ],
)
def test_task_state(the_task, expected):
    assert task_state(the_task) == expected


# -- parse_time -----------------------------------------------------------------------------
def epoch(*args) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-12-07T13:48:17.555138575Z", epoch(2026, 12, 7, 13, 48, 17) + 0.555138),
        ("2026-12-07T13:48:17Z", epoch(2026, 12, 7, 13, 48, 17)),
        ("2026-12-07T13:48:17.5Z", epoch(2026, 12, 7, 13, 48, 17) + 0.5),
        ("2026-12-07T13:48:17.000000001Z", epoch(2026, 12, 7, 13, 48, 17)),
        ("1970-01-01T00:00:00Z", 0.0),
        ("2026-12-07T13:48:17", epoch(2026, 12, 7, 13, 48, 17)),
        ("garbage", None),
        ("2026-13-40T99:00:00Z", None),
        ("", None),
    ],
)
def test_parse_time(stamp, expected):
    got = parse_time(stamp)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_parse_time_docstring_example():
    assert parse_time("2026-12-07T13:48:17.555138575Z") == pytest.approx(1796651297.555138)
