"""The unmodified mlflow client against the experiments service behind a real Hub.

MLFLOW_TRACKING_URI is ``<hub>/services/experiments`` and MLFLOW_TRACKING_TOKEN a Hub API
token (sent as ``Authorization: Bearer``). The tracking database is SQLite and, with
LATTICEHUB_TEST_PG_URL, PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
import requests
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException

from hub_ext.experiments.store import schema
from tests.conftest import _drop, _postgres_url

pytestmark = [pytest.mark.docker]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tracking_db(request, monkeypatch):
    """The service's tracking database: SQLite in the Hub's state dir, or a fresh PG db."""
    if request.param == "sqlite":
        monkeypatch.delenv("LATTICEHUB_TRACKING_DB", raising=False)
        yield
        return
    url, (admin_url, db) = _postgres_url()
    monkeypatch.setenv("LATTICEHUB_TRACKING_DB", url)
    yield
    try:  # the service did write there
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(
                schema.projects)).scalar() > 0  # fmt: skip
        engine.dispose()
    finally:
        _drop(admin_url, db)


@pytest.fixture
def hub(make_hub, tracking_db, monkeypatch):
    hub = make_hub().start()
    hub.create_users(["ann", "bob", "carl"])
    hub.create_group("lqcd", ["ann", "carl"])
    hub.create_group("nuclear", ["bob"])
    hub.wait_experiments()
    # fail fast instead of the client's minutes of retries; no stray fluent state
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "-")  # records the original value, restored afterwards
        monkeypatch.delenv(name)
    hub.tracking_uri = f"{hub.url}/services/experiments"
    return hub


class As:
    """Switches the MLflow client's identity (the token is read for every request)."""

    def __init__(self, hub, monkeypatch):
        self.hub, self.monkeypatch = hub, monkeypatch
        self.tokens = {}

    def __call__(self, user: str, scopes: list[str] | None = None) -> MlflowClient:
        key = (user, tuple(scopes or ()))
        if key not in self.tokens:
            self.tokens[key] = self.hub.user_token(user, scopes=scopes)
        self.monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", self.tokens[key])
        return MlflowClient(tracking_uri=self.hub.tracking_uri)


@pytest.fixture
def as_user(hub, monkeypatch):
    return As(hub, monkeypatch)


def error_code(call, *args, **kwargs) -> str:
    with pytest.raises(MlflowException) as info:
        call(*args, **kwargs)
    return info.value.error_code


def native(hub, token: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"}
    return requests.request(
        method, f"{hub.experiments}{path}", headers=headers, timeout=30, **kwargs
    )


def test_experiments_runs_search_and_history(hub, as_user):
    client = as_user("ann")
    exp_id = client.create_experiment("lattice-phi4", tags={"latticehub.group": "lqcd", "L": "8"})
    exp = client.get_experiment_by_name("lattice-phi4")
    assert exp.experiment_id == exp_id and exp.name == "lattice-phi4"
    assert exp.lifecycle_stage == "active"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.tags == {"L": "8", "latticehub.group": "lqcd", "latticehub.owner": "ann"}
    assert client.get_experiment(exp_id).name == "lattice-phi4"
    assert client.get_experiment_by_name("no-such-experiment") is None
    other_id = client.create_experiment("lattice-qcd")
    assert [
        e.name
        for e in client.search_experiments(
            filter_string="name LIKE 'lattice-%'", order_by=["name DESC"]
        )
    ] == ["lattice-qcd", "lattice-phi4"]
    assert [e.experiment_id for e in client.search_experiments(filter_string="tags.L = '8'")] == [
        exp_id
    ]
    page = client.search_experiments(max_results=1, order_by=["experiment_id ASC"])
    assert [e.experiment_id for e in page] == [exp_id] and page.token
    rest = client.search_experiments(
        max_results=1, page_token=page.token, order_by=["experiment_id ASC"]
    )
    assert [e.experiment_id for e in rest] == [other_id] and rest.token is None

    # runs: params, metrics, batches, tags
    t0 = int(time.time() * 1000)
    runs = {}
    for name, lr, losses in (
        ("a", "0.1", [0.9, 0.5]),
        ("b", "0.01", [0.8, 0.2]),
        ("c", "0.01", [0.7, 0.6]),
    ):
        run = client.create_run(exp_id, run_name=name, tags={"kind": "scan"})
        assert run.info.status == "RUNNING" and run.info.user_id == "ann"
        assert run.info.run_name == name and run.info.experiment_id == exp_id
        assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"
        client.log_param(run.info.run_id, "lr", lr)
        for step, loss in enumerate(losses):
            client.log_metric(run.info.run_id, "loss", loss, timestamp=t0 + step, step=step)
        runs[name] = run.info.run_id
    batch = dict(
        metrics=[Metric("acc", 0.5 + i / 10, t0 + i, i) for i in range(3)],
        params=[Param("L", "16"), Param("beta", "2.5")],
        tags=[RunTag("stage", "prod"), RunTag("tmp", "x")],
    )
    client.log_batch(runs["b"], **batch)
    client.log_batch(runs["b"], **batch)  # a retried batch changes nothing
    client.set_tag(runs["b"], "note", "best so far")
    client.delete_tag(runs["b"], "tmp")
    b = client.get_run(runs["b"])
    assert b.data.params == {"lr": "0.01", "L": "16", "beta": "2.5"}
    assert b.data.metrics == {"loss": 0.2, "acc": pytest.approx(0.7)}
    assert {k: v for k, v in b.data.tags.items() if not k.startswith("mlflow.")} == {
        "kind": "scan",
        "stage": "prod",
        "note": "best so far",
    }
    assert b.data.tags["mlflow.runName"] == "b" and b.data.tags["mlflow.user"] == "ann"

    history = client.get_metric_history(runs["b"], "acc")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (0, 0.5, t0),
        (1, 0.6, t0 + 1),
        (2, 0.7, t0 + 2),
    ]
    store = client._tracking_client.store  # the client's paged call (max_results, page_token)
    first = store.get_metric_history(runs["b"], "acc", max_results=2)
    assert [m.step for m in first] == [0, 1] and first.token
    second = store.get_metric_history(runs["b"], "acc", max_results=2, page_token=first.token)
    assert [m.step for m in second] == [2] and not second.token
    assert client.get_metric_history(runs["b"], "never-logged") == []

    def found(filter_string="", order_by=None, **kwargs):
        return [
            r.info.run_name
            for r in client.search_runs([exp_id], filter_string, order_by=order_by, **kwargs)
        ]

    assert found("metrics.loss < 0.55", ["metrics.loss ASC"]) == ["b", "a"]
    assert found("params.lr = '0.01'", ["metrics.loss DESC"]) == ["c", "b"]
    assert found("params.lr = '0.01' and metrics.loss > 0.3") == ["c"]
    assert found("tags.stage = 'prod'") == ["b"]
    assert found(
        "tags.kind LIKE 'sc%' and attributes.run_name != 'a'", ["attributes.run_name"]
    ) == ["b", "c"]
    assert found("attributes.status = 'RUNNING'", ["run_name DESC"]) == ["c", "b", "a"]
    assert found(f"attributes.start_time >= {t0 - 60_000}", ["params.lr ASC", "run_name"]) == [
        "b",
        "c",
        "a",
    ]
    assert sorted(found("")) == ["a", "b", "c"]
    page = client.search_runs([exp_id], order_by=["run_name"], max_results=2)
    assert [r.info.run_name for r in page] == ["a", "b"] and page.token
    page = client.search_runs([exp_id], order_by=["run_name"], max_results=2, page_token=page.token)
    assert [r.info.run_name for r in page] == ["c"] and not page.token
    assert client.search_runs([other_id]) == []

    # update and terminate; status and rename
    client.update_run(runs["a"], name="a-renamed")
    client.set_terminated(runs["a"], "KILLED")
    a = client.get_run(runs["a"])
    assert a.info.status == "KILLED" and a.info.end_time >= t0 and a.info.run_name == "a-renamed"
    assert a.data.tags["mlflow.runName"] == "a-renamed"
    client.set_tag(runs["c"], "mlflow.runName", "c-renamed")  # as in MLflow: renames
    assert client.get_run(runs["c"]).info.run_name == "c-renamed"
    client.set_terminated(runs["b"])
    assert client.get_run(runs["b"]).info.status == "FINISHED"
    assert found("attributes.status = 'KILLED'") == ["a-renamed"]
    assert found("attributes.status IN ('FINISHED', 'KILLED')", ["run_name"]) == ["a-renamed", "b"]

    # delete and restore a run
    client.delete_run(runs["c"])
    assert client.get_run(runs["c"]).info.lifecycle_stage == "deleted"
    assert sorted(found()) == ["a-renamed", "b"]
    assert found(run_view_type=ViewType.DELETED_ONLY) == ["c-renamed"]
    assert len(found(run_view_type=ViewType.ALL)) == 3
    assert error_code(client.log_metric, runs["c"], "loss", 1.0) == "INVALID_STATE"
    client.restore_run(runs["c"])
    assert client.get_run(runs["c"]).info.lifecycle_stage == "active"

    # rename, tag, delete and restore the experiment
    client.rename_experiment(exp_id, "lattice-phi4-v2")
    client.set_experiment_tag(exp_id, "mlflow.note.content", "the phi^4 scan")
    exp = client.get_experiment(exp_id)
    assert exp.name == "lattice-phi4-v2" and exp.tags["mlflow.note.content"] == "the phi^4 scan"
    client.set_experiment_tag(exp_id, "scratch", "x")
    client.delete_experiment_tag(exp_id, "scratch")
    assert "scratch" not in client.get_experiment(exp_id).tags
    assert error_code(client.delete_experiment_tag, exp_id, "scratch") == "RESOURCE_DOES_NOT_EXIST"
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert exp_id not in [e.experiment_id for e in client.search_experiments()]
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [exp_id]
    assert found() == [] and len(found(run_view_type=ViewType.DELETED_ONLY)) == 3
    assert client.get_run(runs["b"]).info.lifecycle_stage == "deleted"
    assert error_code(client.create_run, exp_id) == "INVALID_STATE"
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert len(found()) == 3


def test_errors_are_mlflows(hub, as_user):
    client = as_user("ann")
    exp_id = client.create_experiment("errors")
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again: a retry, accepted
    assert error_code(client.log_param, run_id, "lr", "0.2") == "INVALID_PARAMETER_VALUE"
    batch_dup = [Param("x", "1"), Param("x", "2")]
    assert error_code(client.log_batch, run_id, params=batch_dup) == "INVALID_PARAMETER_VALUE"
    assert error_code(client.log_metric, run_id, "../up", 1.0) == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params == {"lr": "0.1"}  # refused batches store nothing

    unknown = "0123456789abcdef0123456789abcdef"
    assert error_code(client.get_run, unknown) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(client.get_run, "not-a-run-id") == "RESOURCE_DOES_NOT_EXIST"  # as MLflow
    assert error_code(client.log_metric, unknown, "m", 1.0) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(client.get_experiment, "987654") == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(client.get_experiment, "0") == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(client.delete_tag, run_id, "never-set") == "RESOURCE_DOES_NOT_EXIST"
    for bad in (
        "metrics.loss == 1",
        "metrics.loss < 1 or params.a = 'b'",
        "nonsense.x = '1'",
        "params.lr < 5",
    ):
        assert error_code(client.search_runs, [exp_id], bad) == "INVALID_PARAMETER_VALUE", bad
    assert error_code(client.search_runs, [exp_id], order_by=["metrics.loss UP"]) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert error_code(client.search_experiments, filter_string="colour = 'red'") == (
        "INVALID_PARAMETER_VALUE"
    )
    assert error_code(client.create_experiment, "errors") == "RESOURCE_ALREADY_EXISTS"
    other = client.create_experiment("errors-2")
    assert error_code(client.rename_experiment, other, "errors") == "RESOURCE_ALREADY_EXISTS"
    assert error_code(client.create_experiment, "x", artifact_location="/tmp/elsewhere") == (
        "INVALID_PARAMETER_VALUE"
    )

    # the raw API: MLflow's error bodies and statuses, GET with query parameters
    base = f"{hub.tracking_uri}/api/2.0/mlflow"
    token = as_user.tokens[("ann", ())]
    bearer = {"Authorization": f"Bearer {token}"}
    r = requests.get(f"{base}/runs/get", params={"run_id": unknown}, headers=bearer, timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = requests.get(
        f"{base}/experiments/search",
        params={"max_results": 5, "filter": "name = 'errors'"},
        headers=bearer,
        timeout=30,
    )
    assert r.status_code == 200 and [e["name"] for e in r.json()["experiments"]] == ["errors"]
    r = requests.get(f"{base}/runs/create", headers=bearer, timeout=30)
    assert r.status_code == 405
    r = requests.post(
        f"{base}/runs/log-inputs", json={"run_id": run_id}, headers=bearer, timeout=30
    )
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    r = requests.post(
        f"{base}/runs/log-parameter",
        json={"run_id": run_id, "key": "lr", "value": "0.3"},
        headers=bearer,
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in r.json()["message"]
    r = requests.post(
        f"{base}/runs/log-batch",
        json={"run_id": run_id, "metrics": [{"key": "m", "value": 1.0}]},
        headers=bearer,
        timeout=30,
    )
    assert r.status_code == 400 and "metrics[0].timestamp" in r.json()["message"]
    too_many = [{"key": f"p{i}", "value": "v"} for i in range(101)]  # the client would split
    r = requests.post(
        f"{base}/runs/log-batch",
        json={"run_id": run_id, "params": too_many},
        headers=bearer,
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "at most 100 params" in r.json()["message"]
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    r = requests.post(f"{base}/experiments/create", json={"name": "anon"}, timeout=30)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    for params in ({"experiment_id": exp_id}, {"experiment_id": "987654"}):  # no existence leak
        r = requests.get(f"{base}/experiments/get", params=params, timeout=30)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"

    as_user.monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-token")
    assert error_code(MlflowClient(hub.tracking_uri).search_experiments) == "UNAUTHENTICATED"


def test_artifacts_list_and_download_as_the_client_does(hub, as_user, tmp_path):
    """``list_artifacts`` of a directory and ``download_artifacts(run, ".")``, the everyday
    calls of the pinned client (it searches logged models first, and asks for ``./``)."""
    client = as_user("ann")
    run_id = client.create_run(client.create_experiment("artifacts")).info.run_id
    tree = tmp_path / "tree"
    (tree / "model" / "weights").mkdir(parents=True)
    (tree / "model" / "weights" / "flow.pt").write_bytes(b"\x00weights" * 100)
    (tree / "model" / "config.json").write_text('{"L": 8}')
    (tree / "summary.txt").write_text("ess 0.4")
    client.log_artifacts(run_id, str(tree))
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("model", True), ("summary.txt", False),
    ]  # fmt: skip
    assert [f.path for f in client.list_artifacts(run_id, "model")] == [
        "model/config.json", "model/weights",
    ]  # fmt: skip
    assert [f.path for f in client.list_artifacts(run_id, "model/weights")] == [
        "model/weights/flow.pt"
    ]
    whole = client.download_artifacts(run_id, ".", str(tmp_path / "all"))
    got = {
        str(p.relative_to(whole)): p.read_bytes()
        for p in sorted(Path(whole).rglob("*")) if p.is_file()
    }  # fmt: skip
    want = {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert got == want
    one = client.download_artifacts(run_id, "model/config.json", str(tmp_path / "one"))
    assert Path(one).read_text() == '{"L": 8}'


def test_group_isolation_through_mlflow(hub, as_user):
    ann = as_user("ann")
    private = ann.create_experiment("ann-private")
    shared = ann.create_experiment("lqcd-shared", tags={"latticehub.group": "lqcd"})
    private_run = ann.create_run(private).info.run_id
    shared_run = ann.create_run(shared, run_name="ann-run").info.run_id
    ann.log_metric(shared_run, "loss", 0.5)
    assert error_code(ann.create_experiment, "sneaky", tags={"latticehub.group": "nuclear"}) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert error_code(ann.set_experiment_tag, shared, "latticehub.group", "nuclear") == (
        "INVALID_PARAMETER_VALUE"
    )

    # bob (another group) sees neither experiment and cannot write
    bob = as_user("bob")
    for exp_id, run_id in ((private, private_run), (shared, shared_run)):
        assert error_code(bob.get_experiment, exp_id) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.get_run, run_id) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.log_metric, run_id, "loss", 0.1) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.log_batch, run_id, params=[Param("a", "b")]) == (
            "RESOURCE_DOES_NOT_EXIST"
        )
        assert error_code(bob.set_terminated, run_id) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.delete_run, run_id) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.get_metric_history, run_id, "loss") == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.create_run, exp_id) == "RESOURCE_DOES_NOT_EXIST"
        assert error_code(bob.delete_experiment, exp_id) == "RESOURCE_DOES_NOT_EXIST"
        assert bob.search_runs([exp_id]) == []
    assert bob.get_experiment_by_name("ann-private") is None
    assert bob.search_experiments() == []

    # carl (ann's group) reads the group's experiment and runs, writes only his own runs
    carl = as_user("carl")
    assert [e.name for e in carl.search_experiments()] == ["lqcd-shared"]
    assert carl.get_run(shared_run).data.metrics == {"loss": 0.5}
    assert error_code(carl.get_run, private_run) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(carl.log_metric, shared_run, "loss", 0.1) == "PERMISSION_DENIED"
    assert error_code(carl.set_tag, shared_run, "k", "v") == "PERMISSION_DENIED"
    assert error_code(carl.delete_run, shared_run) == "PERMISSION_DENIED"
    assert error_code(carl.delete_experiment, shared) == "PERMISSION_DENIED"
    assert error_code(carl.rename_experiment, shared, "mine") == "PERMISSION_DENIED"
    carl_run = carl.create_run(shared, run_name="carl-run").info.run_id
    carl.log_metric(carl_run, "loss", 0.25)
    assert [
        r.info.run_name
        for r in carl.search_runs([shared, private], "metrics.loss < 1", order_by=["metrics.loss"])
    ] == ["carl-run", "ann-run"]
    assert carl.get_run(carl_run).info.user_id == "carl"

    # a notebook server's token (only access to the service): groups looked up by the service
    carl_nb = as_user("carl", scopes=["access:services!service=experiments"])
    assert [e.name for e in carl_nb.search_experiments()] == ["lqcd-shared"]
    carl_nb.log_metric(carl_run, "loss", 0.2)
    assert carl_nb.get_run(carl_run).data.metrics == {"loss": 0.2}

    # QUEUED and LOST runs of the native API are SCHEDULED and FAILED in MLflow
    token = as_user.tokens[("ann", ())]
    r = native(
        hub,
        token,
        "POST",
        "/runs",
        json={"project": int(shared), "status": "QUEUED", "name": "queued"},
    )
    assert r.status_code == 201, r.text
    queued = r.json()["id"]
    ann = as_user("ann")
    assert ann.get_run(queued).info.status == "SCHEDULED"
    assert [
        r.info.run_id for r in ann.search_runs([shared], "attributes.status = 'SCHEDULED'")
    ] == [queued]
    ann.update_run(queued, status="RUNNING")
    assert native(hub, token, "GET", f"/runs/{queued}").json()["status"] == "RUNNING"
    assert native(hub, token, "PATCH", f"/runs/{queued}", json={"status": "LOST"}).ok
    assert ann.get_run(queued).info.status == "FAILED"
    assert [r.info.run_id for r in ann.search_runs([shared], "attributes.status = 'FAILED'")] == [
        queued
    ]
    ann.update_run(queued, status="SCHEDULED")
    assert native(hub, token, "GET", f"/runs/{queued}").json()["status"] == "QUEUED"


def test_fluent_api(hub, as_user, monkeypatch):
    as_user("ann")
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(hub.tracking_uri)
    try:
        with pytest.raises(MlflowException, match=r"set_experiment") as info:
            mlflow.start_run()  # MLflow's Default experiment "0" does not exist here
        assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        experiment = mlflow.set_experiment("fluent")
        with mlflow.start_run(run_name="fluent-run") as run:
            mlflow.log_param("lr", 0.01)
            mlflow.log_params({"L": 16, "beta": 2.5})
            for step in range(3):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"acc": 0.9})
            mlflow.set_tag("phase", "test")
        with pytest.raises(RuntimeError), mlflow.start_run(run_name="crashing") as crashed:
            raise RuntimeError("boom")
        assert mlflow.set_experiment("fluent").experiment_id == experiment.experiment_id
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)

    client = MlflowClient(hub.tracking_uri)
    done = client.get_run(run.info.run_id)
    assert done.info.status == "FINISHED" and done.info.end_time
    assert done.info.run_name == "fluent-run" and done.info.user_id == "ann"
    assert done.data.params == {"lr": "0.01", "L": "16", "beta": "2.5"}
    assert done.data.metrics == {"loss": pytest.approx(1 / 3), "acc": 0.9}
    assert done.data.tags["phase"] == "test" and done.data.tags["mlflow.user"] == "ann"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [
        1.0,
        0.5,
        pytest.approx(1 / 3),
    ]
    assert client.get_run(crashed.info.run_id).info.status == RunStatus.to_string(RunStatus.FAILED)
    assert client.get_experiment_by_name("fluent").tags["latticehub.owner"] == "ann"
