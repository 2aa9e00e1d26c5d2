"""Declaring the culler in a Hub config: service, least-privilege role, validation messages."""

import json
import sys

import pytest
from traitlets import TraitError
from traitlets.config import Config

from hub_ext.culling.app import CullerApp
from hub_ext.culling.hubconfig import ROLE, SERVICE, culled_groups, install, role_scopes
from latticehub.policy import load_policy, service_policy
from spawner import GroupLimitDockerSpawner, GroupLimitSwarmSpawner


def hub_config(group_limits, **spawner_settings) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = GroupLimitDockerSpawner
    c.JupyterHub.services = [{"name": "experiments", "url": "http://127.0.0.1:1"}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self"]}]
    c.GroupLimitDockerSpawner.group_limits = group_limits
    c.GroupLimitDockerSpawner.unlisted_group_limits = None
    for key, value in spawner_settings.items():
        c.GroupLimitDockerSpawner[key] = value
    return c


def entries(c, name):
    return [e for e in [*c.JupyterHub.services, *c.JupyterHub.load_roles] if e["name"] == name]


def test_install_declares_service_and_group_filtered_role():
    c = hub_config(
        {
            "fast": {"max_servers": 2, "idle_timeout": 15},
            "slow": {"max_servers": 1, "idle_timeout": 3600, "idle_timeout_busy": 600},
            "never": {"max_servers": 4},
        }
    )
    assert install(c, interval=3, busy_fraction=0.5) is True
    (service,) = entries(c, SERVICE)
    assert service["command"] == [sys.executable, "-m", "hub_ext.culling"]
    assert "url" not in service  # it only calls the Hub API
    env = service["environment"]
    assert env["LATTICEHUB_CULL_INTERVAL"] == "3"
    assert env["LATTICEHUB_CULL_BUSY_FRACTION"] == "0.5"
    policy = json.loads(env["LATTICEHUB_CULLING_POLICY"])
    assert policy["group_limits"]["fast"] == {"max_servers": 2, "idle_timeout": 15}
    (role,) = entries(c, ROLE)
    assert role["services"] == [SERVICE]
    assert sorted(role["scopes"]) == sorted(
        f"{scope}!group={g}"
        for scope in ("list:users", "read:users:groups", "read:servers", "read:groups")
        + ("delete:servers",)
        for g in ("fast", "slow")
    )
    # nothing else touched
    assert [s["name"] for s in c.JupyterHub.services] == ["experiments", SERVICE]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["user", ROLE]


def test_install_again_replaces_its_own_entries_and_keeps_settings():
    c = hub_config({"fast": {"idle_timeout": 15}})
    install(c, interval=3)
    c.GroupLimitDockerSpawner.group_limits = {"other": {"max_age": 60}}
    install(c)
    (service,) = entries(c, SERVICE)
    assert service["environment"]["LATTICEHUB_CULL_INTERVAL"] == "3"
    assert json.loads(service["environment"]["LATTICEHUB_CULLING_POLICY"])["group_limits"] == {
        "other": {"max_age": 60}
    }
    (role,) = entries(c, ROLE)
    assert "delete:servers!group=other" in role["scopes"]
    assert not any("fast" in s for s in role["scopes"])


def test_install_without_idle_settings_declares_nothing_and_removes_old_entries():
    c = hub_config({"fast": {"idle_timeout": 15}})
    assert install(c) is True
    c.GroupLimitDockerSpawner.group_limits = {"fast": {"max_servers": 2}}
    assert install(c) is False
    assert entries(c, SERVICE) == [] and entries(c, ROLE) == []


@pytest.mark.parametrize("pool", ["unlisted_group_limits", "no_group_limits"])
def test_unnamed_pools_with_idle_settings_need_unfiltered_scopes(pool):
    c = hub_config({"fast": {"idle_timeout": 15}}, **{pool: {"idle_timeout": 60}})
    install(c)
    (role,) = entries(c, ROLE)
    assert role["scopes"] == [
        "list:users",
        "read:users:groups",
        "read:servers",
        "read:groups",
        "delete:servers",
    ]


def test_role_scopes_and_culled_groups_of_a_policy():
    policy = {"group_limits": {"a": {"max_age": 10}, "b": {}}}
    assert culled_groups(policy) == ["a"]
    assert "read:servers!group=a" in role_scopes(policy)
    assert not any(s.endswith("=b") for s in role_scopes(policy))


def test_install_reads_the_limits_of_the_configured_spawner_class():
    c = hub_config({"fast": {"idle_timeout": 15}})
    c.JupyterHub.spawner_class = GroupLimitSwarmSpawner
    assert install(c) is False  # the Docker spawner's section does not apply
    c.GroupLimitSwarmSpawner.group_limits = {"fast": {"idle_timeout": 15}}
    assert install(c) is True
    policy = json.loads(entries(c, SERVICE)[0]["environment"]["LATTICEHUB_CULLING_POLICY"])
    assert policy["engine"] == "swarm" and "fast" in policy["group_limits"]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"idle_timeout": 0},
            "group_limits['g']: idle_timeout=0 must be a whole number of seconds > 0, "
            "e.g. idle_timeout=3600",
        ),
        (
            {"idle_timeout_busy": "15m"},
            "group_limits['g']: idle_timeout_busy='15m' must be a whole number of seconds > 0",
        ),
        (
            {"max_age": -1},
            "group_limits['g']: max_age=-1 must be a whole number of seconds >= 0 (0: no "
            "maximum age), e.g. max_age=86400",
        ),
        (
            {"idle_timeout": 60, "idle_timeout_busy": 120},
            "group_limits['g']: idle_timeout_busy=120 must be <= idle_timeout=60",
        ),
    ],
)
def test_bad_idle_values_are_refused_with_the_fix(limits, message):
    c = hub_config({"g": limits})
    with pytest.raises(TraitError) as info:  # the spawner's own validation
        install(c)
    assert message in str(info.value)
    with pytest.raises(TraitError, match="policy: ") as info:
        CullerApp(policy=json.dumps({"group_limits": {"g": limits}}))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("trait", "value", "message"),
    [
        ("interval", 0, "interval=0.0 must be > 0 seconds, e.g. 60"),
        ("busy_fraction", 0, "busy_fraction=0.0 must be in (0, 1], e.g. 0.8"),
        ("busy_fraction", 1.5, "busy_fraction=1.5 must be in (0, 1]"),
        ("concurrency", 0, "concurrency=0 must be >= 1, e.g. 10"),
    ],
)
def test_app_traits_say_how_to_fix_a_bad_value(trait, value, message):
    with pytest.raises(TraitError) as info:
        CullerApp(**{trait: value})
    assert message in str(info.value)


def test_app_defaults_come_from_the_service_environment(monkeypatch):
    monkeypatch.setenv("LATTICEHUB_CULL_INTERVAL", "7.5")
    monkeypatch.setenv("LATTICEHUB_CULL_BUSY_FRACTION", "0.5")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:5/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok")
    monkeypatch.setenv("LATTICEHUB_CULLING_POLICY", '{"group_limits": {"a": {"max_age": 9}}}')
    app = CullerApp()
    assert (app.interval, app.busy_fraction) == (7.5, 0.5)
    assert (app.api_url, app.api_token) == ("http://127.0.0.1:5/hub/api", "tok")
    assert json.loads(app.policy)["group_limits"] == {"a": {"max_age": 9}}


def test_repo_config_declares_the_culler_for_the_demo_groups(tmp_path, monkeypatch):
    """jupyterhub_config.py, loaded as the Hub does (demo mode), declares the service."""
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("LATTICEHUB_STATE", str(tmp_path))
    monkeypatch.setenv("LATTICEHUB_HUB_IP", "127.0.0.1")
    monkeypatch.setenv("LATTICEHUB_DEMO", "1")
    monkeypatch.setenv("LATTICEHUB_SPAWNER", "docker")
    monkeypatch.chdir(tmp_path)
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(root)).load_config()
    (role,) = entries(c, ROLE)
    assert "delete:servers!group=lqcd" in role["scopes"]
    assert "delete:servers!group=nuclear" in role["scopes"]
    (service,) = entries(c, SERVICE)
    env = service["environment"]
    # the groups' rules come from the one policy document, which the service reads itself
    assert env["LATTICEHUB_POLICY"] == str(root / "etc" / "policy.toml")
    assert "group_limits" not in json.loads(env["LATTICEHUB_CULLING_POLICY"])
    policy = service_policy(env["LATTICEHUB_CULLING_POLICY"], load_policy(env["LATTICEHUB_POLICY"]))
    assert policy.ceilings["lqcd"].idle_timeout == 3600
    quotas_env = entries(c, "quotas")[0]["environment"]
    assert quotas_env["LATTICEHUB_POLICY"] == env["LATTICEHUB_POLICY"]
    (experiments,) = entries(c, "experiments")
    assert experiments["environment"]["LATTICEHUB_POLICY"] == env["LATTICEHUB_POLICY"]
