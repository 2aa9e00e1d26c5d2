"""Request-body limits, page sizes and LIKE patterns of the experiments service, in-process.

The app is served as ``ExperimentsApp.start`` serves it: the server-wide ``max_body_size`` is
the JSON limit and only an authorised artifact upload raises its own. The limits are small
here so that every case is quick. tests/security/test_request_limits.py repeats the attacks
against the real stack (and measures the service's memory).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import TraitError

from hub_ext.experiments.app import ExperimentsApp
from hub_ext.experiments.handlers import mlflow as mlflow_handlers
from hub_ext.experiments.likematch import MAX_LIKE_PATTERN
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.abstract import MAX_PAGE_SIZE
from hub_ext.experiments.store.entities import Metric
from hub_ext.quotas.app import QuotasApp
from latticehub.client import TrackingAPIError, TrackingClient
from tests.hub import free_port
from tests.service.fakehub import declared_only, experiments, serving

JSON_LIMIT = 256 * 1024
DRAIN = 1024 * 1024
ARTIFACT_LIMIT = 4 * 1024 * 1024
PREFIX = "/services/experiments"
ANN = {"Authorization": "token tok-ann"}
BOB = {"Authorization": "token tok-bob"}
HUGE = 300 * 1024 * 1024
#: a functional bound for "answered without reading the body" (reading it would never end:
#: the client sends none of it)
QUICK_S = 10
MiB = 1024 * 1024


class Service:
    """The running service: base URL, port, store, blob directory."""

    def __init__(self, port: int, store: SqlStore, blobs: Path):
        self.port, self.store, self.blobs = port, store, blobs
        self.url = f"http://127.0.0.1:{port}{PREFIX}"

    def run_of_ann(self, name: str = "limits") -> str:
        client = TrackingClient(self.url, "tok-ann")
        project = client.project(name, group="lqcd")
        return client.request("POST", "/runs", {"project": project["id"]})["id"]

    def files_left(self) -> list[Path]:
        return [p for p in self.blobs.rglob("*") if p.is_file() and p.name != ".gc.lock"]


@pytest.fixture
def svc(tmp_path) -> Iterator[Service]:
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    port = free_port()
    with experiments(
        store, tmp_path / "blobs", port=port, max_artifact_size=ARTIFACT_LIMIT,
        max_body_size=JSON_LIMIT,  # the server-wide limit, as ExperimentsApp.start sets it
        max_json_body=JSON_LIMIT, refused_body_drain=DRAIN,
    ):  # fmt: skip
        yield Service(port, store, tmp_path / "blobs")
    store.close()


def chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    """``total`` bytes in pieces, made as they are sent (never held at once)."""
    piece = b"x" * size
    while total > 0:
        yield piece[: min(size, total)]
        total -= size


def assert_json_error(status: int, headers: dict, body: dict, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) >= {"error_code", "message", "status"} and body["status"] == expected


# -- bodies of JSON routes -------------------------------------------------------------------
JSON_ROUTES = [
    ("POST", "/api/v1/runs/{run}/batch"),
    ("POST", "/api/v1/runs/{run}/logs/stdout"),
    ("POST", "/api/v1/projects"),
    ("PATCH", "/api/v1/runs/{run}"),
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("POST", "/projects/1"),  # a dashboard form
    ("GET", "/api/v1/runs/{run}/artifacts/a.bin"),  # not an upload: the JSON limit holds
    ("POST", "/no/such/route"),
]


@pytest.mark.parametrize("who", [ANN, {}], ids=["signed-in", "anonymous"])
@pytest.mark.parametrize(("method", "route"), JSON_ROUTES)
def test_a_declared_oversize_body_gets_413_json_before_it_is_sent(svc, who, method, route):
    path = PREFIX + route.format(run=svc.run_of_ann())
    status, headers, body = declared_only(svc.port, method, path, HUGE, who)
    assert_json_error(status, headers, body, 413)
    assert body["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert (
        f"of {HUGE} bytes" in body["message"] and f"limit of {JSON_LIMIT} bytes" in body["message"]
    )
    assert "artifacts" in body["message"]  # what to do instead
    assert headers.get("Connection") == "close"


@pytest.mark.parametrize("size", [JSON_LIMIT + 100 * 1024, HUGE], ids=["drained", "huge"])
@pytest.mark.parametrize("who", [ANN, {}], ids=["signed-in", "anonymous"])
def test_a_chunked_oversize_body_gets_413_json_and_nothing_is_stored(svc, who, size):
    run = svc.run_of_ann()
    r = requests.post(
        f"{svc.url}/api/v1/runs/{run}/logs/stdout", data=chunks(size, 64 * 1024), headers=who,
        timeout=60,
    )  # fmt: skip
    assert_json_error(r.status_code, r.headers, r.json(), 413)
    assert f"limit of {JSON_LIMIT} bytes" in r.json()["message"]
    assert svc.store.read_logs(run, "stdout") == []


def test_the_tracking_client_gets_the_413_of_an_oversize_request(svc):
    """urllib sends the whole body before it reads: the refused body is drained first."""
    run = svc.run_of_ann()
    client = TrackingClient(svc.url, "tok-ann")
    lines = ["y" * 1000] * (JSON_LIMIT // 1000 + 10)
    with pytest.raises(TrackingAPIError) as err:
        client.request("POST", f"/runs/{run}/logs/stdout", {"offset": 0, "lines": lines})
    assert err.value.status == 413 and err.value.code == "RESOURCE_LIMIT_EXCEEDED"
    assert str(JSON_LIMIT) in err.value.message
    # the same client goes on working
    client.request("POST", f"/runs/{run}/logs/stdout", {"offset": 0, "lines": lines[:10]})
    assert len(svc.store.read_logs(run, "stdout")) == 10


def test_bodies_within_the_limit_go_in_whole_or_chunked(svc):
    run = svc.run_of_ann()
    points = [{"key": "loss", "value": 0.5, "step": i, "timestamp": 1} for i in range(1000)]
    body = json.dumps({"metrics": points}).encode()
    assert len(body) < JSON_LIMIT
    url = f"{svc.url}/api/v1/runs/{run}/batch"
    assert requests.post(url, data=body, headers=ANN, timeout=30).status_code == 200
    chunked = requests.post(url, data=iter([body[:1000], body[1000:]]), headers=ANN, timeout=30)
    assert chunked.status_code == 200, chunked.text
    assert len(svc.store.get_metric_history(run, "loss")) == 1000


def test_the_connection_stays_usable_after_a_drained_refusal(svc):
    run = svc.run_of_ann()
    with requests.Session() as s:
        r = s.post(
            f"{svc.url}/api/v1/runs/{run}/batch", data=b"{" + b" " * JSON_LIMIT + b"}",
            headers=ANN, timeout=30,
        )  # fmt: skip
        assert r.status_code == 413
        assert s.get(f"{svc.url}/api/v1/runs/{run}", headers=ANN, timeout=30).status_code == 200


# -- artifact uploads --------------------------------------------------------------------------
def upload_paths(svc: Service, run: str) -> dict[str, str]:
    project = svc.store.get_run(run).project_id
    return {
        "native": f"{PREFIX}/api/v1/runs/{run}/artifacts/model/flow.pt",
        "mlflow": f"{PREFIX}/api/2.0/mlflow-artifacts/artifacts/{project}/{run}/artifacts/f.pt",
    }


@pytest.mark.parametrize("api", ["native", "mlflow"])
@pytest.mark.parametrize(
    ("who", "size", "expected"),
    [
        ({}, HUGE, 401),  # no token: not a byte is read
        ({"Authorization": "token wrong"}, HUGE, 401),
        (BOB, HUGE, 404),  # another group's run does not exist for him
        (ANN, HUGE, 413),  # her own run, but over the artifact limit
        (ANN, ARTIFACT_LIMIT + 1, 413),
    ],
    ids=["anonymous", "bad-token", "other-group", "too-large", "one-byte-over"],
)
def test_an_upload_is_refused_before_its_body_is_read(svc, api, who, size, expected):
    path = upload_paths(svc, svc.run_of_ann())[api]
    status, headers, body = declared_only(svc.port, "PUT", path, size, who)
    assert_json_error(status, headers, body, expected)
    if expected == 413:
        assert f"of {size} bytes exceeds the limit of {ARTIFACT_LIMIT} bytes" in body["message"]
    assert not svc.files_left()


@pytest.mark.parametrize("api", ["native", "mlflow"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_authorised_upload_streams_past_the_json_limit(svc, api, chunked):
    run = svc.run_of_ann()
    size = 3 * MiB  # over JSON_LIMIT, within ARTIFACT_LIMIT
    data = chunks(size, 256 * 1024) if chunked else b"x" * size
    r = requests.put(
        f"http://127.0.0.1:{svc.port}{upload_paths(svc, run)[api]}", data=data, headers=ANN,
        timeout=60,
    )  # fmt: skip
    assert r.status_code in (200, 201), r.text
    (stored,) = svc.store.list_artifacts(run)
    assert stored.size == size


@pytest.mark.parametrize("who", [ANN, {}], ids=["owner", "anonymous"])
def test_a_chunked_upload_over_the_limit_gets_413_or_401_and_leaves_nothing(svc, who):
    run = svc.run_of_ann()
    r = requests.put(
        f"http://127.0.0.1:{svc.port}{upload_paths(svc, run)['native']}",
        data=chunks(ARTIFACT_LIMIT + 2 * MiB, 256 * 1024), headers=who, timeout=60,
    )  # fmt: skip
    assert_json_error(r.status_code, r.headers, r.json(), 413 if who else 401)
    assert svc.store.list_artifacts(run) == []
    assert not svc.files_left(), "partial upload left behind"


def raw_exchange(port: int, head: str, body: bytes = b"", *, after_continue: bool = False) -> bytes:
    """Send ``head`` (and ``body``, after a ``100 Continue`` if asked); all bytes until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=QUICK_S) as sock:
        sock.sendall(head.encode())
        received = b""
        if after_continue:
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            sock.sendall(body)
        while data := sock.recv(65536):
            received += data
        return received


@pytest.mark.parametrize(
    ("path", "who", "expected"),
    [
        ("/api/v1/runs/{run}/artifacts/x.bin", "", b"401"),
        ("/api/v1/runs/{run}/artifacts/x.bin", "token tok-ann", b"413"),  # over the limit
        ("/api/v1/runs/{run}/batch", "token tok-ann", b"413"),  # the gate
    ],
)
def test_a_refusal_before_100_continue_is_the_only_answer(svc, path, who, expected):
    head = (
        f"PUT {PREFIX}{path.format(run=svc.run_of_ann())} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {who}\r\nContent-Length: {HUGE}\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = raw_exchange(svc.port, head)  # the server closes: it waits for no body
    assert answer.startswith(b"HTTP/1.1 " + expected), answer[:200]
    assert b"100 (Continue)" not in answer and answer.count(b"HTTP/1.1") == 1


def test_an_authorised_upload_waits_for_its_body_after_100_continue(svc):
    run = svc.run_of_ann()
    body = b"y" * (JSON_LIMIT * 2)
    head = (
        f"PUT {PREFIX}/api/v1/runs/{run}/artifacts/c.bin HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: token tok-ann\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(svc.port, head, body, after_continue=True)
    assert answer.startswith(b"HTTP/1.1 100"), answer[:200]
    assert b"HTTP/1.1 201" in answer, answer[:400]
    assert [a.size for a in svc.store.list_artifacts(run)] == [len(body)]


# -- page sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/projects?max_results={n}", "max_results"),
        ("/api/v1/runs?max_results={n}", "max_results"),
        ("/api/v1/runs/{run}/metrics/loss?limit={n}", "limit"),
    ],
)
def test_native_page_sizes_over_the_maximum_get_400(svc, path, name):
    run = svc.run_of_ann()
    over = requests.get(
        svc.url + path.format(n=MAX_PAGE_SIZE + 1, run=run), headers=ANN, timeout=30
    )
    assert over.status_code == 400, over.text
    message = over.json()["message"]
    assert name in message and str(MAX_PAGE_SIZE) in message
    zero = requests.get(svc.url + path.format(n=0, run=run), headers=ANN, timeout=30)
    assert zero.status_code == (200 if name == "limit" else 400)
    most = requests.get(svc.url + path.format(n=MAX_PAGE_SIZE, run=run), headers=ANN, timeout=30)
    assert most.status_code == 200, most.text


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [("runs/search", {"experiment_ids": ["1"]}), ("experiments/search", {})],
)
def test_mlflow_searches_refuse_page_sizes_over_the_maximum(svc, endpoint, body):
    svc.run_of_ann()
    r = requests.post(
        f"{svc.url}/api/2.0/mlflow/{endpoint}", json={**body, "max_results": MAX_PAGE_SIZE + 1},
        headers=ANN, timeout=30,
    )  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert str(MAX_PAGE_SIZE) in r.json()["message"]


def test_mlflow_metric_history_comes_in_bounded_pages(svc, monkeypatch):
    monkeypatch.setattr(mlflow_handlers, "MAX_PAGE_SIZE", 5)
    run = svc.run_of_ann()
    svc.store.log_batch(run, metrics=[Metric("loss", float(i), 1, i) for i in range(12)])
    url = f"{svc.url}/api/2.0/mlflow/metrics/get-history"
    for asked in ({}, {"max_results": 1000}):  # none (MLflow: everything) or too many
        steps, token, pages = [], None, 0
        while True:
            params = {"run_id": run, "metric_key": "loss", **asked}
            if token:
                params["page_token"] = token
            page = requests.get(url, params=params, headers=ANN, timeout=30).json()
            assert len(page["metrics"]) <= 5
            steps += [m["step"] for m in page["metrics"]]
            pages += 1
            token = page.get("next_page_token")
            if not token:
                break
        assert steps == list(range(12)) and pages == 3


# -- LIKE patterns ---------------------------------------------------------------------------
def test_a_pathological_like_filter_is_answered_at_once(svc):
    svc.store.create_project("a" * 200, owner="ann", group="lqcd")
    pattern = "%a" * 60 + "%b"  # the attack: 122 characters, exponential for a regex
    assert len(pattern) == 122
    r = requests.post(
        f"{svc.url}/api/2.0/mlflow/experiments/search",
        json={"filter": f"name LIKE '{pattern}'"}, headers=ANN, timeout=QUICK_S,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json().get("experiments", []) == []
    hit = requests.post(
        f"{svc.url}/api/2.0/mlflow/experiments/search",
        json={"filter": "name LIKE '%a%a%a'"}, headers=ANN, timeout=QUICK_S,
    )  # fmt: skip
    assert [e["name"] for e in hit.json()["experiments"]] == ["a" * 200]


@pytest.mark.parametrize("length", [MAX_LIKE_PATTERN + 1, 9_900])
@pytest.mark.parametrize(
    "call",
    [
        ("mlflow", "experiments/search", "name ILIKE '{p}'"),
        ("mlflow", "experiments/search", "tags.model LIKE '{p}'"),
        ("mlflow", "runs/search", "tags.model LIKE '{p}'"),
        ("native", "/runs", "attributes.run_name ILIKE '{p}'"),
    ],
)
def test_a_long_like_pattern_gets_400_naming_the_limit(svc, length, call):
    svc.run_of_ann()
    api, endpoint, template = call
    text = template.format(p="%" + "a" * (length - 1))
    if api == "mlflow":
        r = requests.post(
            f"{svc.url}/api/2.0/mlflow/{endpoint}",
            json={"filter": text, "experiment_ids": ["1"]}, headers=ANN, timeout=QUICK_S,
        )  # fmt: skip
    else:
        r = requests.get(
            f"{svc.url}/api/v1{endpoint}", params={"filter": text}, headers=ANN, timeout=QUICK_S
        )
    assert r.status_code == 400, r.text
    assert f"the limit is {MAX_LIKE_PATTERN}" in r.json()["message"]


def test_a_filter_over_the_length_limit_gets_400(svc):
    r = requests.post(
        f"{svc.url}/api/2.0/mlflow/experiments/search",
        json={"filter": "name LIKE '" + "a" * 10_000 + "'"}, headers=ANN, timeout=QUICK_S,
    )  # fmt: skip
    assert r.status_code == 400, r.text
    assert "the limit is 10000" in r.json()["message"]


# -- the quotas service and the settings -----------------------------------------------------
class Echo(web.RequestHandler):
    def post(self) -> None:
        self.write({"length": len(self.request.body)})


def test_the_quotas_service_refuses_large_bodies_with_413_json():
    from hub_ext.quotas.handlers.base import MAX_JSON_BODY

    port = free_port()
    quotas = QuotasApp(ip="127.0.0.1", port=port, bind_timeout=0)

    def make() -> HTTPServer:
        return quotas.serve(web.Application([("/echo", Echo)]))

    with serving(make):
        status, headers, body = declared_only(port, "POST", "/echo", HUGE, {})
        assert_json_error(status, headers, body, 413)
        assert f"limit of {MAX_JSON_BODY} bytes" in body["message"]
        r = requests.post(
            f"http://127.0.0.1:{port}/echo", data=chunks(4 * MiB, 64 * 1024), timeout=30
        )
        assert r.status_code == 413 and r.json()["status"] == 413
        ok = requests.post(f"http://127.0.0.1:{port}/echo", data=b"x" * 1000, timeout=30)
        assert ok.json() == {"length": 1000}


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_json_body", 1000), ("max_artifact_size", 0), ("refused_body_drain", -1)],
)
def test_body_limit_settings_are_checked(setting, value):
    with pytest.raises(TraitError, match=setting):
        ExperimentsApp(**{setting: value})


def test_body_limit_settings_have_small_defaults():
    app = ExperimentsApp()
    assert app.max_json_body == 4 * MiB  # the server-wide max_body_size in start()
    assert app.max_artifact_size == 10 * 1024**3
