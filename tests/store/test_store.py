"""The tracking store contract, on every back end (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import threading

import pytest

from hub_ext.experiments.search import parse_filter, parse_order_by
from hub_ext.experiments.store import (
    AbstractStore,
    Metric,
    Param,
    RunStatus,
    SqlStore,
    Tag,
    TrackingError,
    open_store,
)
from hub_ext.experiments.store.errors import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    RESOURCE_LIMIT_EXCEEDED,
)


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(TrackingError) as err:
        call(*args, **kwargs)
    return err.value.code


def test_abstract_store_is_enforced():
    with pytest.raises(TypeError, match="abstract"):
        AbstractStore()

    class Half(AbstractStore):
        def get_run(self, run_id):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_open_store_picks_back_end_by_scheme(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert isinstance(store, SqlStore)
    with pytest.raises(ValueError, match="sqlite:////path"):
        open_store("mysql://x")


def test_projects(store):
    p = store.create_project("phi4", owner="ann", group="lqcd", tags={"a": "1"})
    assert p.artifact_location == f"mlflow-artifacts:/{p.id}"
    assert store.get_project(p.id).tags == {"a": "1"}
    store.set_project_tag(p.id, Tag("b", "2"))
    store.delete_project_tag(p.id, "a")
    assert store.get_project(p.id).tags == {"b": "2"}
    assert code_of(store.delete_project_tag, p.id, "a") == RESOURCE_DOES_NOT_EXIST
    assert store.get_project_by_name("phi4").id == p.id
    assert store.get_project_by_name("nope") is None
    # names are unique per group (schema 4), not across the service
    assert code_of(store.create_project, "phi4", owner="bob", group="lqcd") == (
        RESOURCE_ALREADY_EXISTS
    )
    assert code_of(store.get_project, 9999) == RESOURCE_DOES_NOT_EXIST
    q = store.create_project("u1", owner="bob", group=None)
    store.update_project(q.id, lifecycle_stage="deleted")
    assert [x.name for x in store.search_projects().items] == ["phi4"]
    assert {x.name for x in store.search_projects(include_deleted=True).items} == {"phi4", "u1"}
    assert store.update_project(q.id, name="u2").name == "u2"
    assert store.update_project(q.id, name="phi4").name == "phi4"  # bob's private namespace
    assert code_of(store.update_project, q.id, colour="red") == INVALID_PARAMETER_VALUE


def test_visibility_by_owner_group_and_share(store):
    a = store.create_project("a", owner="ann", group="lqcd")
    b = store.create_project("b", owner="bob", group="nuclear")
    c = store.create_project("c", owner="cat", group=None)
    assert set(store.visible_project_ids(user="ann", groups=["lqcd"], admin=False)) == {a.id}
    # owning a group's project gives nothing once the owner left the group
    assert store.visible_project_ids(user="ann", groups=["nuclear"], admin=False) == [b.id]
    assert store.visible_project_ids(user="ann", groups=[], admin=False) == []
    assert set(store.visible_project_ids(user="cat", groups=[], admin=False)) == {c.id}
    assert store.visible_project_ids(user="x", groups=[], admin=True) is None
    store.share_project(b.id, "lqcd")
    assert store.get_project(b.id).shared_with == ("lqcd",)
    assert set(store.visible_project_ids(user="ann", groups=["lqcd"], admin=False)) == {a.id, b.id}
    store.share_project(b.id, "lqcd", share=False)
    assert set(store.visible_project_ids(user="ann", groups=["lqcd"], admin=False)) == {a.id}


def test_run_lifecycle_and_records(store):
    p = store.create_project("p", owner="ann", group="lqcd")
    run = store.create_run(p.id, user="ann", name="first", status=RunStatus.QUEUED)
    assert run.status == RunStatus.QUEUED and run.tags["mlflow.runName"] == "first"
    assert run.artifact_uri == f"{p.artifact_location}/{run.id}/artifacts"
    failure = {"type": "ValueError", "message": "bad", "traceback": "T", "exit_code": 1}
    updated = store.update_run(
        run.id,
        status="FAILED",
        end_time=5,
        code={"commit": "abc", "dirty": True},
        environment={"python": "3.11"},
        failure=failure,
        name="renamed",
    )
    assert updated.status == RunStatus.FAILED and updated.failure == failure
    assert updated.code["commit"] == "abc" and updated.tags["mlflow.runName"] == "renamed"
    assert code_of(store.update_run, run.id, status="WEIRD") == INVALID_PARAMETER_VALUE
    assert code_of(store.get_run, "0" * 32) == RESOURCE_DOES_NOT_EXIST
    assert code_of(store.get_run, "../etc") == INVALID_PARAMETER_VALUE
    store.update_run(run.id, lifecycle_stage="deleted")
    assert code_of(store.log_metric, run.id, Metric("x", 1.0, 1)) == INVALID_STATE
    store.update_project(p.id, lifecycle_stage="deleted")
    assert code_of(store.create_run, p.id, user="ann") == INVALID_STATE


def test_params_are_write_once_and_batches_idempotent(store):
    p = store.create_project("p", owner="ann", group=None)
    run = store.create_run(p.id, user="ann")
    batch = dict(
        metrics=[Metric("loss", 1.0, 10, 0), Metric("loss", 0.5, 20, 1)],
        params=[Param("lr", "0.01")],
        tags=[Tag("stage", "a")],
    )
    store.log_batch(run.id, **batch)
    store.log_batch(run.id, **batch)  # a client retry
    assert [m.value for m in store.get_metric_history(run.id, "loss")] == [1.0, 0.5]
    with pytest.raises(TrackingError) as err:
        store.log_param(run.id, Param("lr", "0.1"))
    assert "Changing param values is not allowed" in err.value.message
    assert "value='0.01'" in err.value.message
    store.log_param(run.id, Param("lr", "0.01"))
    store.set_tag(run.id, Tag("stage", "b"))
    got = store.get_run(run.id)
    assert got.params == {"lr": "0.01"} and got.tags["stage"] == "b"
    store.delete_tag(run.id, "stage")
    assert "stage" not in store.get_run(run.id).tags
    assert code_of(store.delete_tag, run.id, "stage") == RESOURCE_DOES_NOT_EXIST
    duplicate = [Param("a", "1"), Param("a", "2")]
    assert code_of(store.log_batch, run.id, params=duplicate) == INVALID_PARAMETER_VALUE
    # nothing of a refused batch is stored
    assert "a" not in store.get_run(run.id).params


def test_latest_metric_is_max_step_then_time_whatever_the_order(store):
    p = store.create_project("p", owner="ann", group=None)
    run = store.create_run(p.id, user="ann")
    store.log_batch(run.id, metrics=[Metric("m", 3.0, 100, 5)])
    store.log_batch(run.id, metrics=[Metric("m", 9.0, 200, 2)])  # older step arrives late
    store.log_batch(run.id, metrics=[Metric("m", 4.0, 50, 5)])  # same step, older time
    assert store.get_run(run.id).metrics["m"] == Metric("m", 3.0, 100, 5)
    store.log_batch(run.id, metrics=[Metric("m", float("nan"), 300, 6)])
    latest = store.get_run(run.id).metrics["m"]
    assert math.isnan(latest.value) and latest.step == 6
    history = store.get_metric_history(run.id, "m")
    assert [m.step for m in history] == [2, 5, 5, 6]
    assert store.get_metric_history(run.id, "m", offset=1, limit=2)[0].step == 5


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"metrics": [Metric("k", 1.0, 1)] * 1001}, RESOURCE_LIMIT_EXCEEDED),
        ({"params": [Param(f"p{i}", "v") for i in range(101)]}, RESOURCE_LIMIT_EXCEEDED),
        ({"tags": [Tag(f"t{i}", "v") for i in range(101)]}, RESOURCE_LIMIT_EXCEEDED),
        ({"metrics": [Metric("../x", 1.0, 1)]}, INVALID_PARAMETER_VALUE),
        ({"metrics": [Metric("/abs", 1.0, 1)]}, INVALID_PARAMETER_VALUE),
        ({"metrics": [Metric("ok", "1.0", 1)]}, INVALID_PARAMETER_VALUE),
        ({"metrics": [Metric("ok", 1.0, 1.5)]}, INVALID_PARAMETER_VALUE),
        ({"params": [Param("p", "x" * 6001)]}, INVALID_PARAMETER_VALUE),
        ({"params": [Param("p", 3)]}, INVALID_PARAMETER_VALUE),
        ({"tags": [Tag("t" * 251, "v")]}, INVALID_PARAMETER_VALUE),
    ],
)
def test_bad_batches_are_refused_whole(store, kwargs, code):
    p = store.create_project("p", owner="ann", group=None)
    run = store.create_run(p.id, user="ann")
    assert code_of(store.log_batch, run.id, **kwargs) == code
    got = store.get_run(run.id)
    assert got.metrics == {} and got.params == {}


def make_runs(store):
    p = store.create_project("search", owner="ann", group="lqcd")
    q = store.create_project("other", owner="bob", group="nuclear")
    ids = {}
    for i in range(6):
        run = store.create_run(p.id, user="ann" if i % 2 else "bob", name=f"r{i}", start_time=i)
        metrics = [Metric("loss", 1.0 / (i + 1), 1, 0)] if i != 5 else []
        store.log_batch(
            run.id,
            metrics=metrics,
            params=[Param("lr", f"0.{i}"), Param("L", "8" if i < 3 else "16")],
            tags=[Tag("kind", "phi4" if i < 4 else "u1")],
        )
        ids[i] = run.id
    store.update_run(ids[0], status="FINISHED")
    store.create_run(q.id, user="bob", name="elsewhere")
    return p, q, ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.loss < 0.3", [3, 4]),
        ("metrics.loss >= 0.5 and params.L = '8'", [0, 1]),
        ("params.L = '16'", [3, 4, 5]),
        ("params.lr IN ('0.1', '0.2')", [1, 2]),
        ("tags.kind LIKE 'u%'", [4, 5]),
        ("tags.kind ILIKE 'PHI%' and attributes.user_id = 'ann'", [1, 3]),
        ("attributes.status = 'FINISHED'", [0]),
        ("attributes.run_name = 'r2'", [2]),
        ("attributes.start_time > 3", [4, 5]),
        ("params.lr != '0.1'", [0, 2, 3, 4, 5]),
        ("attributes.status NOT IN ('FINISHED')", [1, 2, 3, 4, 5]),
        ("", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_search_filters(store, text, expected):
    p, _, ids = make_runs(store)
    page = store.search_runs(project_ids=[p.id], filters=parse_filter(text))
    assert sorted(r.id for r in page.items) == sorted(ids[i] for i in expected)


def test_search_order_paging_and_project_scope(store):
    p, q, ids = make_runs(store)
    order = parse_order_by(["metrics.loss ASC"])
    page = store.search_runs(project_ids=[p.id], order_by=order)
    # ascending loss: r4 (0.2) ... r0 (1.0); the run without the metric comes last
    assert [r.name for r in page.items] == ["r4", "r3", "r2", "r1", "r0", "r5"]
    seen, token = [], None
    while True:
        page = store.search_runs(project_ids=[p.id], max_results=4, page_token=token)
        seen += [r.id for r in page.items]
        token = page.next_token
        if token is None:
            break
    assert sorted(seen) == sorted(ids.values()) and len(seen) == len(set(seen))
    default = store.search_runs(project_ids=[p.id]).items
    assert [r.name for r in default] == ["r5", "r4", "r3", "r2", "r1", "r0"]  # newest first
    assert store.search_runs(project_ids=[]).items == []
    assert len(store.search_runs(project_ids=None).items) == 7  # admins: all projects
    assert code_of(store.search_runs, project_ids=[p.id], page_token="garbage!") == (
        INVALID_PARAMETER_VALUE
    )
    assert code_of(store.search_runs, project_ids=[p.id], max_results=0) == INVALID_PARAMETER_VALUE
    latest = store.search_runs(project_ids=[p.id], filters=parse_filter("metrics.loss < 0.3"))
    assert {r.metrics["loss"].value for r in latest.items} == {0.25, 0.2}


def test_logs_append_retry_gap_and_read(store):
    p = store.create_project("p", owner="ann", group=None)
    run = store.create_run(p.id, user="ann")
    assert store.append_logs(run.id, "stdout", 0, ["a", "b"], 1) == 2
    assert store.append_logs(run.id, "stdout", 0, ["a", "b"], 1) == 2  # retry
    assert store.append_logs(run.id, "stdout", 1, ["b", "c"], 2) == 3  # overlap
    assert code_of(store.append_logs, run.id, "stdout", 10, ["x"], 3) == INVALID_STATE
    assert code_of(store.append_logs, run.id, "stdlog", 0, ["x"], 3) == INVALID_PARAMETER_VALUE
    huge = ["x" * (64 * 1024 + 1)]
    assert code_of(store.append_logs, run.id, "stderr", 0, huge, 3) == RESOURCE_LIMIT_EXCEEDED
    assert [line.text for line in store.read_logs(run.id, "stdout")] == ["a", "b", "c"]
    assert [line.offset for line in store.read_logs(run.id, "stdout", offset=1, limit=1)] == [1]
    assert store.read_logs(run.id, "stderr") == []


def test_artifacts(store):
    p = store.create_project("p", owner="ann", group=None)
    run = store.create_run(p.id, user="ann")
    store.add_artifact(run.id, "model/flow.pt", "a" * 64, 10)
    store.add_artifact(run.id, "samples.npy", "b" * 64, 20)
    store.add_artifact(run.id, "model/flow.pt", "c" * 64, 11)  # new version replaces
    assert [a.path for a in store.list_artifacts(run.id)] == ["model/flow.pt", "samples.npy"]
    assert [a.path for a in store.list_artifacts(run.id, "model/")] == ["model/flow.pt"]
    assert store.get_artifact(run.id, "model/flow.pt").sha256 == "c" * 64
    assert code_of(store.get_artifact, run.id, "nope") == RESOURCE_DOES_NOT_EXIST
    assert store.referenced_blobs() == {"b" * 64, "c" * 64}


def test_schema_migration_is_idempotent(store_uri):
    first = SqlStore(store_uri)
    p = first.create_project("keep", owner="ann", group=None)
    first.close()
    second = SqlStore(store_uri)
    assert second.get_project(p.id).name == "keep"
    second.close()


def test_concurrent_writers_lose_nothing(store):
    p = store.create_project("p", owner="ann", group=None)
    shared = store.create_run(p.id, user="ann")
    own = [store.create_run(p.id, user="ann") for _ in range(8)]
    errors = []

    def writer(i):
        try:
            for step in range(25):
                metric = [Metric(f"w{i}", float(step), step, step)]
                store.log_batch(own[i].id, metrics=metric)
                store.log_batch(shared.id, metrics=metric, params=[Param("common", "same")])
                store.append_logs(own[i].id, "stdout", step, [f"line {step}"], step)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    for i, run in enumerate(own):
        assert len(store.get_metric_history(run.id, f"w{i}")) == 25
        assert len(store.read_logs(run.id, "stdout")) == 25
        assert len(store.get_metric_history(shared.id, f"w{i}")) == 25
        assert store.get_run(shared.id).metrics[f"w{i}"].step == 24


@pytest.mark.parametrize("min_probe", [1, 10_000])  # the param drives the search, or not
def test_a_param_of_the_longest_length_is_stored_and_found(store, monkeypatch, min_probe):
    """6000 characters that do not compress (PostgreSQL's B-tree entries hold 2704 bytes)."""
    import secrets

    from hub_ext.experiments.store import run_search_sql

    monkeypatch.setattr(run_search_sql, "MIN_PROBE", min_probe)
    monkeypatch.setattr(run_search_sql, "PROBE_FACTOR", 1)
    project = store.create_project("long-params", owner="ann", group=None)
    runs = [store.create_run(project.id, user="ann") for _ in range(3)]
    long_value = secrets.token_hex(3000)
    store.log_batch(runs[0].id, params=[Param("config", long_value)])
    store.log_batch(runs[1].id, params=[Param("config", long_value[:-1] + "x")])
    store.log_batch(runs[2].id, params=[Param("config", "short")])
    assert store.get_run(runs[0].id).params == {"config": long_value}
    for value, want in [(long_value, [runs[0].id]), ("short", [runs[2].id]), ("none", [])]:
        filters = parse_filter(f"params.config = '{value}'")
        page = store.search_runs(project_ids=[project.id], filters=filters)
        assert [r.id for r in page.items] == want
