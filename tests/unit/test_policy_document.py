"""The policy document: one vocabulary, every reader's view, and messages that say the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latticehub.joblimits import deprecated_job_keys, parse_group_job_limits
from latticehub.policy import (
    PolicyError,
    load_policy,
    parse_policy_document,
    policy_from_env,
    service_policy,
    uses_old_spelling,
)

ROOT = Path(__file__).resolve().parents[2]

FULL = {
    "version": 1,
    "groups": {
        "lqcd": {
            "artifacts": "500G",
            "servers": {"max_servers": 3, "mem_limit": "8G", "gpus": 1},
            "jobs": {"executors": ["slurm"], "mem_limit": "16G", "cpu_limit": 4, "gpus": 2},
            "idle": {"idle_timeout": 3600, "max_age": 43200},
        },
        "nuclear": {"jobs": {"max_jobs": 1}},
        "*": {"servers": {"max_servers": 1}, "artifacts": "10G"},
    },
    "no_group": {"pool": "guests", "servers": {"max_servers": 2, "mem_limit": "1G"}},
    "private": {"artifacts": "5G"},
}


def test_each_reader_gets_its_view_of_one_document():
    doc = parse_policy_document(FULL)
    # the spawner: servers with their idle rules; "*" and no_group become their own settings
    assert doc.group_limits() == {
        "lqcd": {
            "max_servers": 3,
            "mem_limit": "8G",
            "gpus": 1,
            "idle_timeout": 3600,
            "max_age": 43200,
        }
    }
    assert doc.unlisted_group_limits() == {"max_servers": 1}
    assert doc.no_group_limits() == {"max_servers": 2, "mem_limit": "1G"}
    assert doc.no_group_pool == "guests"
    # the experiments service: jobs ("nuclear" has jobs but no servers) and artifact caps
    assert doc.job_limits() == {
        "lqcd": {"executors": ["slurm"], "mem_limit": "16G", "cpu_limit": 4, "gpus": 2},
        "nuclear": {"max_jobs": 1},
    }
    assert doc.artifact_quotas() == {"lqcd": "500G", "*": "10G", "~": "5G"}


def test_jobs_and_servers_share_key_names():
    doc = parse_policy_document(FULL)
    jobs = parse_group_job_limits(doc.job_limits()["lqcd"])
    assert (jobs.max_mem_mb, jobs.max_cpus, jobs.max_gpus) == (16 * 1024, 4, 2)
    assert set(doc.job_limits()["lqcd"]) & set(doc.group_limits()["lqcd"]) >= {"mem_limit", "gpus"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"groups": {"a": {"servers": {"max_servers": -1}}}}, "max_servers"),
        ({"groups": {"a": {"servers": {"idle_timeout": 60}}}}, "idle rules go in groups.a.idle"),
        ({"groups": {"a": {"idle": {"idle_timeout": 60}}}}, "add groups.a.servers"),
        ({"groups": {"a": {"jobs": {"max_mem": "4G"}}}}, "max_mem (write mem_limit)"),
        ({"groups": {"a": {"jobs": {"max_time": "1:00"}}}}, "max_time (write time_limit)"),
        ({"groups": {"a": {"jobs": {"time_limit": "soon"}}}}, "time_limit='soon'"),
        ({"groups": {"a": {"artifacts": "lots"}}}, "groups.a.artifacts"),
        ({"groups": {"a": {"artifacts": 0}}}, "more than zero"),
        ({"groups": {"a": {"gpu": 1}}}, "unknown key(s) gpu"),
        ({"groups": {"~": {}}}, "[private]"),
        ({"groups": {"a": []}}, "groups.a must be a table"),
        ({"group": {}}, "unknown key(s) group"),
        ({"version": 2}, "write version = 1"),
        ({"no_group": {"pool": "x"}}, "no_group needs a servers section"),
        ({"groups": {"g": {}}, "no_group": {"pool": "g", "servers": {}}}, "no group's"),
        ({"private": {"artifacts": "5G", "jobs": {}}}, "private has unknown key(s) jobs"),
    ],
)
def test_bad_values_name_the_place_and_the_fix(raw, words):
    with pytest.raises(PolicyError) as info:
        parse_policy_document(raw)
    assert words in str(info.value)


def test_shipped_document_parses_and_matches_the_demo(tmp_path):
    doc = load_policy(ROOT / "etc" / "policy.toml")
    assert list(doc.group_limits()) == ["lqcd", "nuclear"]
    assert doc.group_limits()["lqcd"]["idle_timeout"] == 3600
    assert doc.job_limits()["*"]["executors"] == ["docker"]
    assert doc.artifact_quotas()["~"] == "5G"


def test_toml_and_json_read_alike(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(FULL))
    toml = tmp_path / "p.toml"
    toml.write_text('[groups.lqcd.servers]\nmax_servers = 3\n[private]\nartifacts = "5G"\n')
    assert load_policy(tmp_path / "p.json").group_limits()["lqcd"]["max_servers"] == 3
    assert load_policy(toml).group_limits() == {"lqcd": {"max_servers": 3}}


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("p.yaml", "", "*.toml or *.json"),
        ("missing.toml", None, "set $LATTICEHUB_POLICY"),
        ("p.toml", "[groups.a\n", "is not valid TOML"),
        ("p.json", "{", "is not valid JSON"),
    ],
)
def test_unreadable_files_say_what_to_do(tmp_path, name, text, words):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert words in str(info.value)


def test_env_names_the_document(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(FULL))
    assert policy_from_env({}) is None
    assert policy_from_env({"LATTICEHUB_POLICY": str(path)}).no_group_pool == "guests"


def test_services_combine_deployment_facts_with_the_document():
    doc = parse_policy_document(FULL)
    policy = service_policy('{"hub_id": "prod", "engine": "swarm"}', doc)
    assert (policy.hub_id, policy.engine) == ("prod", "swarm")
    assert policy.ceilings["lqcd"].idle_timeout == 3600
    assert policy.no_group_pool == "guests"
    # the old spelling: group settings in the service's JSON win over the document
    old = json.dumps({"group_limits": {"x": {"max_servers": 1}}})
    assert uses_old_spelling(old) and not uses_old_spelling('{"hub_id": "a"}')
    assert list(service_policy(old, doc).ceilings) == ["x"]


def test_old_job_key_names_still_parse_and_are_reported():
    old = {"lqcd": {"max_mem": "4G", "max_cpus": 2}, "*": {"time_limit": "1:00:00"}}
    assert deprecated_job_keys(old) == ["max_cpus -> cpu_limit", "max_mem -> mem_limit"]
    limits = parse_group_job_limits(old["lqcd"])
    assert (limits.max_mem_mb, limits.max_cpus) == (4096, 2)
    with pytest.raises(ValueError, match="sets both max_mem and mem_limit"):
        parse_group_job_limits({"max_mem": "4G", "mem_limit": "4G"})


def test_the_spawner_reads_the_document_and_an_explicit_trait_wins(tmp_path, monkeypatch):
    from traitlets import TraitError

    from spawner.traits import GroupLimitsConfig

    path = tmp_path / "p.json"
    path.write_text(json.dumps(FULL))
    settings = GroupLimitsConfig(policy_file=str(path))
    assert settings.group_limits["lqcd"]["idle_timeout"] == 3600
    assert settings.unlisted_group_limits == {"max_servers": 1}
    assert settings.no_group_pool == "guests"
    explicit = GroupLimitsConfig(policy_file=str(path), group_limits={"x": {"max_servers": 1}})
    assert list(explicit.group_limits) == ["x"]
    monkeypatch.setenv("LATTICEHUB_POLICY", str(path))
    assert GroupLimitsConfig().no_group_limits == {"max_servers": 2, "mem_limit": "1G"}
    monkeypatch.delenv("LATTICEHUB_POLICY")
    assert GroupLimitsConfig().group_limits == {}  # no document: nobody has a share
    (tmp_path / "bad.toml").write_text("[groups.a.servers]\nmax_servers = -1\n")
    with pytest.raises(TraitError, match="policy_file: .*max_servers"):
        GroupLimitsConfig(policy_file=str(tmp_path / "bad.toml"))


def test_services_read_the_same_file(tmp_path):
    from hub_ext.culling.app import CullerApp
    from hub_ext.experiments.app import ExperimentsApp
    from hub_ext.experiments.jobs.settings import JobsConfig
    from hub_ext.quotas.app import QuotasApp

    path = tmp_path / "p.toml"
    path.write_text(
        '[groups.lqcd]\nartifacts = "1G"\n[groups.lqcd.servers]\nmax_servers = 2\n'
        "[groups.lqcd.jobs]\nmax_jobs = 3\n[groups.lqcd.idle]\nidle_timeout = 60\n"
    )
    quotas = QuotasApp(policy_file=str(path), policy='{"hub_id": "prod"}').service_policy()
    assert (quotas.hub_id, quotas.ceilings["lqcd"].max_servers) == ("prod", 2)
    culler = CullerApp(policy_file=str(path), policy="{}").service_policy()
    assert culler.ceilings["lqcd"].idle_timeout == 60
    assert JobsConfig(policy_file=str(path)).job_limits == {"lqcd": {"max_jobs": 3}}
    assert ExperimentsApp(policy_file=str(path)).artifact_quota == {"lqcd": "1G"}


def test_the_hub_config_holds_no_policy_and_is_short():
    text = (ROOT / "jupyterhub_config.py").read_text()
    assert len(text.splitlines()) < 150
    for key in ("max_servers", "max_jobs", "idle_timeout", 'mem_limit": '):
        assert key not in text  # the groups' shares live in the policy document only


def test_each_install_works_on_an_empty_config_and_replaces_only_its_own(monkeypatch):
    from traitlets.config import Config

    from hub_ext.experiments.hubconfig import ROLE, install

    monkeypatch.delenv("LATTICEHUB_JOB_LIMITS", raising=False)
    c = Config()  # nothing declared yet: the settings read as LazyConfigValue
    install(c, url="http://10.0.0.1:10101", state="/srv/lh", policy_file="/etc/lh/policy.toml")
    install(c, url="http://10.0.0.1:10101", state="/srv/lh", policy_file="/etc/lh/policy.toml")
    (service,) = c.JupyterHub.services
    env = service["environment"]
    assert env["LATTICEHUB_POLICY"] == "/etc/lh/policy.toml"
    assert env["LATTICEHUB_TRACKING_DB"] == "sqlite:////srv/lh/tracking.sqlite"
    assert "LATTICEHUB_JOB_LIMITS" not in env  # the document, not a copy of it
    assert sorted(r["name"] for r in c.JupyterHub.load_roles) == [ROLE, "user"]
    assert c.Spawner.environment["LATTICEHUB_TRACKING_URL"].endswith("/services/experiments")
