"""The manager rule, the policy document, and the service entry and role in a Hub config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from traitlets.config import Config

from hub_ext.common.hubconfig import policy_document
from hub_ext.common.managers import viewer_from_model, viewer_from_scopes
from hub_ext.quotas.app import missing_write_scopes
from hub_ext.quotas.hubconfig import ROLE, SERVICE, install, role_scopes
from latticehub.policy import parse_policy
from spawner import GroupLimitDockerSpawner, GroupLimitSwarmSpawner


@pytest.mark.parametrize(
    ("scopes", "all_groups", "manages"),
    [
        (["groups"], True, set()),
        (["admin:groups", "read:groups"], True, set()),
        (
            ["groups!group=lqcd", "read:groups!group=lqcd", "list:groups!group=lqcd"],
            False,
            {"lqcd"},
        ),
        (["admin:groups!group=a", "groups!group=b"], False, {"a", "b"}),
        (["read:groups!group=lqcd", "read:groups"], False, set()),  # reading is not managing
        (["groups!user=ann", "groups!group="], False, set()),
        (["access:services!service=quotas", "self"], False, set()),
        ([], False, set()),
    ],
)
def test_manager_rule_from_scopes(scopes, all_groups, manages):
    viewer = viewer_from_scopes("ann", scopes)
    assert (viewer.all_groups, set(viewer.manages)) == (all_groups, manages)
    assert viewer.is_manager == (all_groups or bool(manages))


def test_admin_flag_alone_grants_nothing():
    # a restricted token of an admin: the token's scopes decide, not the account
    viewer = viewer_from_model({"name": "boss", "admin": True, "scopes": ["read:users:name!user"]})
    assert not viewer.is_manager
    assert viewer_from_model({"name": "boss", "scopes": ["groups"]}).can_manage("anything")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{", ["not JSON"]),
        ("[]", ["JSON object"]),
        ({"group_limits": {"g": {"mem_limit": "8X"}}}, ["mem_limit='8X'"]),
        ({"group_limits": {"g": {"colour": 1}}}, ["unknown key", "colour"]),
        ({"engine": "k8s"}, ["engine='k8s'"]),
        ({"spawner": "x"}, ["unknown key", "spawner"]),
    ],
)
def test_bad_policy_is_refused(raw, words):
    with pytest.raises(ValueError) as info:
        parse_policy(raw)
    for word in words:
        assert word in str(info.value)


def test_policy_defaults_and_lookup():
    policy = parse_policy("")
    assert (policy.ceilings, policy.engine, policy.hub_id, policy.node_name) == (
        {},
        "docker",
        "latticehub",
        "local",
    )
    policy = parse_policy(
        {
            "group_limits": {"a": {}},
            "unlisted_group_limits": {"max_servers": 1},
            "no_group_limits": {"max_servers": 2},
            "no_group_pool": "p",
        }
    )
    assert policy.ceiling_of("a").max_servers is None
    assert policy.ceiling_of("other").max_servers == 1
    assert policy.ceiling_of("other", hub_group=False) is None
    assert policy.ceiling_of("p").max_servers == 2
    assert (
        policy.is_lowerable("a") and policy.is_lowerable("other") and not policy.is_lowerable("p")
    )


def make_config(**limits) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = GroupLimitDockerSpawner
    c.JupyterHub.services = [{"name": "experiments", "url": "http://127.0.0.1:1"}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self"]}]
    # explicit: the trait's default is {} (every unlisted group chargeable), see docs/quotas.md
    c.GroupLimitDockerSpawner.unlisted_group_limits = None
    for key, value in limits.items():
        c.GroupLimitDockerSpawner[key] = value
    return c


def test_install_adds_the_service_and_a_least_privilege_role(monkeypatch):
    monkeypatch.setenv("LATTICEHUB_HUB_ID", "prod")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    c = make_config(group_limits={"lqcd": {"max_servers": 3}, "nuclear": {}}, node_name="gpu01")
    install(c, url="http://127.0.0.1:10102")
    names = [s["name"] for s in c.JupyterHub.services]
    assert names == ["experiments", SERVICE]
    service = c.JupyterHub.services[-1]
    assert service["url"] == "http://127.0.0.1:10102"
    assert service["command"][1:] == ["-m", "hub_ext.quotas"]
    assert service["oauth_client_allowed_scopes"] == ["groups"]
    assert service["environment"]["DOCKER_HOST"] == "unix:///run/docker.sock"
    policy = parse_policy(service["environment"]["LATTICEHUB_QUOTAS_POLICY"])
    assert list(policy.ceilings) == ["lqcd", "nuclear"]
    assert (policy.hub_id, policy.node_name, policy.engine) == ("prod", "gpu01", "docker")
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == ROLE]
    assert role["services"] == [SERVICE]
    assert role["scopes"] == [
        "list:users",
        "read:users:groups",
        "read:servers",
        "read:metrics",
        "groups!group=lqcd",
        "groups!group=nuclear",
    ]
    json.dumps(c.JupyterHub.services)  # the Hub stores the service's environment as JSON


def test_install_passes_the_document_and_warns_about_the_old_spelling(tmp_path, capfd):
    """The service reads the policy document itself; group traits in the config still win."""
    doc = tmp_path / "policy.toml"
    doc.write_text("[groups.lqcd.servers]\nmax_servers = 2\n[groups.nuclear.servers]\n")
    c = Config()
    c.JupyterHub.spawner_class = GroupLimitDockerSpawner
    c.GroupLimitDockerSpawner.policy_file = str(doc)
    install(c, url="http://127.0.0.1:5")
    env = c.JupyterHub.services[-1]["environment"]
    assert env["LATTICEHUB_POLICY"] == str(doc)
    assert "group_limits" not in json.loads(env["LATTICEHUB_QUOTAS_POLICY"])
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == ROLE]
    assert role["scopes"][-2:] == ["groups!group=lqcd", "groups!group=nuclear"]
    assert "deprecated" not in capfd.readouterr().err
    c.GroupLimitDockerSpawner.group_limits = {"old": {"max_servers": 1}}
    install(c)
    env = c.JupyterHub.services[-1]["environment"]
    carried = json.loads(env["LATTICEHUB_QUOTAS_POLICY"])
    assert carried["group_limits"] == {"old": {"max_servers": 1}}
    err = capfd.readouterr().err
    assert "GroupLimitDockerSpawner.group_limits set in the config is deprecated" in err
    assert "policy document" in err


def test_install_again_after_an_override_replaces_only_its_own_entries():
    c = make_config(group_limits={"lqcd": {}})
    install(c, url="http://127.0.0.1:5")
    c.GroupLimitDockerSpawner.group_limits = {"storm": {"max_servers": 1}}
    install(c)  # keeps the URL
    assert [s["name"] for s in c.JupyterHub.services] == ["experiments", SERVICE]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["user", ROLE]
    assert c.JupyterHub.services[-1]["url"] == "http://127.0.0.1:5"
    policy = parse_policy(c.JupyterHub.services[-1]["environment"]["LATTICEHUB_QUOTAS_POLICY"])
    assert list(policy.ceilings) == ["storm"]
    assert c.JupyterHub.load_roles[-1]["scopes"][-1] == "groups!group=storm"


def test_install_with_the_experiments_api_grants_only_storage_reading():
    c = make_config(group_limits={"lqcd": {}})
    c.JupyterHub.custom_scopes = {"custom:site:thing": {"description": "kept"}}
    api = "http://172.17.0.1:10101/services/experiments"
    install(c, url="http://127.0.0.1:5", environment={"LATTICEHUB_EXPERIMENTS_API": api})
    install(c)  # again, as jupyterhub_config.py does: the grant is not lost or doubled
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == ROLE]
    extra = [s for s in role["scopes"] if "experiments" in s or s.startswith("custom:")]
    assert extra == ["access:services!service=experiments", "custom:latticehub-usage:read"]
    assert set(c.JupyterHub.custom_scopes) == {
        "custom:site:thing",
        "custom:latticehub-usage:read",
    }
    assert c.JupyterHub.services[-1]["environment"]["LATTICEHUB_EXPERIMENTS_API"] == api
    # without the URL: no call to the experiments service, so no scope for it
    bare = make_config(group_limits={"lqcd": {}})
    install(bare, url="http://127.0.0.1:5")
    (role,) = [r for r in bare.JupyterHub.load_roles if r["name"] == ROLE]
    assert not [s for s in role["scopes"] if "experiments" in s or s.startswith("custom:")]
    assert "custom_scopes" not in bare.JupyterHub


def test_install_needs_a_url_the_first_time():
    with pytest.raises(ValueError, match="URL"):
        install(make_config())


def test_policy_document_follows_traitlets_resolution():
    c = Config()
    c.GroupLimitsMixin.no_group_pool = "base-pool"  # a base class section counts
    c.GroupLimitSwarmSpawner.group_limits = {"a": {"nodes": ["n1"]}}
    c.GroupLimitSwarmSpawner.unlisted_group_limits = {"max_servers": 1}
    doc = policy_document(c, GroupLimitSwarmSpawner)
    assert doc["engine"] == "swarm" and doc["no_group_pool"] == "base-pool"
    assert doc["unlisted_group_limits"] == {"max_servers": 1}
    assert doc["group_limits"] == {"a": {"nodes": ["n1"]}}
    assert role_scopes(doc)[-1] == "groups"  # every group may be lowered


def test_missing_write_scopes():
    policy = parse_policy({"group_limits": {"a": {}, "b": {}}})
    assert missing_write_scopes(policy, ["groups!group=a"]) == ["groups!group=b"]
    assert missing_write_scopes(policy, ["admin:groups"]) == []
    unlisted = parse_policy({"unlisted_group_limits": {}})
    assert missing_write_scopes(unlisted, ["groups!group=a"]) == ["groups"]


def test_service_help():
    result = subprocess.run(
        [sys.executable, "-m", "hub_ext.quotas", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--policy" in result.stdout and "--port" in result.stdout
