"""Batch scripts: #SBATCH lines, payload, templates, and hostile values (run with bash)."""

import dataclasses
import os
import re
import shutil
import subprocess

import pytest

from hub_ext.experiments.jobs.sbatch import (
    DEFAULT_TEMPLATE,
    PLACEHOLDERS,
    BatchJob,
    render_batch_script,
    render_env_file,
)
from hub_ext.experiments.jobs.spec import Resources

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

RES = Resources(executor="slurm", partition="debug")
COMMAND = (
    "python",
    "-m",
    "flows.train",
    "--config",
    "/srv/jobs/abc/config.json",
    "--out",
    "/srv/jobs/abc/out",
    "--resume",
    "true",
)


def make_job(**changes):
    base = BatchJob(
        job_id="abc",
        resources=RES,
        workdir="/srv/jobs/abc",
        env_file="/srv/jobs/abc/job.env",
        command=COMMAND,
        stdout="/srv/jobs/abc/stdout.log",
        stderr="/srv/jobs/abc/stderr.log",
    )
    return dataclasses.replace(base, **changes)


def res(**changes):
    return dataclasses.replace(RES, **changes)


def sbatch_lines(script):
    return [m[1] for m in re.finditer(r"(?m)^#SBATCH (.*)$", script)]


def check_syntax(script, tmp_path):
    path = tmp_path / "syntax.sh"
    path.write_text(script)
    result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- layout ----------------------------------------------------------------------------
def test_default_script(tmp_path):
    script = render_batch_script(make_job())
    assert script == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=lh-abc\n"
        "#SBATCH --partition=debug\n"
        "#SBATCH --nodes=1\n"
        "#SBATCH --ntasks-per-node=1\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --mem=1024M\n"
        "#SBATCH --time=01:00:00\n"
        "#SBATCH --output=/srv/jobs/abc/stdout.log\n"
        "#SBATCH --error=/srv/jobs/abc/stderr.log\n"
        "#SBATCH --chdir=/srv/jobs/abc\n"
        "#SBATCH --signal=B:USR1@120\n"
        "#SBATCH --requeue\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --export=NONE\n"
        "\n"
        "set -euo pipefail\n"
        "set -a; source /srv/jobs/abc/job.env; set +a\n"
        "export LATTICEHUB_JOB_ID=abc\n"
        "\n"
        "exec python -m flows.train --config /srv/jobs/abc/config.json --out "
        "/srv/jobs/abc/out --resume true\n"
    )
    check_syntax(script, tmp_path)


@pytest.mark.parametrize(
    ("job", "present", "absent"),
    [
        (make_job(), ["--partition=debug", "--nodes=1", "--ntasks-per-node=1"],
         [r"--gres", r"--account", r"--no-requeue"]),
        (make_job(resources=res(partition=None)), ["--nodes=1"], [r"--partition"]),
        (make_job(resources=res(account="lqcd-acct")), ["--account=lqcd-acct"], []),
        (make_job(resources=res(gpus=1, tasks_per_node=1)), ["--gres=gpu:1",
         "--ntasks-per-node=1"], []),
        (make_job(resources=res(gpus=4, tasks_per_node=4, nodes=2)),
         ["--gres=gpu:4", "--ntasks-per-node=4", "--nodes=2"], []),
        (make_job(resources=res(gpus=0)), [], [r"--gres"]),
        (make_job(resources=res(cpus=8, mem_mb=16384)), ["--cpus-per-task=8", "--mem=16384M"],
         []),
        (make_job(resources=res(time_s=90)), ["--time=00:01:30"], []),
        (make_job(resources=res(time_s=2 * 86400 + 3600)), ["--time=2-01:00:00"], []),
        (make_job(requeue=False), ["--no-requeue"], [r"--requeue$"]),
        (make_job(signal_before_end_s=600), ["--signal=B:USR1@600"], [r"@120"]),
        (make_job(signal_before_end_s=0), [], [r"--signal"]),
        (make_job(job_id="F00_ba.r"), ["--job-name=lh-f00-ba-r"], []),
        (make_job(resources=Resources("local", None)), ["--nodes=1"],
         [r"--partition", r"--account", r"--gres"]),
    ],
)  # fmt: skip
def test_sbatch_lines(job, present, absent, tmp_path):
    script = render_batch_script(job)
    lines = sbatch_lines(script)
    for option in present:
        assert option in lines
    for pattern in absent:
        assert not [line for line in lines if re.search(pattern, line)], pattern
    always = ["--open-mode=append", "--export=NONE", f"--output={job.stdout}",
              f"--error={job.stderr}", f"--chdir={job.workdir}"]  # fmt: skip
    for option in always:
        assert option in lines
    assert len(lines) == len(set(lines))
    # sbatch stops reading #SBATCH lines at the first command: they must all come first
    body = [line for line in script.splitlines()[1:] if line and not line.startswith("#")]
    assert script.index(body[0]) > script.rindex("#SBATCH")
    check_syntax(script, tmp_path)


SRUN = "exec srun --kill-on-bad-exit=1 --cpus-per-task"


@pytest.mark.parametrize(
    ("resources", "payload"),
    [
        (res(), "exec python -m flows.train"),
        (res(gpus=1, tasks_per_node=1), "exec python -m flows.train"),
        (res(gpus=2, tasks_per_node=2), f"{SRUN}=1 python -m flows.train"),
        (res(nodes=2), f"{SRUN}=1 python -m flows.train"),
        (res(nodes=2, gpus=4, tasks_per_node=4, cpus=8), f"{SRUN}=8 python"),
        (Resources("local", None), "exec python -m flows.train"),
    ],
)
def test_payload_uses_srun_for_more_than_one_task(resources, payload, tmp_path):
    script = render_batch_script(make_job(resources=resources))
    last = script.rstrip("\n").splitlines()[-1]
    assert last.startswith(payload + " ")
    assert last.count("exec") == 1
    check_syntax(script, tmp_path)


def test_environment_is_sourced_before_the_payload():
    script = render_batch_script(make_job(extra_env=(("OMP_NUM_THREADS", "4"), ("X_Y", "a b"))))
    lines = script.splitlines()
    order = [
        lines.index("set -euo pipefail"),
        lines.index("set -a; source /srv/jobs/abc/job.env; set +a"),
        lines.index("export LATTICEHUB_JOB_ID=abc"),
        lines.index("export OMP_NUM_THREADS=4"),
        lines.index("export X_Y='a b'"),
        len(lines) - 1,
    ]
    assert order == sorted(order)
    assert "LATTICEHUB_TOKEN" not in script


# -- running the script ----------------------------------------------------------------
HOSTILE_ARGS = [
    "$(touch pwned1)",
    "`touch pwned2`",
    "; touch pwned3",
    "&& touch pwned4",
    "| touch pwned5",
    "> pwned6",
    "'; touch pwned7; '",
    '"; touch pwned8; "',
    "$(touch {tmp}/pwned9)",
    "\n touch pwned10",
    "\n#SBATCH --uid=0",
    "a\nb\n",
    "'",
    '"',
    "'\"'",
    "\\",
    "\\'",
    "$HOME ${PATH} $0 $@ $$",
    "$'\\x41'",
    "!! !-1",
    "*",
    "~",
    "-n",
    "--",
    "",
    " ",
    "\t\r",
    "%s %d %%",
    "é ☃ \u202e",
    "{a,b}",
    "#comment",
]


def run_script(tmp_path, job, template=None):
    script = tmp_path / "job.sh"
    script.write_text(render_batch_script(job, template))
    before = set(os.listdir(tmp_path))
    result = subprocess.run(
        [BASH, str(script)],
        cwd=tmp_path,
        capture_output=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(tmp_path)) == before, "the script created files"
    return result.stdout


def job_in(tmp_path, **changes):
    env_file = tmp_path / "job.env"
    env_file.write_text(render_env_file({"LATTICEHUB_TOKEN": "tok$(touch pwned_env)'\"`x`"}))
    return make_job(
        workdir=str(tmp_path),
        env_file=str(env_file),
        stdout=str(tmp_path / "out.log"),
        stderr=str(tmp_path / "err.log"),
        **changes,
    )


@needs_bash
@pytest.mark.parametrize("arg", HOSTILE_ARGS)
def test_hostile_argument_stays_literal(arg, tmp_path):
    arg = arg.replace("{tmp}", str(tmp_path))
    args = [arg, "x", arg]
    out = run_script(tmp_path, job_in(tmp_path, command=("printf", "%s\\n", *args)))
    assert out == "".join(f"{a}\n" for a in args).encode()


@needs_bash
def test_all_hostile_arguments_at_once(tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in HOSTILE_ARGS]
    out = run_script(tmp_path, job_in(tmp_path, command=("printf", "%s\\n", *args)))
    assert out == "".join(f"{a}\n" for a in args).encode()


@needs_bash
@pytest.mark.parametrize("value", HOSTILE_ARGS)
def test_hostile_extra_env_value_stays_literal(value, tmp_path):
    value = value.replace("{tmp}", str(tmp_path))
    job = job_in(tmp_path, command=("printenv", "X_VALUE"), extra_env=(("X_VALUE", value),))
    assert run_script(tmp_path, job) == f"{value}\n".encode()


@needs_bash
def test_env_file_and_job_id_reach_the_payload(tmp_path):
    job = job_in(tmp_path, job_id="job-7", command=("printenv", "LATTICEHUB_TOKEN",
                                                    "LATTICEHUB_JOB_ID"))  # fmt: skip
    assert run_script(tmp_path, job) == b"tok$(touch pwned_env)'\"`x`\njob-7\n"


@needs_bash
def test_custom_template_runs(tmp_path):
    template = (
        "#!/bin/bash\n$directives\n#SBATCH --qos=normal\n\nset -euo pipefail\n"
        "$environment\nexport PRICE='$$5'\nprintf '%s\\n' \"$job_name $ntasks_per_node\"\n"
        "$payload\n"
    )
    job = job_in(tmp_path, command=("printenv", "PRICE"))
    assert run_script(tmp_path, job, template) == b"lh-abc 1\n$5\n"


# -- refused values --------------------------------------------------------------------
BAD_PATHS = [
    "relative/path",
    "",
    "/a\nb",
    "/a\n#SBATCH --uid=0",
    "/a\0b",
    "/a\rb",
    "/a b",
    "/a\tb",
    "/a;id",
    "/a$(id)",
    "/a`id`",
    "/a'b",
    '/a"b',
    "/a\\b",
    "/a#b",
    "/out-%j.log",
    "/é",
    None,
    5,
]


@pytest.mark.parametrize("field", ["workdir", "env_file", "stdout", "stderr"])
@pytest.mark.parametrize("value", BAD_PATHS)
def test_bad_paths_are_refused(field, value):
    with pytest.raises(ValueError, match=f"^{field}="):
        render_batch_script(make_job(**{field: value}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"job_id": "abc\n#SBATCH --uid=0"}, "^job_id="),
        ({"job_id": "abc\0"}, "^job_id="),
        ({"job_id": "$(id)"}, "^job_id="),
        ({"job_id": "-abc"}, "^job_id="),
        ({"job_id": ""}, "^job_id="),
        ({"job_id": 5}, "^job_id="),
        ({"resources": res(partition="debug\n#SBATCH --uid=0")}, "^resources.partition="),
        ({"resources": res(partition="debug;id")}, "^resources.partition="),
        ({"resources": res(partition="")}, "^resources.partition="),
        ({"resources": res(account="a b")}, "^resources.account="),
        ({"resources": res(account="$(id)")}, "^resources.account="),
        ({"resources": res(executor="kubernetes")}, "^resources.executor="),
        ({"resources": res(nodes=0)}, "^resources.nodes="),
        ({"resources": res(nodes="1\n#SBATCH --uid=0")}, "^resources.nodes="),
        ({"resources": res(gpus=-1)}, "^resources.gpus="),
        ({"resources": res(gpus=True)}, "^resources.gpus="),
        ({"resources": res(cpus=1.5)}, "^resources.cpus="),
        ({"resources": res(mem_mb="1G")}, "^resources.mem_mb="),
        ({"resources": res(time_s=0)}, "^resources.time_s="),
        ({"resources": res(tasks_per_node=0)}, "^resources.tasks_per_node="),
        ({"resources": {"executor": "slurm"}}, "^resources="),
        ({"command": ()}, "^command="),
        ({"command": "python -m x"}, "^command="),
        ({"command": ("python", "a\0b")}, r"^command\[1\]="),
        ({"command": ("python", 5)}, r"^command\[1\]="),
        ({"command": ("", "x")}, r"^command\[0\] is empty"),
        ({"signal_before_end_s": -1}, "^signal_before_end_s="),
        ({"signal_before_end_s": 70000}, "^signal_before_end_s="),
        ({"signal_before_end_s": "120\n#SBATCH --uid=0"}, "^signal_before_end_s="),
        ({"requeue": "yes"}, "^requeue="),
        ({"extra_env": (("lower", "x"),)}, "name 'lower'"),
        ({"extra_env": (("A;B", "x"),)}, "name 'A;B'"),
        ({"extra_env": (("A\nB", "x"),)}, "name 'A\\\\nB'"),
        ({"extra_env": (("1A", "x"),)}, "name '1A'"),
        ({"extra_env": (("A", "x\0"),)}, "without NUL"),
        ({"extra_env": (("A", 5),)}, "without NUL"),
        ({"extra_env": (("A", "1"), ("A", "2"))}, "sets A twice"),
        ({"extra_env": (("LATTICEHUB_JOB_ID", "x"),)}, "sets LATTICEHUB_JOB_ID twice"),
        ({"extra_env": (("A", "1", "2"),)}, "NAME, value"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        render_batch_script(make_job(**changes))


# -- templates -------------------------------------------------------------------------
def test_default_template_uses_only_known_placeholders():
    import string

    assert set(string.Template(DEFAULT_TEMPLATE).get_identifiers()) <= set(PLACEHOLDERS)


def test_every_placeholder_can_be_used(tmp_path):
    template = "#!/bin/bash\n" + "".join(f"# {p}=${{{p}}}\n" for p in PLACEHOLDERS)
    script = render_batch_script(make_job(resources=res(gpus=2, tasks_per_node=2)), template)
    assert "# job_name=lh-abc\n" in script
    assert "# time=01:00:00\n" in script
    assert "# gpus=2\n" in script
    assert "# env_file=/srv/jobs/abc/job.env\n" in script
    assert "# partition=debug\n# account=\n" in script
    check_syntax(script, tmp_path)


OK = "#!/bin/bash\n$environment\n$payload\n"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (OK + "$gpu_count\n", r"unknown placeholder\(s\) \$gpu_count; known: \$directives"),
        (OK + "${Nodes}\n", r"unknown placeholder\(s\) \$Nodes"),
        (OK + "echo $(id)\n", r"invalid placeholder near '\$\(id\)"),
        (OK + "echo $\n", "invalid placeholder"),
        ("#!/bin/bash\n$environment\n", r"lacks \$payload"),
        ("#!/bin/bash\n$payload\n", r"lacks \$environment"),
        ("$environment\n$payload\n", "must start with a '#!' line"),
        ("", "must start with a '#!' line"),
    ],
)  # fmt: skip
def test_bad_templates_are_refused(template, message):
    with pytest.raises(ValueError, match=message):
        render_batch_script(make_job(), template)


def test_template_with_literal_dollars(tmp_path):
    template = '#!/bin/bash\n$environment\necho "$$HOME $${X:-y}"\n$payload\n'
    script = render_batch_script(make_job(), template)
    assert 'echo "$HOME ${X:-y}"' in script
    check_syntax(script, tmp_path)


# -- render_env_file -------------------------------------------------------------------
def test_render_env_file():
    assert render_env_file({"A": "1", "B_2": "x y", "C": "it's", "D": ""}) == (
        "A=1\nB_2='x y'\nC='it'\"'\"'s'\nD=''\n"
    )


@needs_bash
@pytest.mark.parametrize("value", HOSTILE_ARGS)
def test_render_env_file_sources_literally(value, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text(render_env_file({"V": value}))
    result = subprocess.run(
        [BASH, "-c", 'set -eu; set -a; source "$1"; set +a; printenv V', "bash", str(env_file)],
        cwd=tmp_path,
        capture_output=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{value}\n".encode()
    assert os.listdir(tmp_path) == ["env"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"a": "1"}, "name 'a'"),
        ({"A B": "1"}, "name 'A B'"),
        ({"A=B": "1"}, "name 'A=B'"),
        ({"": "1"}, "name ''"),
        ({"A": "1\0"}, "without NUL"),
        ({"A": None}, "without NUL"),
        ([("A", "1")], "must be a dict"),
    ],
)
def test_render_env_file_refuses(env, message):
    with pytest.raises(ValueError, match=message):
        render_env_file(env)
