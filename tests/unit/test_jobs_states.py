"""Slurm states -> job states, exit codes, and parsing squeue/sbatch output."""

import pytest

from hub_ext.experiments.jobs.states import (
    SQUEUE_ARGS,
    SQUEUE_FIELDS,
    SQUEUE_FORMAT,
    STATE_TABLE,
    JobState,
    SlurmStatus,
    exit_code_of,
    is_terminal,
    map_state,
    parse_sbatch_parsable,
    parse_squeue,
)
from hub_ext.experiments.store.entities import RunStatus

Q, R, F, X, K, L = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.FINISHED,
    JobState.FAILED,
    JobState.KILLED,
    JobState.LOST,
)


def S(state, reason="None", node="", exit_code="0:0"):
    return SlurmStatus("42", state, reason, node, exit_code)


def test_job_states_are_run_statuses():
    assert [s.value for s in JobState] == [s.value for s in RunStatus]
    for state in JobState:
        assert is_terminal(state) == RunStatus(state.value).is_final


@pytest.mark.parametrize(
    ("state", "terminal"), [(Q, False), (R, False), (F, True), (X, True), (K, True), (L, True)]
)
def test_is_terminal(state, terminal):
    assert is_terminal(state) is terminal
    assert is_terminal(state.value) is terminal


# -- map_state -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S("PENDING", "Resources"), (Q, "pending: Resources")),
        (S("PENDING", "Priority"), (Q, "pending: Priority")),
        (S("PENDING", "PartitionTimeLimit"), (Q, "pending: PartitionTimeLimit")),
        (S("PENDING", "QOSMaxJobsPerUserLimit"), (Q, "pending: QOSMaxJobsPerUserLimit")),
        (S("PENDING", "BeginTime"), (Q, "pending: BeginTime")),
        (S("PENDING", "(Dependency)"), (Q, "pending: Dependency")),
        (S("PENDING", "None"), (Q, "pending")),
        (S("PENDING", ""), (Q, "pending")),
        (S("REQUEUED"), (Q, "requeued")),
        (S("REQUEUE_HOLD", "JobHeldAdmin"), (Q, "requeued")),
        (S("REQUEUE_FED"), (Q, "requeued")),
        (S("SPECIAL_EXIT"), (Q, "requeued (held after a special exit)")),
        (S("RESV_DEL_HOLD"), (Q, "held: its reservation was deleted")),
        (S("CONFIGURING", node="gpu01"), (R, "running on gpu01")),
        (S("RUNNING", node="gpu01"), (R, "running on gpu01")),
        (S("RUNNING", node="gpu[01-02]"), (R, "running on gpu[01-02]")),
        (S("RUNNING", node=""), (R, "running")),
        (S("COMPLETING", node="vm"), (R, "running on vm")),
        (S("RESIZING", node="vm"), (R, "running on vm")),
        (S("STAGE_OUT", node="vm"), (R, "running on vm")),
        (S("SIGNALING", node="vm"), (R, "running on vm")),
        (S("SUSPENDED", node="vm"), (R, "suspended")),
        (S("STOPPED", node="vm"), (R, "suspended")),
        (S("COMPLETED", node="vm"), (F, "completed")),
        (S("FAILED", "NonZeroExitCode", "vm", "2:0"), (X, "exit code 2")),
        (S("FAILED", "NonZeroExitCode", "vm", "768"), (X, "exit code 3")),
        (S("FAILED", "None", "vm", "1:0"), (X, "exit code 1")),
        (S("FAILED", "NonZeroExitCode", "vm", "0:9"), (X, "killed by signal 9 (SIGKILL)")),
        (S("FAILED", "JobLaunchFailure", "vm", "9"),
         (X, "killed by signal 9 (SIGKILL) (JobLaunchFailure)")),
        (S("FAILED", "NonZeroExitCode", "vm", "0:15"), (X, "killed by signal 15 (SIGTERM)")),
        (S("FAILED", "NonZeroExitCode", "vm", ""), (X, "failed")),
        (S("FAILED", "NonZeroExitCode", "vm", "N/A"), (X, "failed")),
        (S("OUT_OF_MEMORY", "OutOfMemory", "vm", "253"),
         (X, "OUT_OF_MEMORY: the job exceeded its memory limit (ask for more --mem)")),
        (S("TIMEOUT", "TimeLimit", "vm", "0:15"), (X, "TIMEOUT: the job reached its time limit")),
        (S("DEADLINE"), (X, "DEADLINE: the job reached its deadline")),
        (S("NODE_FAIL", node="vm"), (X, "NODE_FAIL: a node of the job failed")),
        (S("BOOT_FAIL"), (X, "BOOT_FAIL: a node of the job failed to boot")),
        (S("PREEMPTED", node="vm"), (K, "PREEMPTED")),
        (S("CANCELLED", "Resources", "", "0"), (K, "CANCELLED")),
        (S("CANCELLED by 1000", node="vm", exit_code="0:15"), (K, "CANCELLED")),
        (S("CANCELLED+"), (K, "CANCELLED")),
        (S("running", node="vm"), (R, "running on vm")),
        (S(" COMPLETED "), (F, "completed")),
        (S("REVOKED"), (R, "unknown Slurm state REVOKED")),
        (S("NEW_STATE_2030"), (R, "unknown Slurm state NEW_STATE_2030")),
        (S(""), (R, "unknown Slurm state ")),
    ],
)  # fmt: skip
def test_map_state(status, expected):
    assert map_state(status) == expected


def test_state_table_covers_slurm_states():
    slurm_states = {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "CONFIGURING", "COMPLETING", "DEADLINE",
        "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PENDING", "PREEMPTED", "RUNNING",
        "RESV_DEL_HOLD", "REQUEUE_FED", "REQUEUE_HOLD", "REQUEUED", "RESIZING", "SIGNALING",
        "SPECIAL_EXIT", "STAGE_OUT", "STOPPED", "SUSPENDED", "TIMEOUT",
    }  # fmt: skip
    assert slurm_states <= set(STATE_TABLE)
    for name in STATE_TABLE:
        state, reason = map_state(S(name, node="n1", exit_code="1:0"))
        assert isinstance(state, JobState) and state is not L
        assert reason and "\n" not in reason


# -- exit codes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        ("0:0", 0),
        ("2:0", 2),
        ("255:0", 255),
        ("0:9", 137),
        ("0:15", 143),
        ("1:15", 143),
        ("0", 0),
        ("512", 2),
        ("768", 3),
        ("9", 137),
        ("15", 143),
        (" 2:0 ", 2),
        ("", None),
        ("N/A", None),
        ("2:", None),
        ("a:b", None),
        ("-1", None),
    ],
)
def test_exit_code_of(exit_code, expected):
    assert exit_code_of(SlurmStatus("1", "FAILED", exit_code=exit_code)) == expected


# -- squeue ----------------------------------------------------------------------------
def test_squeue_format_follows_the_field_list():
    assert SQUEUE_FORMAT == "JobID:|,State:|,exit_code:|,NodeList:|,Reason:"
    assert SQUEUE_ARGS == ("--states=all", "--noheader", f"--Format={SQUEUE_FORMAT}")
    assert [attr for attr, _ in SQUEUE_FIELDS][-1] == "reason"  # free text goes last
    assert {attr for attr, _ in SQUEUE_FIELDS} == {"job_id", "state", "reason", "node",
                                                   "exit_code"}  # fmt: skip


DOWN = "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
# Captured from slurm-wlm 22.05 with `squeue --states=all --noheader --Format=<SQUEUE_FORMAT>`
SLURM_22_05 = """\
5|CANCELLED|0||Resources
1|COMPLETED|0|vm|None
4|FAILED|768|vm|NonZeroExitCode
6|FAILED|9|vm|JobLaunchFailure
2|OUT_OF_MEMORY|253|vm|OutOfMemory
3|RUNNING|0|vm|None
11|CANCELLED|15|vm|None
12|PENDING|0||BeginTime
"""
SLURM_22_05 += f"13|PENDING|0||{DOWN}\n"


def test_parse_squeue_real_output():
    statuses = parse_squeue(SLURM_22_05)
    assert list(statuses) == ["5", "1", "4", "6", "2", "3", "11", "12", "13"]
    assert statuses["4"] == SlurmStatus("4", "FAILED", "NonZeroExitCode", "vm", "768")
    assert statuses["5"] == SlurmStatus("5", "CANCELLED", "Resources", "", "0")
    assert {k: map_state(s) for k, s in statuses.items()} == {
        "5": (K, "CANCELLED"),
        "1": (F, "completed"),
        "4": (X, "exit code 3"),
        "6": (X, "killed by signal 9 (SIGKILL) (JobLaunchFailure)"),
        "2": (X, "OUT_OF_MEMORY: the job exceeded its memory limit (ask for more --mem)"),
        "3": (R, "running on vm"),
        "11": (K, "CANCELLED"),
        "12": (Q, "pending: BeginTime"),
        "13": (Q, f"pending: {DOWN}"),
    }  # fmt: skip
    assert [exit_code_of(statuses[k]) for k in ("1", "4", "6", "11")] == [0, 3, 137, 143]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", {}),
        ("\n\n  \n", {}),
        ("7|PENDING|0||Priority\n", {"7": SlurmStatus("7", "PENDING", "Priority", "", "0")}),
        # a trailing delimiter, padding, CRLF, blank lines around
        ("\n  7 | RUNNING | 0 | gpu01 | None |  \r\n\n",
         {"7": SlurmStatus("7", "RUNNING", "None", "gpu01", "0")}),
        # a delimiter inside the free-text reason stays in the reason
        ("7|PENDING|0||odd | reason\n",
         {"7": SlurmStatus("7", "PENDING", "odd | reason", "", "0")}),
        # array tasks and heterogeneous job parts keep their ids as strings
        ("123_4|RUNNING|0|n[1-2]|None\n123_[5-9%2]|PENDING|0||JobArrayTaskLimit\n"
         "200+0|RUNNING|0|n1|None\n200+1|RUNNING|0|n2|None\n",
         {"123_4": SlurmStatus("123_4", "RUNNING", "None", "n[1-2]", "0"),
          "123_[5-9%2]": SlurmStatus("123_[5-9%2]", "PENDING", "JobArrayTaskLimit", "", "0"),
          "200+0": SlurmStatus("200+0", "RUNNING", "None", "n1", "0"),
          "200+1": SlurmStatus("200+1", "RUNNING", "None", "n2", "0")}),
        # a header (someone dropped --noheader) is skipped
        ("JOBID|STATE|EXIT_CODE|NODELIST|REASON\n8|COMPLETED|0|vm|None\n",
         {"8": SlurmStatus("8", "COMPLETED", "None", "vm", "0")}),
        # a job listed twice keeps its last line
        ("9|PENDING|0||None\n9|RUNNING|0|vm|None\n",
         {"9": SlurmStatus("9", "RUNNING", "None", "vm", "0")}),
        ("10|CANCELLED by 1000|15|vm|None\n",
         {"10": SlurmStatus("10", "CANCELLED by 1000", "None", "vm", "15")}),
    ],
)  # fmt: skip
def test_parse_squeue(output, expected):
    assert parse_squeue(output) == expected


@pytest.mark.parametrize(
    "output",
    [
        "7|RUNNING|0\n",
        "7|RUNNING|0|vm\n",
        "7 RUNNING 0 vm None\n",
        "|RUNNING|0|vm|None\n",
        "8|COMPLETED|0|vm|None\n7|RUNNING\n",
    ],
)
def test_parse_squeue_refuses_lines_of_another_format(output):
    with pytest.raises(ValueError, match="squeue line") as info:
        parse_squeue(output)
    assert repr(output.splitlines()[-1]) in str(info.value)


def test_parse_squeue_follows_a_changed_field_list():
    fields = (("job_id", "%i"), ("state", "%T"), ("node", "%N"), ("reason", "%r"))
    output = "11|RUNNING|vm|None\n12|PENDING||Resources\n"
    assert parse_squeue(output, fields) == {
        "11": SlurmStatus("11", "RUNNING", "None", "vm", ""),
        "12": SlurmStatus("12", "PENDING", "Resources", "", ""),
    }


# -- sbatch --parsable -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "job_id"),
    [("123", "123"), ("123\n", "123"), ("  4711\n", "4711"), ("123;cluster", "123"),
     ("123;my-cluster.1\n", "123")],
)  # fmt: skip
def test_parse_sbatch_parsable(output, job_id):
    assert parse_sbatch_parsable(output) == job_id


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n",
        "Submitted batch job 123\n",
        "123;",
        "123;clu ster",
        "123\n456\n",
        "abc",
        "-1",
        "12a",
        "123;cluster;x",
        "sbatch: error: Batch job submission failed: Invalid account\n",
        None,
    ],
)
def test_parse_sbatch_parsable_refuses(output):
    with pytest.raises(ValueError) as info:
        parse_sbatch_parsable(output)
    assert f"sbatch --parsable printed {output!r}" in str(info.value)
