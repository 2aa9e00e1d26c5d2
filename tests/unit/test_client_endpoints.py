"""TrackingClient: each method sends the right method, path, query and body (scripted transport)."""

from __future__ import annotations

import pytest

from latticehub.client import Page, TrackingAPIError, TrackingClient
from latticehub.client.testing import ScriptedTransport

RUN = "a" * 32
JOB = "b" * 32


def client_with(*routes) -> tuple[TrackingClient, ScriptedTransport]:
    transport = ScriptedTransport()
    for route in routes:
        transport.add(*route)
    return TrackingClient("http://svc/services/experiments", "tok", transport=transport), transport


# (call, method, path, query, body); the answer is {} unless the method needs more
CASES = [
    (lambda c: c.get_project(7), "GET", "/projects/7", {}, None),
    (lambda c: c.find_project("lqcd/phi4"), "GET", "/projects", {"name": ["lqcd/phi4"]}, None),
    (lambda c: c.list_projects(name_like="phi%", max_results=5, page_token="t1"), "GET",
     "/projects", {"name_like": ["phi%"], "max_results": ["5"], "page_token": ["t1"]}, None),
    (lambda c: c.create_project("p", "lqcd", description="d"), "POST", "/projects", {},
     {"name": "p", "group": "lqcd", "description": "d"}),
    (lambda c: c.update_project(7, name="q", description=""), "PATCH", "/projects/7", {},
     {"name": "q", "description": ""}),
    (lambda c: c.delete_project(7), "DELETE", "/projects/7", {}, None),
    (lambda c: c.share_project(7, "bio"), "PUT", "/projects/7/shares/bio", {}, {}),
    (lambda c: c.share_project(7, "bio", share=False), "DELETE", "/projects/7/shares/bio", {},
     None),
    (lambda c: c.create_run(7, name="r", params={"L": "8"}, status="QUEUED"), "POST", "/runs",
     {}, {"project": 7, "name": "r", "params": {"L": "8"}, "status": "QUEUED"}),
    (lambda c: c.get_run(RUN), "GET", f"/runs/{RUN}", {}, None),
    (lambda c: c.update_run(RUN, status="FINISHED", end_time=5), "PATCH", f"/runs/{RUN}", {},
     {"status": "FINISHED", "end_time": 5}),
    (lambda c: c.search_runs_page(7, filter="metrics.loss < 1", order_by=["metrics.loss ASC"],
                                  max_results=10), "GET", "/runs",
     {"project": ["7"], "filter": ["metrics.loss < 1"], "order_by": ["metrics.loss ASC"],
      "max_results": ["10"]}, None),
    (lambda c: c.log_batch(RUN, metrics=[{"key": "loss", "value": 1.0, "step": 2}],
                           tags={"t": "v"}), "POST", f"/runs/{RUN}/batch", {},
     {"metrics": [{"key": "loss", "value": 1.0, "step": 2}], "tags": {"t": "v"}}),
    (lambda c: c.get_logs(RUN, "stderr", offset=10, limit=5), "GET", f"/runs/{RUN}/logs/stderr",
     {"offset": ["10"], "limit": ["5"]}, None),
    (lambda c: c.metric_history_page(RUN, "train/loss", offset=3), "GET",
     f"/runs/{RUN}/metrics/train/loss", {"offset": ["3"], "limit": ["50000"]}, None),
    (lambda c: c.run_events(RUN), "GET", f"/runs/{RUN}/events", {}, None),
    (lambda c: c.list_artifacts(RUN, "model/"), "GET", f"/runs/{RUN}/artifacts",
     {"prefix": ["model/"]}, None),
    (lambda c: c.delete_artifact(RUN, "/plots/a b.png"), "DELETE",
     f"/runs/{RUN}/artifacts/plots/a b.png", {}, None),
    (lambda c: c.list_registered(7, max_results=2), "GET", "/projects/7/artifacts",
     {"max_results": ["2"]}, None),
    (lambda c: c.register_artifact(7, "flow", RUN, "model/checkpoint.pt", aliases=["best"]),
     "POST", "/projects/7/artifacts", {},
     {"name": "flow", "run_id": RUN, "path": "model/checkpoint.pt", "aliases": ["best"]}),
    (lambda c: c.list_versions(7, "flow"), "GET", "/projects/7/artifacts/flow", {}, None),
    (lambda c: c.get_version(7, "flow", "v3"), "GET", "/projects/7/artifacts/flow/v3", {}, None),
    (lambda c: c.delete_version(7, "flow", 3), "DELETE", "/projects/7/artifacts/flow/3", {},
     None),
    (lambda c: c.set_alias(7, "flow", "best", 3), "PUT", "/projects/7/artifacts/flow/aliases/best",
     {}, {"version": 3}),
    (lambda c: c.delete_alias(7, "flow", "best"), "DELETE",
     "/projects/7/artifacts/flow/aliases/best", {}, None),
    (lambda c: c.run_uses(RUN), "GET", f"/runs/{RUN}/uses", {}, None),
    (lambda c: c.record_use(RUN, 7, "flow:v3"), "POST", f"/runs/{RUN}/uses", {},
     {"project": 7, "ref": "flow:v3"}),
    (lambda c: c.job_options(), "GET", "/jobs/options", {}, None),
    (lambda c: c.submit_job("p", config={"L": 8}, resources={"cpus": 2}, group="lqcd"), "POST",
     "/jobs", {}, {"project": "p", "config": {"L": 8}, "resources": {"cpus": 2},
                   "group": "lqcd"}),
    (lambda c: c.get_job(JOB), "GET", f"/jobs/{JOB}", {}, None),
    (lambda c: c.cancel_job(JOB), "DELETE", f"/jobs/{JOB}", {}, None),
    (lambda c: c.resubmit_job(JOB), "POST", f"/jobs/{JOB}/resubmit", {}, {}),
    (lambda c: c.list_jobs_page(states=["QUEUED", "RUNNING"], groups=["lqcd"]), "GET", "/jobs",
     {"state": ["QUEUED", "RUNNING"], "group": ["lqcd"]}, None),
    (lambda c: c.storage(["lqcd"]), "GET", "/storage", {"group": ["lqcd"]}, None),
    (lambda c: c.openapi(), "GET", "/openapi.json", {}, None),
]  # fmt: skip
ANSWERS = {
    "/projects": {"items": [], "_pagination": {"next_token": None}},
    "/runs": {"items": [], "_pagination": {"next_token": None}},
    "/jobs": {"items": [], "_pagination": {"next_token": None}},
    "/jobs/options": {"groups": {}},
    f"/runs/{RUN}/artifacts": {"items": []},
    f"/runs/{RUN}/events": {"items": []},
    f"/runs/{RUN}/uses": {"items": []},
    f"/runs/{RUN}/metrics/train/loss": {"items": []},
    "/projects/7/artifacts": {"items": [], "_pagination": {"next_token": None}},
    "/projects/7/artifacts/flow": {"items": [], "_pagination": {"next_token": None}},
    f"/runs/{RUN}/artifacts/plots/a b.png": {"deleted": []},
}


@pytest.mark.parametrize(("call", "method", "path", "params", "body"), CASES)
def test_each_method_calls_its_endpoint(call, method, path, params, body):
    answer = ANSWERS.get(path, {"id": "x"}) if method in ("GET", "DELETE") else {"id": "x"}
    if method == "POST" and path == "/projects/7/artifacts":
        answer = {"ref": "flow:v1"}
    client, transport = client_with((method, ".*", answer))
    call(client)
    (sent,) = transport.requests
    assert (sent.method, sent.path, sent.params) == (method, path, params)
    assert sent.headers["Authorization"] == "token tok"
    if body is None:
        assert sent.body == b""
    else:
        assert sent.json() == body and sent.headers["Content-Type"] == "application/json"


def test_every_native_route_has_a_method():
    """The OpenAPI paths of the service, each called by at least one case above."""
    called = {(m, p) for _, m, p, _, _ in CASES}
    called |= {("GET", f"/runs/{RUN}/updates"), ("GET", f"/runs/{RUN}/stream"),
               ("POST", f"/runs/{RUN}/logs/stdout"), ("PUT", f"/runs/{RUN}/artifacts/x"),
               ("GET", f"/runs/{RUN}/artifacts/x"),
               ("GET", "/projects/7/artifacts/flow/v3/file")}  # fmt: skip
    templates = {
        ("GET", "/projects"), ("POST", "/projects"), ("GET", "/projects/{}"),
        ("PATCH", "/projects/{}"), ("DELETE", "/projects/{}"), ("PUT", "/projects/{}/shares/{}"),
        ("DELETE", "/projects/{}/shares/{}"), ("GET", "/runs"), ("POST", "/runs"),
        ("GET", "/runs/{}"), ("PATCH", "/runs/{}"), ("POST", "/runs/{}/batch"),
        ("GET", "/runs/{}/metrics/{}"), ("GET", "/runs/{}/logs/{}"), ("POST", "/runs/{}/logs/{}"),
        ("GET", "/runs/{}/artifacts"), ("GET", "/runs/{}/artifacts/{}"),
        ("PUT", "/runs/{}/artifacts/{}"), ("DELETE", "/runs/{}/artifacts/{}"),
        ("GET", "/storage"), ("GET", "/runs/{}/events"), ("GET", "/jobs"), ("POST", "/jobs"),
        ("GET", "/jobs/options"), ("GET", "/jobs/{}"), ("DELETE", "/jobs/{}"),
        ("POST", "/jobs/{}/resubmit"), ("GET", "/runs/{}/stream"), ("GET", "/runs/{}/updates"),
        ("GET", "/projects/{}/artifacts"), ("POST", "/projects/{}/artifacts"),
        ("GET", "/projects/{}/artifacts/{}"), ("GET", "/projects/{}/artifacts/{}/{}"),
        ("DELETE", "/projects/{}/artifacts/{}/{}"), ("GET", "/projects/{}/artifacts/{}/{}/file"),
        ("PUT", "/projects/{}/artifacts/{}/aliases/{}"),
        ("DELETE", "/projects/{}/artifacts/{}/aliases/{}"), ("GET", "/runs/{}/uses"),
        ("POST", "/runs/{}/uses"), ("GET", "/openapi.json"),
    }  # fmt: skip
    import re

    def matches(template: str, path: str) -> bool:
        pattern = re.escape(template).replace(re.escape("{}"), "[^/]+")
        pattern = re.sub(r"(metrics|/artifacts)/\[\^/\]\+$", r"\1/.+", pattern)
        return re.fullmatch(pattern, path) is not None

    missing = [
        (m, t) for m, t in templates if not any(cm == m and matches(t, p) for cm, p in called)
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("status", "payload", "code", "message", "transient"),
    [
        (404, {"error_code": "NOT_THERE", "message": "Run x"}, "NOT_THERE", "Run x", False),
        (429, {"error_code": "JOB_LIMIT_EXCEEDED", "message": "1 of 1"}, "JOB_LIMIT_EXCEEDED",
         "1 of 1", True),
        (503, {"error_code": "EXECUTOR_UNAVAILABLE", "message": "off"}, "EXECUTOR_UNAVAILABLE",
         "off", True),
        (502, b"<html>Bad Gateway</html>", "HTTP_ERROR", "HTTP 502", True),
        (400, ["not", "an", "object"], "HTTP_ERROR", "HTTP 400", False),
        (200, b"<html>login</html>", "BAD_ANSWER", "is not JSON", False),
    ],
)  # fmt: skip
def test_answers_map_to_one_error_type(status, payload, code, message, transient):
    client, _ = client_with(("GET", ".*", (status, payload)))
    with pytest.raises(TrackingAPIError) as caught:
        client.get_run(RUN)
    error = caught.value
    assert (error.status, error.code, error.transient) == (status, code, transient)
    assert message in error.message


def test_unreachable_is_an_oserror_the_spool_can_catch():
    client, _ = client_with(("GET", ".*", ConnectionRefusedError(111, "refused")))
    with pytest.raises(OSError):
        client.get_run(RUN)


def test_search_runs_follows_the_page_tokens():
    pages = [
        {"items": [{"id": "1"}, {"id": "2"}], "_pagination": {"next_token": "t2"}},
        {"items": [{"id": "3"}], "_pagination": {"next_token": None}},
    ]
    client, transport = client_with(("GET", "/runs", *pages))
    assert [r["id"] for r in client.search_runs(7, filter="x")] == ["1", "2", "3"]
    assert [r.params.get("page_token") for r in transport.requests] == [None, ["t2"]]
    assert all(r.params["max_results"] == ["1000"] for r in transport.requests)
    first = client.search_runs_page(7)
    assert isinstance(first, Page)


@pytest.mark.parametrize(
    ("pages", "continued_with"),
    [
        # token paging, as every other listing (the jobs handler's new shape)
        ([{"items": [{"id": "1"}], "_pagination": {"next_token": "t2"}},
          {"items": [{"id": "2"}], "_pagination": {"next_token": None}}],
         {"page_token": ["t2"]}),
        # a top-level next_page_token
        ([{"items": [{"id": "1"}], "next_page_token": "t2"},
          {"items": [{"id": "2"}], "next_page_token": None}],
         {"page_token": ["t2"]}),
        # offset paging, as the jobs handler had it
        ([{"items": [{"id": "1"}], "_pagination": {"offset": 1000}},
          {"items": [{"id": "2"}], "_pagination": {"offset": None}}],
         {"offset": ["1000"]}),
    ],
)  # fmt: skip
def test_list_jobs_follows_either_paging(pages, continued_with):
    client, transport = client_with(("GET", "/jobs", *pages))
    assert [j["id"] for j in client.list_jobs(states=["RUNNING"])] == ["1", "2"]
    first, second = transport.requests
    assert "page_token" not in first.params and "offset" not in first.params
    for key, value in continued_with.items():
        assert second.params[key] == value
    assert second.params["state"] == ["RUNNING"] and second.params["limit"] == ["1000"]


def test_metric_history_reads_every_page(monkeypatch):
    import latticehub.client.runs as runs

    monkeypatch.setattr(runs, "HISTORY_PAGE", 2)
    point = {"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}
    client, transport = client_with(
        ("GET", f"/runs/{RUN}/metrics/loss", {"items": [point, point]}, {"items": [point]})
    )
    assert len(client.get_metric_history(RUN, "loss")) == 3
    assert [r.params["offset"] for r in transport.requests] == [["0"], ["2"]]


def test_run_updates_starts_with_the_tail_then_follows_the_cursor():
    cursor = {"stdout": 3, "stderr": 1, "events": 2, "metrics": "m9", "partial_stdout": 4}
    body = {"run": {}, "cursor": cursor, "done": False}
    client, transport = client_with(("GET", f"/runs/{RUN}/updates", body, {**body, "done": True}))
    rounds = list(client.follow_run(RUN, wait=7))
    assert len(rounds) == 2
    first, second = (r.params for r in transport.requests)
    assert first == {"tail": ["200"], "wait": ["0"], "metrics": ["1"]}
    assert second == {"stdout": ["3"], "stderr": ["1"], "events": ["2"], "wait": ["7"],
                      "partial_stdout": ["4"], "partial_stderr": ["0"],
                      "metrics": ["m9"]}  # fmt: skip


@pytest.mark.parametrize(("timeout", "wait"), [(30, 25), (10, 5), (3, 0)])
def test_long_poll_wait_stays_below_the_client_timeout(timeout, wait):
    assert TrackingClient("http://x", "t", timeout=timeout).long_poll_wait() == wait


def test_project_finds_or_creates():
    client, transport = client_with(
        ("GET", "/projects", {"items": [], "_pagination": {"next_token": None}}),
        ("POST", "/projects", (201, {"id": 9, "name": "p"})),
    )
    assert client.project("p", "lqcd")["id"] == 9
    assert transport.requests[0].params == {"name": ["lqcd/p"]}
    assert transport.requests[1].json() == {"name": "p", "group": "lqcd"}


def test_sync_replays_every_spool_in_order_and_counts_what_is_left(tmp_path):
    """``latticehub.client.sync``: the client's own replay, no server package needed."""
    from latticehub.client import sync
    from latticehub.client.spool import Spool

    Spool.for_run("a", tmp_path).append([("POST", "/runs/a/batch", {"n": 1})])
    Spool.for_run("b", tmp_path).append(
        [("POST", "/runs/b/batch", {"n": 2}), ("POST", "/runs/b/batch", {"n": 3})]
    )
    sent, lines = [], []

    def send(method, path, body=None, **kwargs):
        if body == {"n": 3}:
            raise OSError("service unreachable")
        sent.append((method, path, body))

    assert sync(tmp_path, send, report=lines.append) == 1
    assert sent == [("POST", "/runs/a/batch", {"n": 1}), ("POST", "/runs/b/batch", {"n": 2})]
    assert lines[1] == "[2/2] run b: 1 write(s) sent, 1 left (service unreachable?)"
    assert sync(tmp_path / "empty", send, report=lines.append) == 0
    assert lines[-1].startswith("nothing to sync")
