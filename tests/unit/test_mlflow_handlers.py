"""MLflow REST conversion: statuses, request fields, responses, experiment search."""

from __future__ import annotations

import math

import pytest

from hub_ext.experiments.handlers.mlflow_convert import (
    Fields,
    experiment_json,
    mlflow_status,
    parse_experiment_filter,
    run_json,
    run_status,
    select_experiments,
    status_comparison,
    view_type,
)
from hub_ext.experiments.search import Comparison, parse_filter
from hub_ext.experiments.store.entities import Metric, Project, Run, RunStatus
from hub_ext.experiments.store.errors import TrackingError


def test_statuses_map_both_ways():
    assert [mlflow_status(s) for s in RunStatus] == [
        "SCHEDULED",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "KILLED",
        "FAILED",
    ]
    assert run_status("SCHEDULED") is RunStatus.QUEUED
    assert run_status("KILLED") is RunStatus.KILLED
    assert run_status(3) is RunStatus.FINISHED and run_status("4") is RunStatus.FAILED
    for bad in ("LOST", "QUEUED", "done", 9, None):
        with pytest.raises(TrackingError) as info:
            run_status(bad)
        assert info.value.code == "INVALID_PARAMETER_VALUE"


def test_view_types():
    assert view_type(None) == view_type("") == "ACTIVE_ONLY"
    assert view_type("DELETED_ONLY") == view_type(2) == view_type("2") == "DELETED_ONLY"
    assert view_type("all") == "ALL"
    with pytest.raises(TrackingError):
        view_type("SOME")


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("attributes.status = 'SCHEDULED'", "IN", ("QUEUED",)),
        ("attributes.status = 'FAILED'", "IN", ("FAILED", "LOST")),
        ("attributes.status != 'FAILED'", "NOT IN", ("FAILED", "LOST")),
        ("status IN ('RUNNING', 'SCHEDULED')", "IN", ("RUNNING", "QUEUED")),
        ("attributes.status LIKE 'FAIL%'", "LIKE", "FAIL%"),
    ],
)
def test_status_filters_use_stored_names(text, op, value):
    (comparison,) = [status_comparison(c) for c in parse_filter(text)]
    assert (comparison.op, comparison.value) == (op, value)


def test_other_comparisons_are_unchanged():
    comparison = Comparison("tag", "status", "=", "FAILED")
    assert status_comparison(comparison) is comparison


def test_fields_read_protobuf_json_and_query_strings():
    f = Fields(
        {
            "start_time": "1700000000000",
            "step": 3,
            "value": "NaN",
            "inf": "-Infinity",
            "name": "x",
            "ids": "7",
            "tags": [{"key": "a", "value": "b"}, {"key": "c"}],
        }
    )
    assert f.integer("start_time") == 1700000000000 and f.integer("step") == 3
    assert f.integer("absent") is None and f.integer("absent", default=0) == 0
    assert math.isnan(f.number("value")) and f.number("inf") == -math.inf
    assert f.string("name") == "x" and f.string("absent") == ""
    assert f.items("ids") == ["7"] and f.items("absent") == []
    assert f.key_values("tags") == [("a", "b"), ("c", "")]
    for call, fragment in (
        (lambda: f.string("absent", required=True), "Missing value for required parameter"),
        (lambda: f.string("step"), "expected a string"),
        (lambda: f.integer("name"), "expected an integer"),
        (lambda: f.number("name"), "not a number"),
        (
            lambda: (
                Fields({"metrics": [{"key": "m"}]})
                .entries("metrics")[0]
                .number("value", required=True)
            ),
            "'metrics[0].value'",
        ),
        (lambda: Fields({"tags": [{"value": "v"}]}).key_values("tags"), "'tags[0].key'"),
    ):
        with pytest.raises(TrackingError) as info:
            call()
        assert fragment in info.value.message
        assert info.value.code == "INVALID_PARAMETER_VALUE"


def _project(pid: int, name: str, **kwargs) -> Project:
    defaults = dict(
        owner="ann",
        group=None,
        artifact_location=f"mlflow-artifacts:/{pid}",
        creation_time=pid * 10,
        last_update_time=100 - pid,
    )
    return Project(id=pid, name=name, **{**defaults, **kwargs})


def test_experiment_json_shows_owner_and_group_as_tags():
    body = experiment_json(_project(3, "p", group="lqcd", tags={"a": "1"}))
    assert body == {
        "experiment_id": "3",
        "name": "p",
        "artifact_location": "mlflow-artifacts:/3",
        "lifecycle_stage": "active",
        "last_update_time": 97,
        "creation_time": 30,
        "tags": [
            {"key": "a", "value": "1"},
            {"key": "latticehub.group", "value": "lqcd"},
            {"key": "latticehub.owner", "value": "ann"},
        ],
    }


def test_run_json_is_mlflows_run():
    run = Run(
        id="ab" * 16,
        project_id=4,
        name="r",
        user="ann",
        status=RunStatus.LOST,
        start_time=5,
        artifact_uri="mlflow-artifacts:/4/x/artifacts",
        params={"p": "1"},
        tags={"t": "v"},
        metrics={"m": Metric("m", math.nan, 7, 2)},
    )
    body = run_json(run, experiment_deleted=True)
    assert body["info"] == {
        "run_id": "ab" * 16,
        "run_uuid": "ab" * 16,
        "run_name": "r",
        "experiment_id": "4",
        "user_id": "ann",
        "status": "FAILED",
        "start_time": 5,
        "artifact_uri": "mlflow-artifacts:/4/x/artifacts",
        "lifecycle_stage": "deleted",
    }
    assert body["data"] == {
        "metrics": [{"key": "m", "value": "NaN", "timestamp": 7, "step": 2}],
        "params": [{"key": "p", "value": "1"}],
        "tags": [{"key": "t", "value": "v"}],
    }
    assert run_json(Run("c" * 32, 1, "n", "u", RunStatus.RUNNING, 1))["data"] == {}


PROJECTS = [
    _project(1, "phi4-L8", tags={"kind": "scan"}),
    _project(2, "phi4-L16", group="lqcd"),
    _project(3, "QCD-b6", tags={"kind": "prod"}),
    _project(4, "old", lifecycle_stage="deleted"),
]


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("", [], [3, 2, 1]),  # creation_time DESC by default
        ("name LIKE 'phi4-%'", ["name"], [2, 1]),
        ("attributes.name ILIKE 'qcd%'", [], [3]),
        ("name = 'phi4-L8'", [], [1]),
        ("name != 'phi4-L8' and creation_time >= 20", ["experiment_id ASC"], [2, 3]),
        ("tags.kind = 'scan'", [], [1]),
        ("tags.kind IS NULL", [], [2]),
        ("tags.kind IS NOT NULL and tags.`kind` LIKE 'p%'", [], [3]),
        ("tags.latticehub.group = 'lqcd'", [], [2]),
        ("experiment_id IN ('1', '3')", ["last_update_time DESC"], [1, 3]),
        ("last_update_time < 98.5", ["name DESC"], [2, 3]),  # byte order: p > Q
    ],
)
def test_experiment_search(text, order, expected):
    chosen = select_experiments(PROJECTS, view="ACTIVE_ONLY", filter_text=text, order_by=order)
    assert [p.id for p in chosen] == expected


def test_experiment_search_views():
    def ids(view):
        return [
            p.id
            for p in select_experiments(
                PROJECTS, view=view, filter_text="", order_by=["experiment_id"]
            )
        ]

    assert ids("DELETED_ONLY") == [4] and ids("ALL") == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "text",
    [
        "colour = 'red'",
        "name > 'a'",
        "creation_time = 'x'",
        "name = 5",
        "name = 'a' or name = 'b'",
        "name = 'a' and",
        "params.x = '1'",
        "name LIKE",
        "name 'a'",
        "name IS NULL",
        "experiment_id IN '1'",
        "name = 'a' $",
    ],
)
def test_bad_experiment_filters(text):
    with pytest.raises(TrackingError) as info:
        parse_experiment_filter(text)
    assert info.value.code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("order", [["tags.x"], ["name UP"], ["name ASC extra"], [""], ["size"]])
def test_bad_experiment_order(order):
    with pytest.raises(TrackingError):
        select_experiments(PROJECTS, view="ALL", filter_text="", order_by=order)
