"""Job tokens in every spelling, data references instead of paths, executors that refuse."""

from __future__ import annotations

import os

import pytest

from hub_ext.experiments.jobs.executors import job_environment, tool_environment
from hub_ext.experiments.jobs.inputs import looks_like_path, resolve_inputs
from hub_ext.experiments.jobs.settings import JobsConfig
from hub_ext.experiments.jobs.tokens import (
    JOB_TOKEN_PREFIX,
    job_tokens_in,
    new_job_token,
    presented_tokens,
)
from hub_ext.experiments.store.entities import Project, Viewer
from hub_ext.experiments.store.errors import TrackingError

TOK = JOB_TOKEN_PREFIX + "abc"


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (f"token {TOK}", [], [TOK]),
        (f"Bearer {TOK}", [], [TOK]),
        (f"TOKEN\t{TOK}", [], [TOK]),
        (f"bEaReR \t  {TOK}  ", [], [TOK]),
        (f"token\n{TOK}", [], [TOK]),
        (f"  token {TOK}", [], [TOK]),
        (f"token {TOK} trailing", [], [f"{TOK} trailing"]),  # still claims to be a job token
        ("", [TOK], [TOK]),
        ("token hubtoken", [TOK], ["hubtoken", TOK]),
        ("Basic dXNlcjpwdw==", [], []),
        ("token", [], []),
        ("", [""], []),
    ],
)
def test_every_spelling_the_hub_accepts_is_found(header, query, expected):
    assert presented_tokens(header, query) == expected


def test_only_tokens_with_the_prefix_claim_to_be_job_tokens():
    assert job_tokens_in({"Authorization": "token hubtoken"}, []) == []
    assert job_tokens_in({"Authorization": "token hubtoken"}, [TOK]) == [TOK]
    fresh = new_job_token()
    assert fresh.startswith(JOB_TOKEN_PREFIX) and len(fresh) > 40 and fresh != new_job_token()


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "/root/evil.pt", "../../evil.pt", "evil.pt", "~/x.pt", "./x.pt",
     "file:///etc/passwd", "C:\\x.pt", "inputs/samples.pt"],
)  # fmt: skip
def test_paths_are_recognised_as_paths(value):
    assert looks_like_path(value)


class _NoStore:
    def get_run(self, *a, **k):  # pragma: no cover - never reached for a path
        raise AssertionError("a path must be refused before any lookup")


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "../x.pt", "samples.pt", "run:abc/../../etc/passwd", "run:abc//x",
     "run:abc/", "run:/etc/passwd", "name:v1/../x", 7],
)  # fmt: skip
def test_host_paths_and_bad_references_get_a_400_naming_the_reference_form(value):
    project = Project(id=1, name="p", owner="ann", group="lqcd", artifact_location="")
    with pytest.raises(TrackingError) as e:
        resolve_inputs(
            {"forward_kl_data": value},
            viewer=Viewer("ann", frozenset({"lqcd"})),
            project=project,
            store=_NoStore(),  # type: ignore[arg-type]
            registry=object(),  # type: ignore[arg-type]
            blobs=object(),  # type: ignore[arg-type]
        )
    assert e.value.http_status == 400
    assert "run:<run id>/<artifact path>" in e.value.message


def test_job_environment_holds_nothing_of_the_service(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    monkeypatch.setenv("LATTICEHUB_TRACKING_DB", "sqlite:////srv/x.sqlite")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    env = job_environment("/job")
    assert set(env) == {"PATH", "HOME", "LANG", "LC_ALL"} and env["HOME"] == "/job"
    tools = tool_environment()
    assert "JUPYTERHUB_API_TOKEN" not in tools and "LATTICEHUB_TRACKING_DB" not in tools
    assert tools["SLURM_CONF"] == "/etc/slurm/slurm.conf"


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (["sudo"], "must contain {username}"),
        (["sudo", "-E", "-u", "{username}"], "keeps the service's environment"),
        (["sudo", "--preserve-env=PATH", "-u", "{username}"], "keeps the service's environment"),
    ],
)
def test_slurm_prefix_must_name_the_user_and_drop_the_environment(prefix, message):
    with pytest.raises(Exception, match=message.replace("{", r"\{").replace("}", r"\}")):
        JobsConfig(slurm_command_prefix=prefix)


def _build(config: JobsConfig, tmp_path):
    class _Store:
        engine = None

    return config.build(store=_Store(), hub_auth=None, service_url="http://x", log=None)


def test_slurm_without_a_prefix_is_refused(tmp_path):
    config = JobsConfig(executors=["slurm"], slurm_command_prefix=[], jobs_dir=str(tmp_path))
    with pytest.raises(ValueError, match="never as the service's"):
        _build(config, tmp_path)


def test_local_executor_is_refused_when_the_service_runs_as_root(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # runs as root in CI; as anyone here
    config = JobsConfig(executors=["local"], jobs_dir=str(tmp_path))
    with pytest.raises(ValueError, match="runs as root"):
        _build(config, tmp_path)


def test_the_default_executor_is_docker(monkeypatch):
    monkeypatch.delenv("LATTICEHUB_EXECUTORS", raising=False)
    assert JobsConfig().executors == ["docker"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "regular"])
def test_the_stderr_tail_never_follows_what_the_job_planted(tmp_path, kind):
    from hub_ext.experiments.jobs.manager import _tail

    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    log = tmp_path / "stderr.log"
    if kind == "symlink":
        log.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.write_text("line1\nline2\n")
    assert _tail(log) == ("line1\nline2" if kind == "regular" else "")
