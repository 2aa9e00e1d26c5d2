"""The tracking client against the real app (in-process, stand-in Hub auth)."""

from __future__ import annotations

import sys

import pytest

import latticehub.client.active as client_module
from latticehub.client import TrackingAPIError, TrackingClient, flatten, start_run


@pytest.fixture(autouse=True)
def fast_flush(monkeypatch):
    monkeypatch.setattr(client_module, "FLUSH_S", 0.05)


def test_start_run_records_everything(service):
    url, store = service
    client = TrackingClient(url, "tok-ann")
    with start_run(
        "phi4", {"L": 8, "model": {"hidden": [8, 8]}}, group="lqcd", client=client
    ) as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1), "ess": 0.1 * step}, step=step)
        print("epoch done\rprogress 100%")
        print("second line")
        print("to stderr", file=sys.stderr)
    got = store.get_run(run.id)
    assert got.status.value == "FINISHED" and got.end_time
    assert got.params == {"L": "8", "model.hidden": "[8, 8]"}
    assert got.metrics["loss"].value == pytest.approx(0.2) and got.metrics["loss"].step == 4
    assert [m.step for m in store.get_metric_history(run.id, "ess")] == [0, 1, 2, 3, 4]
    assert [x.text for x in store.read_logs(run.id, "stdout")] == ["progress 100%", "second line"]
    assert [x.text for x in store.read_logs(run.id, "stderr")] == ["to stderr"]
    assert got.environment["python"] and any(
        p.startswith("tornado==") for p in got.environment["packages"]
    )
    assert got.code.get("commit")  # the tests run inside the repository's git checkout
    assert store.get_project(got.project_id).group == "lqcd"


def test_exception_marks_failed_with_traceback(service):
    url, store = service
    client = TrackingClient(url, "tok-ann")
    with pytest.raises(ZeroDivisionError):
        with start_run("phi4", client=client, capture_output=False) as run:
            run.log_metric("x", 1.0)
            1 / 0  # noqa: B018
    got = store.get_run(run.id)
    assert got.status.value == "FAILED"
    assert got.failure["type"] == "ZeroDivisionError"
    assert "1 / 0" in got.failure["traceback"]
    assert got.metrics["x"].value == 1.0  # flushed before the status


def test_keyboard_interrupt_marks_killed(service):
    url, store = service
    client = TrackingClient(url, "tok-ann")
    with pytest.raises(KeyboardInterrupt):
        with start_run("phi4", client=client, capture_output=False) as run:
            raise KeyboardInterrupt("SIGTERM")
    assert store.get_run(run.id).status.value == "KILLED"


def test_other_group_cannot_use_the_project(service):
    url, _ = service
    ann = TrackingClient(url, "tok-ann")
    bob = TrackingClient(url, "tok-bob")
    project = ann.project("private-phi4", group="lqcd")
    with pytest.raises(TrackingAPIError) as err:
        bob.request("POST", "/runs", {"project": project["id"]})
    assert err.value.status == 404
    # names are unique per group: the name tells bob nothing, and he gets a project of his own
    # (it used to be refused as taken by a project he may not see)
    his = bob.project("private-phi4")
    assert his["id"] != project["id"] and his["owner"] == "bob" and his["group"] is None
    assert [r["id"] for r in bob.search_runs(project["id"])] == []


def test_search_runs_follows_pages(service):
    url, store = service
    ann = TrackingClient(url, "tok-ann")
    project = ann.project("many", group="lqcd")
    for i in range(5):
        store.create_run(project["id"], user="ann", name=f"r{i}")
    names = [r["name"] for r in ann.search_runs(project["id"], order_by=["attributes.run_name"])]
    assert names == ["r0", "r1", "r2", "r3", "r4"]


def test_flatten():
    assert flatten({"a": {"b": {"c": 1}}, "s": "x"}) == {"a.b.c": "1", "s": "x"}


def test_missing_configuration_says_what_to_set(monkeypatch):
    for var in ("LATTICEHUB_TRACKING_URL", "JUPYTERHUB_API_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="LATTICEHUB_TRACKING_URL"):
        TrackingClient()


def test_openapi_documents_every_native_route(service):
    import json
    import re
    import urllib.request

    from hub_ext.experiments.handlers import default_handlers

    url, _ = service
    with urllib.request.urlopen(f"{url}/api/v1/openapi.json") as resp:
        doc = json.loads(resp.read())
    assert doc["openapi"].startswith("3.")
    documented = set(doc["paths"])
    for pattern, _handler in default_handlers:
        if not pattern.startswith("/api/v1/") or pattern.endswith("openapi.json"):
            continue
        # turn the route regex into the documented template
        template = re.sub(r"\([^)]*\)", "{}", pattern)
        matches = [p for p in documented if re.sub(r"\{[^}]+\}", "{}", p) == template]
        assert matches, f"{pattern} is not in the OpenAPI document"


def test_dataframes(service):
    pd = pytest.importorskip("pandas")
    from latticehub.client import metric_history, runs_dataframe

    url, _ = service
    client = TrackingClient(url, "tok-ann")
    for lr in ("0.1", "0.01"):
        with start_run(
            "frames", {"lr": lr}, group="lqcd", client=client, capture_output=False
        ) as run:
            for step in range(3):
                run.log_metric("loss", float(step) * float(lr), step=step)
    frame = runs_dataframe("frames", filter="params.lr = '0.01'", client=client)
    assert list(frame["params.lr"]) == ["0.01"]
    assert frame["metrics.loss"].iloc[0] == pytest.approx(0.02)
    started = frame["start_time"].iloc[0]
    assert isinstance(started, pd.Timestamp) and str(started.tz) == "UTC"
    assert abs(pd.Timestamp.now(tz="UTC") - started) < pd.Timedelta(minutes=5)
    assert str(frame["end_time"].dt.tz) == "UTC"
    history = metric_history(run.id, "loss", client=client)
    assert str(history["timestamp"].dt.tz) == "UTC"
    assert abs(pd.Timestamp.now(tz="UTC") - history["timestamp"].iloc[0]) < pd.Timedelta(minutes=5)
    assert list(history["step"]) == [0, 1, 2]
    assert list(history["value"]) == pytest.approx([0.0, 0.01, 0.02])


def test_writes_are_spooled_while_unreachable_and_synced_later(service, tmp_path, capfd):
    from hub_ext.experiments import cli
    from tests.hub import free_port

    url, store = service
    client = TrackingClient(url, "tok-ann")
    spool_dir = tmp_path / "spool"
    with start_run("offline", client=client, spool_dir=spool_dir) as run:
        run.log_metric("loss", 1.0, step=0)
        run.flush()
        client.url = f"http://127.0.0.1:{free_port()}/services/experiments"  # service gone
        for step in range(1, 2500):
            run.log_metric("loss", 1.0 / step, step=step)
        print("written while offline")
    assert run.spool.pending()
    assert store.get_run(run.id).status.value == "RUNNING"  # the end was not delivered yet
    assert "unreachable" in capfd.readouterr().err

    code = cli.main(["sync", str(spool_dir), "--url", url, "--token", "tok-ann"])
    assert code == 0 and not run.spool.pending()
    got = store.get_run(run.id)
    assert got.status.value == "FINISHED"
    assert len(store.get_metric_history(run.id, "loss")) == 2500
    assert [x.text for x in store.read_logs(run.id, "stdout")] == ["written while offline"]
    # replaying again (e.g. a copy of the spool) changes nothing
    assert cli.main(["sync", str(spool_dir), "--url", url, "--token", "tok-ann"]) == 0
    assert len(store.get_metric_history(run.id, "loss")) == 2500


def test_oversize_artifact_gets_413_and_leaves_nothing(service, tmp_path):
    import urllib.request

    url, store = service
    client = TrackingClient(url, "tok-ann")
    project = client.project("big", group="lqcd")
    run = client.request("POST", "/runs", {"project": project["id"]})
    req = urllib.request.Request(
        f"{url}/api/v1/runs/{run['id']}/artifacts/too-big.bin",
        data=b"x" * (1024 * 1024 + 10),  # the test service allows 1 MiB
        method="PUT",
        headers={"Authorization": "token tok-ann"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    body = err.value.read().decode()
    assert err.value.code == 413, body
    assert "exceeds the limit" in body
    assert store.list_artifacts(run["id"]) == []
    blobs = tmp_path / "blobs"
    left = [p for p in blobs.rglob("*") if p.is_file() and p.name != ".gc.lock"]  # GC's lock
    assert not left, "partial upload left behind"


def test_mlflow_routes_identify_the_caller_in_process(service):
    """The MLflow handlers and the native ones share one per-request identity."""
    import requests

    url, store = service
    headers = {"Authorization": "token tok-ann"}
    r = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "mlf-in-proc"},
                      headers=headers, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    got = requests.get(f"{url}/api/2.0/mlflow/experiments/get",
                       params={"experiment_id": r.json()["experiment_id"]},
                       headers={"Authorization": "token tok-bob"}, timeout=10)  # fmt: skip
    assert got.status_code == 404


@pytest.mark.parametrize("api", ["native", "mlflow"])
def test_oversize_json_body_gets_413_with_json_and_stores_nothing(service, monkeypatch, api):
    import requests

    from hub_ext.experiments.handlers import base

    monkeypatch.setattr(base, "MAX_JSON_BODY", 64 * 1024)  # the service's is 16 MiB
    url, store = service
    client = TrackingClient(url, "tok-ann")
    project = client.project("oversize", group="lqcd")
    run = client.request("POST", "/runs", {"project": project["id"]})
    points = [{"key": "loss", "value": 0.5, "step": i, "timestamp": 1} for i in range(3000)]
    if api == "native":
        target, body = f"{url}/api/v1/runs/{run['id']}/batch", {"metrics": points}
    else:
        target, body = (
            f"{url}/api/2.0/mlflow/runs/log-batch",
            {"run_id": run["id"], "metrics": points},
        )
    r = requests.post(target, json=body, headers={"Authorization": "token tok-ann"}, timeout=30)
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.json()
    assert "65536 bytes" in (error.get("message") or "")
    if api == "mlflow":
        assert error["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert store.get_metric_history(run["id"], "loss") == []
    # a body under the limit still goes in
    small = {**body, "metrics": points[:10]}
    assert requests.post(target, json=small, headers={"Authorization": "token tok-ann"},
                         timeout=30).status_code == 200  # fmt: skip
    assert len(store.get_metric_history(run["id"], "loss")) == 10
