"""Job requests: time/memory parsing, admin limits, resource validation, names, counts."""

import pytest

from hub_ext.experiments.jobs.spec import (
    JOB_LIMIT_KEYS,
    RESOURCE_KEYS,
    JobInputError,
    JobLimitError,
    JobLimits,
    Resources,
    count_check,
    format_time,
    limits_for,
    parse_job_limits,
    parse_mem_mb,
    parse_time,
    safe_slurm_name,
    validate_job_name,
    validate_resources,
)

MIN, HOUR, DAY = 60, 3600, 86400

#: Strings that try to break out of a shell line or an #SBATCH line.
HOSTILE = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "debug\n#SBATCH --uid=0",
    "#SBATCH --uid=0",
    "debug'",
    'debug"',
    "debug\0",
    "debug\r",
    "debug;id",
    "debug|id",
    "debug&",
    "debug>x",
    "${IFS}",
    "debug ",
    " debug",
    "deb ug",
    "debug\t",
    "\\",
    "../debug",
    "",
    "x" * 65,
    "débug",
    "debug\u202e",
]


# -- parse_time / format_time ----------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", MIN),
        ("90", 90 * MIN),
        ("0:30", 30),
        ("10:05", 10 * MIN + 5),
        ("1:00:00", HOUR),
        ("01:30:00", HOUR + 30 * MIN),
        ("48:00:00", 2 * DAY),
        ("1-0", DAY),
        ("2-12", 2 * DAY + 12 * HOUR),
        ("1-02:03", DAY + 2 * HOUR + 3 * MIN),
        ("1-02:03:04", DAY + 2 * HOUR + 3 * MIN + 4),
        ("0-00:00:01", 1),
        (1, MIN),
        (120, 2 * HOUR),
    ],
)
def test_parse_time(value, seconds):
    assert parse_time(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "positive number of minutes"),
        (-5, "positive number of minutes"),
        ("0", "longer than zero"),
        ("00:00:00", "longer than zero"),
        ("0-00:00:00", "longer than zero"),
        ("-1", "not a Slurm time"),
        ("-1:00", "not a Slurm time"),
        ("", "not a Slurm time"),
        ("abc", "not a Slurm time"),
        ("unlimited", "not a Slurm time"),
        ("INFINITE", "not a Slurm time"),
        ("1.5", "not a Slurm time"),
        ("1:2:3:4", "not a Slurm time"),
        ("1-2-3", "not a Slurm time"),
        ("1-", "not a Slurm time"),
        ("-1-00", "not a Slurm time"),
        ("1:60", "out of range"),
        ("1:60:00", "out of range"),
        ("1:00:99", "out of range"),
        ("1-24", "out of range"),
        ("1-00:60", "out of range"),
        ("1-00:00:60", "out of range"),
        ("1:00:00\n#SBATCH --uid=0", "whitespace or a control character"),
        ("1:00:00 ", "whitespace or a control character"),
        (" 60", "whitespace or a control character"),
        ("60\0", "whitespace or a control character"),
        ("60;id", "not a Slurm time"),
        ("$(id)", "not a Slurm time"),
        ("`id`", "not a Slurm time"),
        ("60'", "not a Slurm time"),
        ("٣٠", "not a Slurm time"),  # Arabic-Indic digits: int() would take them
        (True, "not a time"),
        (1.5, "not a time"),
        (None, "not a time"),
        (["1:00:00"], "not a time"),
    ],
)
def test_parse_time_refuses(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_time(value, name="resources.time")
    assert str(info.value).startswith("resources.time=")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "00:00:01"),
        (59, "00:00:59"),
        (MIN, "00:01:00"),
        (HOUR + 1, "01:00:01"),
        (DAY - 1, "23:59:59"),
        (DAY, "1-00:00:00"),
        (DAY + HOUR + MIN + 1, "1-01:01:01"),
        (30 * DAY, "30-00:00:00"),
    ],
)
def test_format_time(seconds, text):
    assert format_time(seconds) == text
    assert parse_time(text) == seconds


@pytest.mark.parametrize(
    "seconds", [1, 2, 59, 60, 61, 3599, 3600, 3661, 86399, 86400, 86401, 90061, 10 * DAY + 7]
)
def test_format_time_round_trip(seconds):
    assert parse_time(format_time(seconds)) == seconds


@pytest.mark.parametrize("seconds", [0, -1, 1.5, True, "60", None])
def test_format_time_refuses(seconds):
    with pytest.raises(ValueError, match="positive whole number of seconds"):
        format_time(seconds)


# -- parse_mem_mb ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "mb"),
    [
        (1, 1),
        (4096, 4096),
        ("4096", 4096),
        ("512M", 512),
        ("512m", 512),
        ("4G", 4096),
        ("4g", 4096),
        ("1.5G", 1536),
        ("4GB", 4096),
        ("4GiB", 4096),
        ("1T", 1024 * 1024),
        ("1024K", 1),
        ("100K", 1),  # rounded up to whole MB
        ("1.0001G", 1025),
    ],
)
def test_parse_mem_mb(value, mb):
    assert parse_mem_mb(value) == mb


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "more than zero"),
        (-1, "more than zero"),
        ("0", "more than zero"),
        ("0G", "more than zero"),
        ("1.5", "needs a unit"),
        ("", "not a memory size"),
        ("4X", "not a memory size"),
        ("G", "not a memory size"),
        ("-4G", "not a memory size"),
        ("4 G", "whitespace or a control character"),
        ("4G\n", "whitespace or a control character"),
        ("4G;id", "not a memory size"),
        ("$(id)", "not a memory size"),
        (1.5, "not a memory size"),
        (True, "not a memory size"),
        (None, "not a memory size"),
    ],
)
def test_parse_mem_mb_refuses(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_mem_mb(value, name="resources.mem")
    assert str(info.value).startswith("resources.mem=")


# -- parse_job_limits ------------------------------------------------------------------
def test_parse_job_limits_example():
    parsed = parse_job_limits(
        {
            "lqcd": {
                "executors": ["local", "slurm"],
                "partitions": ["debug", "long"],
                "max_gpus": 1,
                "max_time": "2:00:00",
                "max_mem": "16G",
                "max_jobs": 5,
            },
            "*": {},
        }
    )
    assert parsed == {
        "lqcd": JobLimits(
            executors=("local", "slurm"),
            partitions=("debug", "long"),
            max_gpus=1,
            max_time_s=2 * HOUR,
            max_mem_mb=16 * 1024,
            max_jobs=5,
        ),
        "*": JobLimits(),
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, JobLimits()),
        ({"max_time": 90}, JobLimits(max_time_s=90 * MIN)),
        ({"max_time_s": 7200}, JobLimits(max_time_s=7200)),
        ({"default_time": "30"}, JobLimits(default_time_s=30 * MIN)),
        ({"default_time_s": 60}, JobLimits(default_time_s=60)),
        ({"max_mem": 4096}, JobLimits(max_mem_mb=4096)),
        ({"max_mem_mb": 4096}, JobLimits(max_mem_mb=4096)),
        ({"default_mem": "1G"}, JobLimits(default_mem_mb=1024)),
        ({"default_mem_mb": 512}, JobLimits(default_mem_mb=512)),
        ({"accounts": ("a1", "a2")}, JobLimits(accounts=("a1", "a2"))),
        ({"max_jobs": 0}, JobLimits(max_jobs=0)),
        ({"max_jobs_per_user": 2}, JobLimits(max_jobs_per_user=2)),
        ({"max_nodes": 4, "max_cpus": 32}, JobLimits(max_nodes=4, max_cpus=32)),
        ({"default_cpus": 2}, JobLimits(default_cpus=2)),
        ({"max_gpus": None}, JobLimits()),
        # left-out defaults are lowered to a smaller maximum
        ({"max_mem": "1G"}, JobLimits(max_mem_mb=1024, default_mem_mb=1024)),
        ({"max_time": 30}, JobLimits(max_time_s=30 * MIN, default_time_s=30 * MIN)),
        ({"max_cpus": 1, "default_cpus": None}, JobLimits(max_cpus=1)),
    ],
)
def test_parse_job_limits_values(raw, expected):
    assert parse_job_limits({"g": raw}) == {"g": expected}


def test_parse_job_limits_unknown_key_lists_known_keys():
    with pytest.raises(ValueError) as info:
        parse_job_limits({"lqcd": {"max_gpu": 1, "time": "1:00:00"}})
    message = str(info.value)
    assert message.startswith("job_limits['lqcd'] has unknown key(s) max_gpu, time;")
    known = message.split("known keys:")[1]
    for key in JOB_LIMIT_KEYS:
        assert key in known


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"executors": ["kubernetes"]}, "known executors are docker, slurm, local"),
        ({"executors": "slurm"}, "non-empty list"),
        ({"executors": []}, "non-empty list"),
        ({"partitions": "debug"}, "must be a list of names"),
        ({"partitions": ["debug;id"]}, "not a name"),
        ({"partitions": ["debug\n#SBATCH --uid=0"]}, "not a name"),
        ({"accounts": [""]}, "not a name"),
        ({"accounts": [5]}, "not a name"),
        ({"max_jobs": -1}, "whole number >= 0"),
        ({"max_jobs": "5"}, "whole number >= 0"),
        ({"max_jobs": True}, "whole number >= 0"),
        ({"max_jobs_per_user": 1.5}, "whole number >= 0"),
        ({"max_nodes": 0}, "whole number >= 1"),
        ({"max_gpus": -1}, "whole number >= 0"),
        ({"max_cpus": 0}, "whole number >= 1"),
        ({"max_mem_mb": "16G"}, "whole number >= 1"),
        ({"max_mem": "16Q"}, "not a memory size"),
        ({"max_time": "two hours"}, "whitespace"),
        ({"max_time": "2h"}, "not a Slurm time"),
        ({"max_time_s": "7200"}, "whole number >= 1"),
        ({"default_time": 0}, "positive number of minutes"),
        ({"max_time": "1:00:00", "max_time_s": 3600}, "sets both max_time and max_time_s"),
        ({"max_mem": "1G", "default_mem": "2G"}, "default_mem is above max_mem"),
        ({"max_time": 60, "default_time": 90}, "default_time is above max_time"),
        ({"max_cpus": 2, "default_cpus": 4}, "default_cpus is above max_cpus"),
    ],
)
def test_parse_job_limits_bad_values(raw, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_job_limits({"lqcd": raw})
    assert str(info.value).startswith("job_limits['lqcd']")


@pytest.mark.parametrize("config", [None, [], "lqcd", {"": {}}, {5: {}}, {"g": []}, {"g": "x"}])
def test_parse_job_limits_not_a_dict(config):
    with pytest.raises(ValueError, match="must be a dict|group names"):
        parse_job_limits(config)


# -- limits_for ------------------------------------------------------------------------
LQCD = JobLimits(executors=("local", "slurm"), partitions=("debug", "long"), max_gpus=1)
STAR = JobLimits(max_jobs=1)


@pytest.mark.parametrize(
    ("limits", "group", "expected"),
    [
        ({"lqcd": LQCD, "*": STAR}, "lqcd", LQCD),
        ({"lqcd": LQCD, "*": STAR}, "other", STAR),
        ({"lqcd": LQCD}, "lqcd", LQCD),
    ],
)
def test_limits_for(limits, group, expected):
    assert limits_for(limits, group) is expected


def test_limits_for_unlisted_group_may_not_submit():
    with pytest.raises(JobInputError) as info:
        limits_for({"lqcd": LQCD}, "bio")
    assert info.value.field == "group"
    assert info.value.status_code == 403
    assert "group 'bio' may not submit jobs: ask an admin" in str(info.value)


# -- validate_resources ----------------------------------------------------------------
SLURM = JobLimits(
    executors=("slurm", "local"),
    partitions=("debug", "long"),
    accounts=("lqcd-acct", "other"),
    max_nodes=4,
    max_gpus=4,
    max_cpus=16,
    max_mem_mb=64 * 1024,
    max_time_s=2 * DAY,
)
LOCAL = JobLimits(executors=("local",))
SLURM_NO_CHOICE = JobLimits(executors=("slurm",), max_gpus=1)


def R(executor="slurm", partition="debug", account="lqcd-acct", **kw):
    return Resources(executor=executor, partition=partition, account=account, **kw)


@pytest.mark.parametrize(
    ("raw", "limits", "expected"),
    [
        (None, LOCAL, Resources("local", None, mem_mb=2048)),
        ({}, LOCAL, Resources("local", None, mem_mb=2048)),
        ({"executor": "local"}, LOCAL, Resources("local", None, mem_mb=2048)),
        ({"cpus": 4, "mem": "8G", "time": 240}, LOCAL, Resources("local", None, 1, 0, 4, 8192,
                                                                   4 * HOUR)),
        ({"mem_mb": 100, "time_s": 30}, LOCAL, Resources("local", None, mem_mb=100, time_s=30)),
        ({}, SLURM, R(mem_mb=2048)),
        ({"executor": "local"}, SLURM, Resources("local", None, mem_mb=2048)),
        ({"partition": "long", "account": "other"}, SLURM, R("slurm", "long", "other",
                                                             mem_mb=2048)),
        ({"gpus": 4}, SLURM, R(gpus=4, tasks_per_node=4, mem_mb=2048)),
        ({"gpus": 4, "tasks_per_node": 1}, SLURM, R(gpus=4, mem_mb=2048)),
        ({"gpus": 2, "nodes": 4}, SLURM, R(nodes=4, gpus=2, tasks_per_node=2, mem_mb=2048)),
        ({"time": "1-00:00:00", "mem": "64G", "cpus": 16}, SLURM,
         R(cpus=16, mem_mb=64 * 1024, time_s=DAY)),
        ({"time": "2-00:00:00"}, SLURM, R(mem_mb=2048, time_s=2 * DAY)),
        ({}, SLURM_NO_CHOICE, Resources("slurm", None, mem_mb=2048)),
        ({"gpus": 1}, SLURM_NO_CHOICE, Resources("slurm", None, gpus=1, mem_mb=2048)),
        # defaults above a hand-built limit are lowered, not refused
        ({}, JobLimits(max_mem_mb=512, max_time_s=60, max_cpus=1, default_cpus=2),
         Resources("docker", None, cpus=1, mem_mb=512, time_s=60)),
    ],
)  # fmt: skip
def test_validate_resources(raw, limits, expected):
    assert validate_resources(raw, limits, "lqcd") == expected


@pytest.mark.parametrize(
    ("raw", "limits", "field", "message"),
    [
        ([], SLURM, "resources", "must be an object"),
        ("gpus=1", SLURM, "resources", "must be an object"),
        ({"gpu": 1}, SLURM, "resources", "unknown key(s) 'gpu'; known keys: account, cpus"),
        ({"mem_gb": 1, "x": 2}, SLURM, "resources", "unknown key(s) 'mem_gb', 'x'"),
        ({"executor": "docker"}, SLURM, "resources.executor", "use one of slurm, local"),
        ({"executor": "slurm"}, LOCAL, "resources.executor", "is not allowed for group lqcd"),
        ({"executor": ["slurm"]}, SLURM, "resources.executor", "is not allowed"),
        ({"partition": "gpu"}, SLURM, "resources.partition", "use one of debug, long"),
        ({"partition": "debug"}, SLURM_NO_CHOICE, "resources.partition",
         "group lqcd has no partitions to choose from: leave resources.partition out"),
        ({"executor": "local", "partition": "debug"}, SLURM, "resources.partition",
         "only for executor 'slurm'"),
        ({"partition": 1}, SLURM, "resources.partition", "is not a name"),
        ({"account": "nope"}, SLURM, "resources.account", "use one of lqcd-acct, other"),
        ({"account": "a"}, SLURM_NO_CHOICE, "resources.account",
         "has no accounts to choose from"),
        ({"executor": "local", "account": "other"}, SLURM, "resources.account",
         "only for executor 'slurm'"),
        ({"gpus": 5}, SLURM, "resources.gpus",
         "resources.gpus=5 is above the limit 4 GPUs per node of group lqcd: ask for at most 4"),
        ({"gpus": 1}, LOCAL, "resources.gpus", "above the limit 0"),
        ({"gpus": -1}, SLURM, "resources.gpus", "is below 0"),
        ({"gpus": 1.0}, SLURM, "resources.gpus", "whole number"),
        ({"gpus": "1"}, SLURM, "resources.gpus", "whole number"),
        ({"gpus": True}, SLURM, "resources.gpus", "whole number"),
        ({"nodes": 5}, SLURM, "resources.nodes", "above the limit 4 nodes"),
        ({"nodes": 0}, SLURM, "resources.nodes", "ask for at least 1"),
        ({"nodes": 2, "executor": "local"}, SLURM, "resources.nodes", "above the limit 1"),
        ({"nodes": False}, SLURM, "resources.nodes", "whole number"),
        ({"cpus": 17}, SLURM, "resources.cpus", "above the limit 16 CPUs per task"),
        ({"cpus": 0}, SLURM, "resources.cpus", "at least 1"),
        ({"cpus": "4"}, SLURM, "resources.cpus", "whole number"),
        ({"mem": "65G"}, SLURM, "resources.mem", "above the limit 65536M of group lqcd"),
        ({"mem": "lots"}, SLURM, "resources.mem", "not a memory size"),
        ({"mem": 0}, SLURM, "resources.mem", "more than zero"),
        ({"mem_mb": 65537}, SLURM, "resources.mem_mb", "above the limit 65536 MB"),
        ({"mem_mb": "1G"}, SLURM, "resources.mem_mb", "whole number"),
        ({"mem": "1G", "mem_mb": 1024}, SLURM, "resources.mem", "both mem and mem_mb"),
        ({"time": "2-00:00:01"}, SLURM, "resources.time",
         "above the limit 2-00:00:00 of group lqcd: ask for at most 2-00:00:00"),
        ({"time": 5 * 60}, LOCAL, "resources.time", "above the limit 04:00:00"),
        ({"time": "soon"}, SLURM, "resources.time", "not a Slurm time"),
        ({"time": 0}, SLURM, "resources.time", "positive number of minutes"),
        ({"time_s": 0}, SLURM, "resources.time_s", "at least 1"),
        ({"time_s": 2 * DAY + 1}, SLURM, "resources.time_s", "above the limit"),
        ({"time": 60, "time_s": 60}, SLURM, "resources.time", "both time and time_s"),
        ({"gpus": 2, "tasks_per_node": 3}, SLURM, "resources.tasks_per_node",
         "above the limit 2"),
        ({"tasks_per_node": 2}, SLURM, "resources.tasks_per_node", "above the limit 1"),
        ({"tasks_per_node": 0}, SLURM, "resources.tasks_per_node", "at least 1"),
        ({"tasks_per_node": 2, "executor": "local"}, SLURM, "resources.tasks_per_node",
         "above the limit 1"),
        ({}, JobLimits(executors=()), "resources.executor", "may not run jobs on any executor"),
    ],
)  # fmt: skip
def test_validate_resources_refuses(raw, limits, field, message):
    with pytest.raises(JobInputError) as info:
        validate_resources(raw, limits, "lqcd")
    assert info.value.field == field
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["executor", "partition", "account", "time", "mem"])
@pytest.mark.parametrize("value", HOSTILE)
def test_validate_resources_refuses_injection_in_every_string_field(key, value):
    with pytest.raises(JobInputError) as info:
        validate_resources({key: value}, SLURM, "lqcd")
    assert info.value.field == f"resources.{key}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["nodes", "gpus", "cpus", "mem_mb", "time_s", "tasks_per_node"])
@pytest.mark.parametrize("value", ["1; rm -rf /", "$(id)", "1\n#SBATCH --uid=0", "1", 1.0, [1]])
def test_validate_resources_refuses_non_int_in_every_number_field(key, value):
    with pytest.raises(JobInputError, match="whole number") as info:
        validate_resources({key: value}, SLURM, "lqcd")
    assert info.value.field == f"resources.{key}"


@pytest.mark.parametrize("key", ["$(id)", "gpus\n#SBATCH --uid=0", "; rm -rf /", 5])
def test_validate_resources_refuses_hostile_keys(key):
    with pytest.raises(JobInputError, match="unknown key") as info:
        validate_resources({key: 1}, SLURM, "lqcd")
    assert "\n" not in str(info.value)


def test_validate_resources_every_result_field_is_allow_listed():
    # whatever passes validation is safe to print into an #SBATCH line
    res = validate_resources(
        {"partition": "long", "account": "other", "gpus": 2, "time": "1-00"}, SLURM, "lqcd"
    )
    for value in (res.executor, res.partition, res.account):
        assert value.replace("-", "").replace("_", "").isalnum()
    assert set(RESOURCE_KEYS) >= {"executor", "partition", "account", "nodes", "gpus"}


# -- validate_job_name / safe_slurm_name -----------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["L32 flow", "", "φ⁴ β=5.6 — run 3", "x" * 100, "$(id); rm -rf / `id` 'q' \"q\" #SBATCH"],
)
def test_validate_job_name_accepts(name):
    assert validate_job_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 101, "has 101 characters: shorten it to at most 100"),
        ("a\nb", "control character"),
        ("a\rb", "control character"),
        ("a\tb", "control character"),
        ("a\0b", "control character"),
        ("a\x1b[31mb", "control character"),
        ("a\u202eb", "control character"),
        ("a\u2028b", "control character"),
        ("name\n#SBATCH --uid=0", "control character"),
        (None, "must be a string"),
        (5, "must be a string"),
    ],
)
def test_validate_job_name_refuses(name, message):
    with pytest.raises(JobInputError, match=message) as info:
        validate_job_name(name)
    assert info.value.field == "name"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("job_id", "name"),
    [
        ("abc123", "lh-abc123"),
        ("3F2A", "lh-3f2a"),
        ("a_b.c", "lh-a-b-c"),
        ("--x--", "lh-x"),
        ("$(id)\n#SBATCH --uid=0", "lh-id-sbatch-uid-0"),
        ("é1", "lh-1"),
        ("x" * 100, "lh-" + "x" * 61),
    ],
)
def test_safe_slurm_name(job_id, name):
    assert safe_slurm_name(job_id) == name
    assert len(name) <= 64


@pytest.mark.parametrize("job_id", ["", "---", "é", None])
def test_safe_slurm_name_refuses(job_id):
    with pytest.raises(ValueError, match="job_id="):
        safe_slurm_name(job_id)


# -- count_check -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("group_n", "user_n", "limits"),
    [
        (0, 0, JobLimits(max_jobs=1)),
        (3, 3, JobLimits(max_jobs=4)),
        (3, 0, JobLimits(max_jobs=4, max_jobs_per_user=1)),
        (2, 1, JobLimits(max_jobs=4, max_jobs_per_user=2)),
    ],
)
def test_count_check_allows(group_n, user_n, limits):
    count_check(group_n, user_n, limits, "lqcd", "ada")


@pytest.mark.parametrize(
    ("group_n", "user_n", "limits", "message"),
    [
        (5, 0, JobLimits(max_jobs=5),
         "group lqcd has 5 job(s) queued or running, its limit (max_jobs=5)"),
        (7, 0, JobLimits(max_jobs=5), "group lqcd has 7 job(s)"),
        (0, 0, JobLimits(max_jobs=0), "(max_jobs=0)"),
        (2, 2, JobLimits(max_jobs=5, max_jobs_per_user=2),
         "ada has 2 job(s) of group lqcd queued or running, its limit per user "
         "(max_jobs_per_user=2)"),
    ],
)  # fmt: skip
def test_count_check_refuses(group_n, user_n, limits, message):
    with pytest.raises(JobLimitError) as info:
        count_check(group_n, user_n, limits, "lqcd", "ada")
    assert message in str(info.value)
    assert "wait until one ends, or cancel one" in str(info.value)
    assert info.value.status_code == 429
    assert info.value.field == "jobs"
    assert isinstance(info.value, JobInputError)
    assert isinstance(info.value, ValueError)


def test_job_input_error_defaults_to_400():
    e = JobInputError("resources.gpus", "resources.gpus=4 is above the limit")
    assert (e.field, e.message, e.status_code, str(e)) == (
        "resources.gpus",
        "resources.gpus=4 is above the limit",
        400,
        "resources.gpus=4 is above the limit",
    )
