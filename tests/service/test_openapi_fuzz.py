"""Property-based fuzz of the native API from its own OpenAPI document (schemathesis).

Each documented operation gets generated requests (examples, coverage and fuzzing phases;
valid and invalid data) against the in-process service, authenticated as ``ann``, with a
seeded project, run (metrics, log lines, an artifact), registered artifact version and job
so that generated ids sometimes hit real objects. Checks: no 5xx, every status documented,
every response body matching its documented schema.

Reproducible: hypothesis is derandomized and each operation's examples are bounded.
Below the fuzz: focused regression tests of the bugs it found.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from hub_ext.experiments.handlers.openapi import document
from hub_ext.experiments.jobs.executors import Executor, Observed
from hub_ext.experiments.jobs.manager import JobManager
from hub_ext.experiments.jobs.spec import parse_job_limits
from hub_ext.experiments.jobs.store import SqlJobStore
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.entities import ACTIVE, RunStatus
from tests.hub import free_port
from tests.service.fakehub import experiments

AUTH = {"Authorization": "token tok-ann"}
GROUPS = {"ann": ["lqcd"], "bob": ["nuclear"], "adm": []}
LIMITS = {"lqcd": {"executors": ["local"], "max_jobs": 3, "max_cpus": 2, "max_time": "0:10:00"}}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

#: Ids of the seeded run and job, filled in by the ``api`` fixture.
SEEDED: dict = {}
#: Stand-ins for the seeded objects' ids, known before seeding (valid per the document).
PLACEHOLDERS = {
    "project_id": 1,
    "run_id": "5eed" * 8,
    "job_id": "70b5" * 8,
    "key": "loss",
    "path": "model/weights.bin",
    "name": "model",
    "ref": "v1",
    "alias": "best",
    "group": "nuclear",
}


#: Valid request bodies naming the seeded objects, by operation.
BODY_EXAMPLES = {
    ("post", "/api/v1/runs"): {"project": 1, "name": "r", "params": {"lr": 0.1}},
    ("post", "/api/v1/runs/{run_id}/uses"): {"project": 1, "ref": "model:v1"},
    ("post", "/api/v1/runs/{run_id}/logs/{stream}"): {"offset": 0, "lines": ["a", "b"]},
    ("post", "/api/v1/jobs"): {"project": "fuzz", "config": {"steps": 1}},
    ("post", "/api/v1/projects/{project_id}/artifacts"): {
        "name": "model", "run_id": PLACEHOLDERS["run_id"], "path": "model/weights.bin",
    },
    ("put", "/api/v1/projects/{project_id}/artifacts/{name}/aliases/{alias}"): {"version": 1},
}  # fmt: skip


def fuzz_document() -> dict:
    """The served document, with the seeded objects as examples.

    The examples and coverage phases build their requests around these (the test swaps
    the stand-in ids for the real ones), so that they reach past the 404s.
    """
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", ()):
                if param["in"] == "path" and param["name"] in PLACEHOLDERS:
                    param["example"] = PLACEHOLDERS[param["name"]]
            if (method, path) in BODY_EXAMPLES:
                content = op["requestBody"]["content"]["application/json"]
                content["example"] = BODY_EXAMPLES[method, path]
    return doc


schema = schemathesis.openapi.from_dict(fuzz_document()).exclude(
    # an SSE response never ends while its run is active
    func=lambda ctx: bool(ctx.operation.definition.raw.get("x-streaming"))
)


class IdleExecutor(Executor):
    """Accepts every job and never runs it (the fuzz needs jobs, not processes)."""

    name = "local"

    def __init__(self) -> None:
        self.count = 0

    async def submit(self, job, script: Path) -> str:  # noqa: D102
        self.count += 1
        return f"idle-{self.count}"

    async def poll(self, jobs) -> dict[str, Observed]:  # noqa: D102
        return {}

    async def cancel(self, job) -> None:  # noqa: D102
        pass


def _seed(url: str) -> dict:
    """A project of ann's group with a run, metrics, logs, an artifact, a version, a job."""
    s = requests.Session()
    s.headers.update(AUTH)

    def ok(r: requests.Response) -> dict:
        assert r.status_code < 300, r.text
        return r.json() if r.content else {}

    project = ok(s.post(f"{url}/api/v1/projects", json={"name": "fuzz", "group": "lqcd"}))
    assert project["id"] == PLACEHOLDERS["project_id"]
    run = ok(s.post(f"{url}/api/v1/runs", json={"project": project["id"], "params": {"L": 8}}))
    rid = run["id"]
    metrics = [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(5)]
    ok(s.post(f"{url}/api/v1/runs/{rid}/batch", json={"metrics": metrics, "tags": {"k": "v"}}))
    for stream in ("stdout", "stderr"):
        body = {"offset": 0, "lines": [f"{stream} line {i}" for i in range(3)]}
        ok(s.post(f"{url}/api/v1/runs/{rid}/logs/{stream}", json=body))
    ok(s.put(f"{url}/api/v1/runs/{rid}/artifacts/model/weights.bin", data=b"\x00weights"))
    ok(
        s.post(
            f"{url}/api/v1/projects/{project['id']}/artifacts",
            json={"name": "model", "run_id": rid, "path": "model/weights.bin", "aliases": ["best"]},
        )
    )
    ok(s.post(f"{url}/api/v1/runs/{rid}/uses", json={"project": project["id"], "ref": "model:v1"}))
    job = ok(s.post(f"{url}/api/v1/jobs", json={"project": "fuzz", "config": {"steps": 1}}))
    return {"project_id": project["id"], "run_id": rid, "job_id": job["id"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The app on a thread's event loop, seeded, with a job manager (an idle executor).

    Like the ``service`` fixture, but module-wide (one seeding for all operations) and with
    the jobs API enabled (without a manager, every /jobs operation answers 503).
    """
    tmp = tmp_path_factory.mktemp("fuzz")
    store = SqlStore(f"sqlite:///{tmp / 'tracking.sqlite'}")
    port = free_port()
    url = f"http://127.0.0.1:{port}/services/experiments"
    manager = JobManager(
        store=store,
        jobs=SqlJobStore(store.engine),
        executors={"local": IdleExecutor()},
        limits=parse_job_limits(LIMITS),
        jobs_dir=tmp / "jobs",
        tracking_url=url,
        command=["true"],
        validate_config=False,
    )
    with experiments(
        store, tmp / "blobs", port=port, group_lookup=lambda name: GROUPS.get(name, []),
        jobs=manager,
    ):  # fmt: skip
        SEEDED.clear()
        SEEDED.update(_seed(url))
        yield url, store
    store.close()


@pytest.fixture(autouse=True)
def reset_seeded(api):
    """Undo what the previous operation did to the seeded project and run."""
    url, store = api
    store.update_project(SEEDED["project_id"], name="fuzz", lifecycle_stage=ACTIVE)
    store.update_run(SEEDED["run_id"], status=RunStatus.RUNNING, status_reason="")
    alias = f"{url}/api/v1/projects/{SEEDED['project_id']}/artifacts/model/aliases/best"
    requests.put(alias, json={"version": 1}, headers=AUTH, timeout=10)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half of the fuzzed cases address the seeded objects."""
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    seeded = {k: PLACEHOLDERS.get(k, v) for k, v in path_parameters.items()}
    return st.sampled_from([path_parameters, seeded])


@schema.hook
def flatmap_body(context, body):
    """Half of the fuzzed object bodies name the seeded project, run, path or version."""
    if not isinstance(body, dict):
        return st.just(body)
    seeded = {
        "project": "fuzz" if context.operation.path == "/api/v1/jobs" else 1,
        "run_id": PLACEHOLDERS["run_id"],
        "path": PLACEHOLDERS["path"],
        "ref": "model:v1",
    }
    return st.sampled_from([body, {**body, **{k: v for k, v in seeded.items() if k in body}}])


def _long_wait(value) -> bool:
    """Whether a long-poll's ``wait`` is valid and longer than a moment."""
    try:
        return 0.05 < float(value) <= 60
    except (TypeError, ValueError):
        return False


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_native_api_conforms_to_its_document(case, api):
    url, _ = api
    for name in ("run_id", "job_id"):  # the stand-ins, known before seeding, for the real ids
        if case.path_parameters and case.path_parameters.get(name) == PLACEHOLDERS[name]:
            case.path_parameters[name] = SEEDED[name]
        if isinstance(case.body, dict) and case.body.get(name) == PLACEHOLDERS[name]:
            case.body[name] = SEEDED[name]
    if case.path.endswith("/updates") and _long_wait((case.query or {}).get("wait", 25)):
        case.query = {**(case.query or {}), "wait": "0.05"}  # a moment, not up to 60 s
    case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS, timeout=30)


# -- regression tests for what the fuzz found ---------------------------------------------
@pytest.fixture
def http(api):
    """``(base url, session authenticated as ann)``."""
    session = requests.Session()
    session.headers.update(AUTH)
    return api[0] + "/api/v1", session


@pytest.mark.parametrize(
    "path", ["projects/{}", "projects/{}/artifacts", "projects/{}/artifacts/model/v1/file"]
)
@pytest.mark.parametrize("number", [2**63, 10**30, -(2**64)])
def test_a_project_id_beyond_64_bits_is_not_found(http, path, number):
    url, s = http
    r = s.get(f"{url}/{path.format(number)}")  # was 500: OverflowError in SQLite
    assert r.status_code == 404, r.text
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("group", [{}, [], 3, True])
def test_a_project_group_that_is_not_a_name_is_refused(http, group):
    url, s = http
    r = s.post(f"{url}/projects", json={"name": "g", "group": group})  # was 500: unhashable
    assert r.status_code == 400, r.text
    assert "group" in r.json()["message"]


def test_a_project_description_must_be_text(http):
    url, s = http
    r = s.post(f"{url}/projects", json={"name": "d", "description": {"a": 1}})  # was str()'d
    assert r.status_code == 400, r.text
    r = s.patch(f"{url}/projects/{SEEDED['project_id']}", json={"description": {}})  # was 500
    assert r.status_code == 400, r.text
    assert s.post(f"{url}/projects", json={"name": "d", "description": None}).status_code == 201


def test_a_job_group_that_is_not_a_name_is_refused(http):
    url, s = http
    r = s.post(f"{url}/jobs", json={"project": "fuzz", "group": {}})  # was 500: unhashable
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "runs/{run}", {"heartbeat": 2**63}),
        ("patch", "runs/{run}", {"end_time": -(2**63) - 1}),
        ("post", "runs/{run}/batch", {"metrics": [{"key": "a", "value": 1, "timestamp": 2**63}]}),
        ("post", "runs/{run}/batch", {"metrics": [{"key": "a", "value": 1, "step": 10**20}]}),
        ("post", "runs", {"project": 1, "start_time": 2**64}),
    ],
)
def test_integers_beyond_64_bits_are_refused(http, method, path, body):
    url, s = http
    r = s.request(method, f"{url}/{path.format(run=SEEDED['run_id'])}", json=body)  # was 500
    assert r.status_code == 400, r.text
    assert "64-bit" in r.json()["message"]


def test_a_status_reason_must_be_text(http):
    url, s = http
    r = s.patch(f"{url}/runs/{SEEDED['run_id']}", json={"status_reason": {}})  # was 500
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "query",
    ["offset=null", "limit=x", "offset=-1", "limit=-1", f"limit=-{2**70}", f"offset={2**63}"],
)
@pytest.mark.parametrize("path", ["metrics/loss", "logs/stdout"])
def test_paging_arguments_of_metrics_and_logs_are_checked(http, path, query):
    url, s = http
    # was 500 (ValueError, OverflowError), or, for a negative limit, every point at once
    r = s.get(f"{url}/runs/{SEEDED['run_id']}/{path}?{query}")
    assert r.status_code == 400, r.text
    assert query.split("=")[0] in r.json()["message"]


def test_a_log_append_without_lines_is_refused(http):
    url, s = http
    r = s.post(f"{url}/runs/{SEEDED['run_id']}/logs/stdout", json={"offset": 0})  # was 500
    assert r.status_code == 400, r.text
    assert "lines" in r.json()["message"]


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "offset=-1", f"offset={2**63}"])
def test_job_list_paging_is_checked(http, query):
    url, s = http
    # limit=0 answered a next offset equal to the offset (a client paging forever)
    r = s.get(f"{url}/jobs?{query}")
    assert r.status_code == 400, r.text


def test_live_readers_get_nan_metrics_as_strings(http):
    """An MLflow client may log NaN: the long-poll then failed to encode it (500)."""
    url, s = http
    run = SEEDED["run_id"]
    first = s.get(f"{url}/runs/{run}/updates", params={"metrics": "1", "wait": 0}).json()
    point = {"run_id": run, "key": "nan", "value": "NaN", "timestamp": 1, "step": 0}
    base = url.removesuffix("/api/v1")
    assert s.post(f"{base}/api/2.0/mlflow/runs/log-metric", json=point).status_code == 200
    cursor = first["metrics"]["cursor"]
    r = s.get(f"{url}/runs/{run}/updates", params={"metrics": cursor, "wait": 0})
    assert r.status_code == 200, r.text
    assert {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0} in r.json()["metrics"][
        "points"
    ]
