"""Attacks on the experiments service's request limits, against the real stack.

Every request goes through configurable-http-proxy to the managed service that the
repository's ``jupyterhub_config.py`` starts, as an attacker would send it:

- a 300 MiB body (streamed from a generator, never held by the test) without a token, to
  JSON routes, the MLflow API, a dashboard form and both artifact upload routes: each is
  answered 401 or 413 with a JSON error, the service's memory does not grow with the body,
  and another user's request is answered meanwhile;
- a signed-in user's JSON body over the JSON limit (but under the old one): 413 JSON;
- an MLflow experiment search whose ``LIKE`` pattern made the old regex matcher backtrack
  exponentially: it and a concurrent request of another user are answered at once; an
  over-long pattern gets 400 naming the limit;
- page sizes and metric histories beyond the maximum: 400, or one bounded page with a token.

The bounds on time (5 s) are functional ("answered, not stalled"), not benchmarks.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import requests

from hub_ext.experiments.likematch import MAX_LIKE_PATTERN
from hub_ext.experiments.search import MAX_FILTER_LENGTH
from hub_ext.experiments.store.abstract import MAX_PAGE_SIZE
from tests.security.conftest import Stack

MiB = 1024 * 1024
ATTACK_BYTES = 300 * MiB
JSON_LIMIT = 4 * MiB  # ExperimentsApp.max_json_body's default
#: memory the service may gain while it refuses a 300 MiB body
RSS_SLACK = 50 * MiB
#: "still answers": a functional bound, far above a normal answer and far below a stall
ANSWER_S = 5.0


def mlflow(stack: Stack, endpoint: str) -> str:
    return f"{stack.hub.url}/services/experiments/api/2.0/mlflow/{endpoint}"


def auth(stack: Stack, user: str) -> dict[str, str]:
    return {"Authorization": f"token {stack.tokens[user]}"}


def service_process(stack: Stack) -> psutil.Process:
    """The experiments service: the process listening on its port."""
    port = int(stack.hub.env["LATTICEHUB_EXPERIMENTS_PORT"])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"no process listens on the experiments port {port}")


class Attack(threading.Thread):
    """Sends one streamed request in a thread; counts the bytes the generator handed out."""

    def __init__(self, method: str, url: str, total: int, headers: dict | None = None):
        super().__init__(daemon=True)
        self.method, self.url, self.total, self.headers = method, url, total, headers or {}
        self.sent = 0
        self.response: requests.Response | None = None
        self.error: BaseException | None = None

    def body(self) -> Iterator[bytes]:
        piece = b"\0" * MiB
        while self.sent < self.total:
            self.sent += len(piece)
            yield piece

    def run(self) -> None:
        try:
            self.response = requests.request(
                self.method, self.url, data=self.body(), headers=self.headers, timeout=120
            )
        except requests.RequestException as e:
            self.error = e


def answered_within(call: Any, bound: float = ANSWER_S) -> requests.Response:
    """``call()``'s response, asserting it came within ``bound`` seconds."""
    start = time.monotonic()
    response = call()
    took = time.monotonic() - start
    assert took < bound, f"answered after {took:.1f} s: the service stalled"
    return response


def assert_json_error(response: requests.Response, statuses: tuple[int, ...]) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) >= {"error_code", "message", "status"}, body
    assert body["status"] == response.status_code
    return body


def test_huge_anonymous_bodies_neither_grow_nor_stall_the_service(stack: Stack):
    run = stack.call("ann", "POST", "/runs", json={"project": project_id(stack, "limits")})
    assert run.status_code == 201, run.text
    run_id, experiment = run.json()["id"], run.json()["project_id"]
    base = f"{stack.hub.url}/services/experiments"
    targets = [
        ("POST", f"{base}/api/v1/runs/{run_id}/batch"),
        ("POST", f"{base}/api/v1/runs/{run_id}/metrics"),
        ("POST", f"{base}/api/v1/projects"),
        ("POST", f"{base}/api/2.0/mlflow/runs/log-batch"),
        ("POST", f"{base}/projects/{experiment}"),  # a dashboard form
        ("PUT", f"{base}/api/v1/runs/{run_id}/artifacts/model.pt"),
        ("PUT", f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/m"),
    ]
    service = service_process(stack)
    baseline = service.memory_info().rss
    for method, url in targets:
        attack = Attack(method, url, ATTACK_BYTES)
        attack.start()
        peak = baseline
        while attack.is_alive() and attack.sent < 8 * MiB:  # the body is on its way
            peak = max(peak, service.memory_info().rss)
            time.sleep(0.01)
        # another user is served while the body arrives
        other = answered_within(lambda: stack.call("bob", "GET", "/projects", timeout=30))
        assert other.status_code == 200, other.text
        while attack.is_alive():
            peak = max(peak, service.memory_info().rss)
            time.sleep(0.01)
        attack.join()
        grown = peak - baseline
        assert grown < RSS_SLACK, f"{method} {url}: the service grew by {grown / MiB:.0f} MiB"
        assert attack.error is None, f"{method} {url}: {attack.error}"
        assert attack.response is not None
        assert_json_error(attack.response, (401, 413))
        assert attack.sent < ATTACK_BYTES, f"{method} {url}: the whole body was read"
    assert service.is_running()


def test_a_signed_in_users_oversize_json_body_gets_413_json(stack: Stack):
    run = stack.call("ann", "POST", "/runs", json={"project": project_id(stack, "big-json")})
    run_id = run.json()["id"]
    lines = ["x" * 40_000] * 200  # 8 MB: under the old 16 MiB limit, over the JSON limit
    r = stack.call("ann", "POST", f"/runs/{run_id}/logs/stdout", json={"offset": 0, "lines": lines})
    body = assert_json_error(r, (413,))
    assert body["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert f"limit of {JSON_LIMIT} bytes" in body["message"]
    stored = stack.call("ann", "GET", f"/runs/{run_id}/logs/stdout")
    assert stored.json()["items"] == []
    # MLflow's API too (its own 1 MB log-batch limit stays below)
    big = {"run_id": run_id, "params": [{"key": f"p{i}", "value": "v" * 5000} for i in range(1000)]}
    r = requests.post(mlflow(stack, "runs/log-batch"), json=big, headers=auth(stack, "ann"),
                      timeout=60)  # fmt: skip
    assert assert_json_error(r, (413,))["error_code"] == "RESOURCE_LIMIT_EXCEEDED"


def test_a_gzip_bomb_is_refused_before_it_is_inflated(stack: Stack):
    """300 MiB of JSON squeezed into a few hundred kB: 413, the memory barely moves."""
    run = stack.call("ann", "POST", "/runs", json={"project": project_id(stack, "bomb")})
    run_id = run.json()["id"]
    head = b'{"metrics": [{"key": "x", "steps": [0], "values": [1.0]}]'
    bomb = gzip.compress(head + b" " * ATTACK_BYTES + b"}", compresslevel=9)
    assert len(bomb) < JSON_LIMIT  # passes the size gate: only inflating shows it
    service = service_process(stack)
    before = service.memory_info().rss
    zipped = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    r = stack.call("ann", "POST", f"/runs/{run_id}/metrics", data=bomb, headers=zipped)
    body = assert_json_error(r, (413,))
    assert "inflates past" in body["message"]
    assert service.memory_info().rss - before < RSS_SLACK
    history = stack.call("ann", "GET", f"/runs/{run_id}/history/x")
    assert history.status_code == 200 and history.json()["count"] == 0
    # the same batch plain is taken: the refusal was the bomb, not the route
    r = stack.call("ann", "POST", f"/runs/{run_id}/metrics", data=head + b"}",
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text


def test_a_pathological_like_filter_does_not_stall_the_service(stack: Stack):
    created = requests.post(
        mlflow(stack, "experiments/create"), json={"name": "a" * 200},
        headers=auth(stack, "ann"), timeout=30,
    )  # fmt: skip
    assert created.status_code == 200, created.text
    pattern = "%a" * 60 + "%b"  # 122 characters: exponential for a '.*'-per-'%' regex
    search: dict[str, Any] = {}

    def attack() -> None:
        try:
            search["response"] = requests.post(
                mlflow(stack, "experiments/search"), json={"filter": f"name LIKE '{pattern}'"},
                headers=auth(stack, "ann"), timeout=60,
            )  # fmt: skip
        except requests.RequestException as e:
            search["error"] = e

    started = time.monotonic()
    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    time.sleep(0.2)  # the search is being served
    other = answered_within(lambda: stack.call("eve", "GET", "/projects", timeout=30))
    assert other.status_code == 200, other.text
    thread.join(ANSWER_S)
    assert not thread.is_alive(), "the LIKE search is still running"
    assert time.monotonic() - started < ANSWER_S + 1
    assert "error" not in search, search.get("error")
    assert search["response"].status_code == 200, search["response"].text
    assert search["response"].json().get("experiments", []) == []


@pytest.mark.parametrize("length", [MAX_LIKE_PATTERN + 1, 10_000])
def test_an_over_long_like_pattern_gets_400_naming_the_limit(stack: Stack, length: int):
    requests.post(mlflow(stack, "experiments/create"), json={"name": "a" * 200},
                  headers=auth(stack, "ann"), timeout=30)  # fmt: skip
    pattern = ("%a" * length)[:length]
    r = answered_within(
        lambda: requests.post(
            mlflow(stack, "experiments/search"), json={"filter": f"name LIKE '{pattern}'"},
            headers=auth(stack, "ann"), timeout=60,
        )
    )  # fmt: skip
    # the pattern's limit, or for 10,000 characters the whole filter's (it is longer still)
    limit = str(MAX_LIKE_PATTERN) if length == MAX_LIKE_PATTERN + 1 else str(MAX_FILTER_LENGTH)
    body = assert_json_error(r, (400,))
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert limit in body["message"], body
    if length > MAX_LIKE_PATTERN + 1:
        return  # a query string this long is refused by the proxy (431)
    # the run search's filter too
    r = answered_within(
        lambda: stack.call(
            "ann", "GET", "/runs", params={"filter": f"attributes.run_name LIKE '{pattern}'"}
        )
    )
    assert r.status_code == 400 and limit in r.json()["message"], r.text


def test_page_sizes_and_metric_histories_are_bounded(stack: Stack):
    run = stack.call("ann", "POST", "/runs", json={"project": project_id(stack, "long-history")})
    run_id = run.json()["id"]
    points = MAX_PAGE_SIZE + 1000
    for start in range(0, points, 1000):
        batch = [{"key": "loss", "value": 1.0, "step": s, "timestamp": 1}
                 for s in range(start, start + 1000)]  # fmt: skip
        r = stack.call("ann", "POST", f"/runs/{run_id}/batch", json={"metrics": batch})
        assert r.status_code == 200, r.text
    # native: a page beyond the maximum is refused, naming it
    for path, params in [
        ("/projects", {"max_results": MAX_PAGE_SIZE + 1}),
        ("/runs", {"max_results": MAX_PAGE_SIZE + 1}),
        (f"/runs/{run_id}/metrics/loss", {"limit": 1_000_000}),
    ]:
        r = stack.call("ann", "GET", path, params=params)
        assert r.status_code == 400, (path, r.text[:300])
        assert str(MAX_PAGE_SIZE) in r.json()["message"]
    page = stack.call("ann", "GET", f"/runs/{run_id}/metrics/loss", params={"limit": MAX_PAGE_SIZE})
    assert len(page.json()["items"]) == MAX_PAGE_SIZE
    # MLflow: searches refuse, as MLflow does; a history comes in bounded pages
    for endpoint, body in [
        ("runs/search", {"experiment_ids": [str(run.json()["project_id"])]}),
        ("experiments/search", {}),
    ]:
        r = requests.post(mlflow(stack, endpoint), json={**body, "max_results": MAX_PAGE_SIZE + 1},
                          headers=auth(stack, "ann"), timeout=60)  # fmt: skip
        assert r.status_code == 400 and str(MAX_PAGE_SIZE) in r.json()["message"], r.text
    seen, token, pages = 0, None, 0
    while True:
        params = {
            "run_id": run_id,
            "metric_key": "loss",
            **({"page_token": token} if token else {}),
        }
        r = requests.get(mlflow(stack, "metrics/get-history"), params=params,
                         headers=auth(stack, "ann"), timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        got = len(r.json().get("metrics", []))
        assert got <= MAX_PAGE_SIZE
        seen, pages, token = seen + got, pages + 1, r.json().get("next_page_token")
        if not token:
            break
    assert (seen, pages) == (points, 2)


def project_id(stack: Stack, name: str) -> int:
    r = stack.call("ann", "POST", "/projects", json={"name": name, "group": "lqcd"})
    assert r.status_code == 201, r.text
    return r.json()["id"]
