"""LauncherState without ipywidgets: defaults from the service's job options, checks, submit."""

from __future__ import annotations

import pytest

from latticehub.client import Page, TrackingAPIError
from tests.widgets.conftest import fake_client
from widgets.launcher_state import GroupOptions, LauncherState, field_for_message

#: As GET api/v1/jobs/options answers (asdict of the group's JobLimits, executors filtered).
OPTIONS = {
    "lqcd": {"executors": ["slurm", "local"], "partitions": ["gpu", "cpu"], "accounts": [],
             "max_jobs": 4, "max_jobs_per_user": None, "max_nodes": 1, "max_gpus": 2,
             "max_cpus": 8, "max_mem_mb": 16384, "max_time_s": 7200, "default_time_s": 3600,
             "default_mem_mb": 4096, "default_cpus": 3},
    "bio": {"executors": [], "partitions": [], "max_gpus": 0, "max_cpus": 2,
            "default_cpus": 1, "default_mem_mb": 1024, "default_time_s": 600},
}  # fmt: skip


@pytest.fixture
def client():
    projects = Page([{"name": "zeta"}, {"name": "alpha"}], None)
    return fake_client(job_options=OPTIONS, list_projects=projects)


@pytest.fixture
def state(client):
    s = LauncherState(client)
    s.load()
    s.start("phi4-scan")
    return s


def test_defaults_come_from_the_services_options(state, client):
    client.job_options.assert_called_once_with()
    assert state.groups == ["bio", "lqcd"] and state.project_names == ["alpha", "zeta"]
    state.choose_group("lqcd")
    assert state.values["executor"] == "slurm" and state.values["partition"] == "gpu"
    choices = state.group_choices("lqcd")
    assert choices["executors"] == ["slurm", "local"] and choices["partitions"] == ["gpu", "cpu"]
    assert choices["placeholders"] == {"mem": "default 4096M, at most 16384M",
                                       "time": "default 1:00:00, at most 2:00:00"}  # fmt: skip


def test_cpus_start_at_the_groups_default_and_stay_within_its_maximum(client):
    options = {"lqcd": {**OPTIONS["lqcd"], "default_cpus": 3}}
    client.job_options.return_value = options
    s = LauncherState(client)
    s.load()
    s.start()
    assert s.values["cpus"] == 3 and s.resources()["cpus"] == 3
    s.values["cpus"] = 50
    s.choose_group("lqcd")
    assert s.values["cpus"] == 8  # clamped to max_cpus


def test_a_group_without_a_runnable_executor_is_refused(state):
    state.choose_group("bio")
    assert state.values["executor"] is None
    assert "executor" in state.validate() and "ask an admin" in state.errors["executor"]
    assert "executor" not in state.resources()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"gpus": 3}, "gpus", "at most 2 GPUs per node for group lqcd"),
        ({"gpus": -1}, "gpus", "cannot be negative"),
        ({"cpus": 9}, "cpus", "at most 8 CPUs for group lqcd"),
        ({"cpus": 0}, "cpus", "at least 1 CPU"),
        ({"group": "physics"}, "group", "choose a group"),
        ({"project": "  "}, "project", "name the project"),
        ({"extra": "{oops"}, "extra", "not valid JSON"),
        ({"extra": "[1]"}, "extra", "JSON object"),
        ({"extra": '{"L": 4}'}, "extra", "own field"),
    ],
)
def test_resource_and_form_checks(state, changes, field, words):
    state.choose_group("lqcd")
    state.values.update(changes)
    assert words in state.validate()[field]


def test_without_options_the_service_checks_resources(client):
    client.job_options.side_effect = TrackingAPIError(503, "EXECUTOR_UNAVAILABLE", "off")
    s = LauncherState(client)
    s.load()
    assert s.error.status == 503 and s.options == {}
    s.start("p")
    s.values["gpus"] = 99
    assert "gpus" not in s.validate()


def test_request_is_the_submit_body(state, client):
    state.choose_group("lqcd")
    state.values.update({"mem": " 4G ", "time": "", "gpus": 1, "name": "r1", "hidden": "4, 4",
                         "extra": '{"log_every": 5}'})  # fmt: skip
    body = state.request()
    assert body["project"] == "phi4-scan" and body["group"] == "lqcd" and body["name"] == "r1"
    assert body["resources"] == {"executor": "slurm", "partition": "gpu", "cpus": 3,
                                 "gpus": 1, "mem": "4G"}  # fmt: skip
    assert body["config"]["hidden"] == [4, 4] and body["config"]["log_every"] == 5
    client.submit_job.return_value = {"id": "j1", "run_id": "r1"}
    assert state.submit()["id"] == "j1" and state.job["id"] == "j1"
    client.submit_job.assert_called_once_with(**body)


def test_a_400_lands_on_the_field_it_names(state, client):
    client.submit_job.side_effect = TrackingAPIError(
        400, "INVALID_PARAMETER_VALUE", "resources.gpus=3 is above the limit 2 of group lqcd"
    )
    with pytest.raises(Exception) as caught:
        state.submit()
    assert caught.value.status == 400 and "gpus" in state.errors
    assert state.error is caught.value


def test_clone_fills_from_a_runs_params(state, client):
    client.get_run.return_value = {
        "name": "src", "project_id": 4,
        "params": {"L": "12", "hidden": "[4, 4]", "action": "phi4", "log_every": "7",
                   "bogus": "x"},
    }  # fmt: skip
    client.get_project.return_value = {"id": 4, "name": "clone-src"}
    values, ignored, run = state.clone("r" * 32)
    assert values["L"] == 12 and values["hidden"] == "4, 4" and values["project"] == "clone-src"
    assert values["extra"] == '{"log_every": 7}' and ignored == ["bogus"]
    client.get_project.assert_called_once_with(4)


def test_no_service_configured(monkeypatch):
    for name in ("LATTICEHUB_TRACKING_URL", "JUPYTERHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    s = LauncherState()
    s.load()
    assert s.client is None and s.error.code == "NO_SERVICE"
    with pytest.raises(Exception, match="No experiments service"):
        s.submit()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"executors": ["local"], "max_cpus": 2}, GroupOptions(executors=("local",), max_cpus=2)),
        ({}, GroupOptions()),
        ({"partitions": ["a"], "new_key": 1}, GroupOptions(partitions=("a",))),
    ],
)
def test_group_options_take_what_the_service_says(data, expected):
    parsed = GroupOptions.from_json(data)
    assert parsed == expected
    assert parsed.extra == {k: v for k, v in data.items() if k == "new_key"}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("config: lr must be > 0, got -0.001", "lr"),
        ("resources.cpus=9 is above the limit 8 of group lqcd", "cpus"),
        ("phi^4 checkerboard couplings need an even L, got L=3", "L"),
        ("you are not a member of group 'x'", "group"),
        ("something else entirely", None),
    ],
)
def test_field_for_message(message, field):
    assert field_for_message(message, ["lr", "cpus", "L", "group"]) == field
