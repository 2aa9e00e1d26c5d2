"""Metrics as columns against the real app: the compact batch in, the whole history out.

SQLite and PostgreSQL alike (``store_uri``). Correctness only: every point held, order,
NaN and infinities, retries, refusals that name the fix and store nothing; the timings are
in ``bench/tracking.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import threading

import numpy as np
import pytest
import requests

import latticehub.client.active as active
from hub_ext.experiments.store import SqlStore
from latticehub.client import TrackingAPIError, TrackingClient, metric_history, start_run
from latticehub.columnar import NPZ_TYPE, MetricColumns
from tests.service.fakehub import experiments

ANN = {"Authorization": "token tok-ann"}


@pytest.fixture
def service(store_uri, tmp_path):
    store = SqlStore(store_uri)
    with experiments(store, tmp_path / "blobs") as url:
        yield url, store
    store.close()


@pytest.fixture
def run_id(service):
    url, _ = service
    client = TrackingClient(url, "tok-ann")
    project = client.project("columns", "lqcd")
    return client.create_run(project["id"])["id"]


def post(url, run_id, body, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(
        f"{url}/api/v1/runs/{run_id}/metrics",
        data=data,
        headers={**ANN, "Content-Type": "application/json", **(headers or {})},
        timeout=30,
    )


def history(url, run_id, key, binary=False):
    headers = {**ANN, "Accept": NPZ_TYPE} if binary else ANN
    answer = requests.get(f"{url}/api/v1/runs/{run_id}/history/{key}", headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    if binary:
        assert answer.headers["Content-Type"] == NPZ_TYPE
        archive = np.load(io.BytesIO(answer.content))
        return {name: archive[name].tolist() for name in ("step", "timestamp", "value")}
    return answer.json()


def test_a_compact_batch_is_stored_whole_and_read_back_as_columns(service, run_id):
    url, _ = service
    values = [0.5, "NaN", "Infinity", "-Infinity", -2.0]
    body = {
        "metrics": [
            {"key": "loss", "steps": [4, 0, 2, 1, 3], "values": values,
             "timestamps": [10, 11, 12, 13, 14]},
            {"key": "acc", "steps": [0, 1], "values": [0.1, 0.2], "timestamps": 99},
        ]
    }  # fmt: skip
    answer = post(url, run_id, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"points": 7}
    assert post(url, run_id, body).status_code == 200  # a retry adds nothing
    got = history(url, run_id, "loss")
    assert got["count"] == 5
    assert got["steps"] == [0, 1, 2, 3, 4]  # by step
    assert got["timestamps"] == [11, 13, 12, 14, 10]
    assert got["values"] == ["NaN", "-Infinity", "Infinity", -2.0, 0.5]
    binary = history(url, run_id, "loss", binary=True)
    assert binary["step"] == [0, 1, 2, 3, 4]
    assert math.isnan(binary["value"][0]) and binary["value"][1:] == [
        -math.inf,
        math.inf,
        -2.0,
        0.5,
    ]
    assert history(url, run_id, "acc")["timestamps"] == [99, 99]
    # the latest value (MLflow's: greatest step) is what the run shows
    run = TrackingClient(url, "tok-ann").get_run(run_id)
    assert run["metrics"]["loss"]["value"] == 0.5 and run["metrics"]["acc"]["value"] == 0.2
    # the per-point history agrees
    points = TrackingClient(url, "tok-ann").get_metric_history(run_id, "loss")
    assert [p["step"] for p in points] == [0, 1, 2, 3, 4]


def test_points_without_timestamps_get_the_time_of_arrival(service, run_id):
    url, _ = service
    assert post(url, run_id, {"metrics": [{"key": "x", "steps": [0], "values": [1]}]}).ok
    (stamp,) = history(url, run_id, "x")["timestamps"]
    assert stamp > 1_600_000_000_000


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"key": "x", "steps": [0, 1], "values": [1.0]}, "2 steps but 1 values"),
        ({"key": "x", "steps": [0.5], "values": [1.0]}, "steps[0] = 0.5 is not a 64-bit"),
        ({"key": "x", "steps": [2**63], "values": [1.0]}, "is not a 64-bit integer"),
        ({"key": "x", "steps": [0], "values": ["one"]}, 'send numbers, or "NaN"'),
        ({"key": "x", "steps": [0], "values": [True]}, "not true/false"),
        ({"key": "x", "steps": [0], "values": [1], "timestamps": [1, 2]}, "2 timestamps"),
        ({"key": "x", "steps": [0], "values": [1], "timestamps": 1.5}, "timestamps"),
        ({"key": "../x", "steps": [0], "values": [1]}, "Invalid metric name"),
        ({"key": "", "steps": [0], "values": [1]}, "key must be a non-empty string"),
        ({"key": "x", "steps": [0], "values": [1], "extra": 1}, "unknown field(s) extra"),
        ("x", "must be an object"),
    ],
)
def test_a_bad_compact_batch_is_refused_naming_the_fix_and_stores_nothing(
    service, run_id, entry, words
):
    url, _ = service
    good = {"key": "good", "steps": [0], "values": [1.0]}
    answer = post(url, run_id, {"metrics": [good, entry]})
    assert answer.status_code == 400
    assert words in answer.json()["message"]
    assert history(url, run_id, "good")["count"] == 0  # one transaction: nothing of it kept


def test_a_batch_over_the_point_limit_is_refused(service, run_id, monkeypatch):
    import latticehub.columnar as columnar

    monkeypatch.setattr(columnar, "MAX_BATCH_POINTS", 10)
    url, _ = service
    answer = post(url, run_id, {"metrics": [{"key": "x", "steps": list(range(11)),
                                             "values": [0.0] * 11}]})  # fmt: skip
    assert answer.status_code == 400 and "at most 10 points" in answer.json()["message"]


def test_gzip_bodies_are_taken_and_bombs_and_garbage_refused(service, run_id):
    url, _ = service
    body = {"metrics": [{"key": "z", "steps": list(range(1000)), "values": [1.0] * 1000}]}
    zipped = gzip.compress(json.dumps(body).encode())
    assert post(url, run_id, None, {"Content-Encoding": "gzip"}, raw=zipped).ok
    assert history(url, run_id, "z")["count"] == 1000
    # 100 MB of spaces compress to ~100 kB: refused before it is inflated in full
    bomb = gzip.compress(b'{"metrics": []' + b" " * 100_000_000 + b"}", compresslevel=9)
    answer = post(url, run_id, None, {"Content-Encoding": "gzip"}, raw=bomb)
    assert answer.status_code == 413 and "inflates past" in answer.json()["message"]
    answer = post(url, run_id, None, {"Content-Encoding": "gzip"}, raw=b"not gzip")
    assert answer.status_code == 400 and "not valid gzip" in answer.json()["message"]
    answer = post(url, run_id, body, {"Content-Encoding": "br"})
    assert answer.status_code == 400 and "send gzip or no encoding" in answer.json()["message"]


def test_other_groups_can_neither_write_nor_read_the_columns(service, run_id):
    url, _ = service
    bob = {"Authorization": "token tok-bob"}
    body = {"metrics": [{"key": "x", "steps": [0], "values": [1.0]}]}
    assert post(url, run_id, body, bob).status_code == 404
    answer = requests.get(f"{url}/api/v1/runs/{run_id}/history/x", headers=bob, timeout=10)
    assert answer.status_code == 404
    assert history(url, run_id, "x")["count"] == 0


def test_the_client_writes_and_reads_columns(service, run_id):
    url, _ = service
    client = TrackingClient(url, "tok-ann")
    from array import array

    sent = MetricColumns(
        "loss", array("q", range(1000)), array("q", [5] * 1000),
        array("d", [math.nan if i == 7 else i / 3 for i in range(1000)]),
    )  # fmt: skip
    assert client.log_metric_columns(run_id, [sent]) == 1000
    got = client.metric_columns(run_id, "loss")
    assert got.steps == sent.steps and got.timestamps == sent.timestamps
    assert math.isnan(got.values[7]) and got.values[8:] == sent.values[8:]
    frame = metric_history(run_id, "loss", client=client)
    assert list(frame.columns) == ["step", "timestamp", "value"]
    assert len(frame) == 1000 and frame["value"].isna().sum() == 1
    with pytest.raises(TrackingAPIError) as e:
        client.metric_columns("0" * 32, "loss")
    assert e.value.status == 404


def test_a_training_loop_logging_every_step_loses_nothing(service, monkeypatch, tmp_path):
    """200,000 per-step calls from two threads, far faster than one send a second: all held."""
    url, _ = service
    monkeypatch.setattr(active, "SEND_AT_POINTS", 20_000)
    client = TrackingClient(url, "tok-ann")
    with start_run("loop", group="lqcd", client=client, spool_dir=tmp_path,
                   capture_output=False) as run:  # fmt: skip

        def log(key: str) -> None:
            for step in range(100_000):
                run.log_metric(key, step * 0.25, step=step)

        threads = [threading.Thread(target=log, args=(k,)) for k in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for key in ("a", "b"):
        got = client.metric_columns(run.id, key)
        assert got.steps.tolist() == list(range(100_000))
        assert got.values.tolist() == [s * 0.25 for s in range(100_000)]
    assert not run.spool.pending()
