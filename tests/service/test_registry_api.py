"""Artifact versions, aliases, lineage and GC through the real app (in-process, stand-in Hub)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading

import pytest
import requests

from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.gc import collect
from hub_ext.experiments.retention import RetentionRule
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.entities import Viewer
from hub_ext.experiments.store.errors import UNAUTHENTICATED, TrackingError
from hub_ext.experiments.store.registry import SqlArtifactRegistry
from tests.service.fakehub import experiments

JOB_TOKEN = "lhjob_test"


class FakeJobs:
    """Stands in for the job manager: ``tok-job`` is a job token bound to one run."""

    blobs = registry = None  # set by make_app, as on the real manager

    def __init__(self):
        self.bound_run: str | None = None
        self.bound_project: int | None = None

    def viewer_for_token(self, token, groups_of=None):
        if token != JOB_TOKEN or self.bound_run is None:
            raise TrackingError("unknown job token", UNAUTHENTICATED)
        return Viewer(name="ann", run_id=self.bound_run, project_id=self.bound_project)


@contextlib.contextmanager
def serving(store, blob_dir, jobs=None):
    """The experiments app on a free port in a thread; yields its API's base URL."""
    with experiments(store, blob_dir, jobs=jobs) as url:
        yield f"{url}/api/v1"


class Api:
    def __init__(self, base, token="tok-ann"):
        self.base, self.token, self.http = base, token, requests.Session()

    def __call__(self, method, path, json=None, data=None, token=None, status=None):
        r = self.http.request(
            method, self.base + path, json=json, data=data, timeout=30,
            headers={"Authorization": f"token {token or self.token}"},
        )  # fmt: skip
        if status is not None:
            assert r.status_code == status, (method, path, r.status_code, r.text)
        return r

    def upload(self, run_id, path, data, token=None):
        return self("PUT", f"/runs/{run_id}/artifacts/{path}", data=data, token=token, status=201)


@pytest.fixture
def app(tmp_path, monkeypatch):
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    jobs = FakeJobs()
    with serving(store, tmp_path / "blobs", jobs) as base:
        yield Api(base), store, jobs
    store.close()


def setup_project(api, name="phi4", group="lqcd"):
    project = api("POST", "/projects", {"name": name, "group": group}, status=201).json()
    run = api("POST", "/runs", {"project": project["id"]}, status=201).json()
    return project["id"], run["id"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_versions_aliases_latest_files_and_lineage(app):
    api, _, _ = app
    pid, run = setup_project(api)
    arts = f"/projects/{pid}/artifacts"
    api.upload(run, "model/flow.pt", b"weights v1")
    v1 = api("POST", arts, {"name": "flow-phi4-L8", "run_id": run, "path": "model/flow.pt",
                            "aliases": ["best"], "metadata": {"L": 8}, "description": "first"},
             status=201).json()  # fmt: skip
    assert (v1["version"], v1["ref"], v1["aliases"]) == (1, "flow-phi4-L8:v1", ["best"])
    assert (v1["sha256"], v1["size"], v1["run_id"]) == (sha(b"weights v1"), 10, run)
    assert (v1["metadata"], v1["description"], v1["path"]) == ({"L": 8}, "first", "model/flow.pt")
    api.upload(run, "model/flow.pt", b"weights v2")  # the run's path moves on ...
    v2 = api("POST", arts, {"name": "flow-phi4-L8", "run_id": run, "path": "model/flow.pt"},
             status=201).json()  # fmt: skip
    assert v2["version"] == 2 and v2["aliases"] == []
    one = f"{arts}/flow-phi4-L8"
    # ... the version keeps its content
    assert api("GET", f"{one}/v1/file", status=200).content == b"weights v1"
    assert api("GET", f"{one}/latest/file", status=200).content == b"weights v2"
    assert api("GET", f"{one}/latest", status=200).json()["version"] == 2
    assert api("GET", f"{one}/2", status=200).json()["id"] == v2["id"]
    assert api("GET", f"{one}/best", status=200).json()["version"] == 1
    # the alias moves
    moved = api("PUT", f"{one}/aliases/best", {"version": 2}, status=200).json()
    assert moved["version"] == 2 and moved["aliases"] == ["best"]
    assert api("GET", f"{one}/best", status=200).json()["version"] == 2
    assert api("GET", f"{one}/v1", status=200).json()["aliases"] == []
    r = api("PUT", f"{one}/aliases/latest", {"version": 1}, status=400)
    assert "reserved" in r.json()["message"]
    names = api("GET", arts, status=200).json()["items"]
    assert [(n["name"], n["versions"], n["latest"]["version"], n["aliases"]) for n in names] == [
        ("flow-phi4-L8", 2, 2, {"best": 2})
    ]
    page = api("GET", f"{one}?max_results=1", status=200).json()
    assert [v["version"] for v in page["items"]] == [2]
    rest = api("GET", f"{one}?max_results=1&page_token={page['_pagination']['next_token']}",
               status=200).json()  # fmt: skip
    assert [v["version"] for v in rest["items"]] == [1]
    assert rest["_pagination"]["next_token"] is None
    # lineage: who produced it, who consumed it
    consumer = api("POST", "/runs", {"project": pid}, status=201).json()["id"]
    used = api("POST", f"/runs/{consumer}/uses", {"project": pid, "ref": "flow-phi4-L8:best"},
               status=200).json()  # fmt: skip
    assert used["ref"] == "flow-phi4-L8:v2"
    api("POST", f"/runs/{consumer}/uses", {"project": str(pid), "ref": "flow-phi4-L8:v2"},
        status=200)  # fmt: skip
    detail = api("GET", f"{one}/v2", status=200).json()
    assert detail["lineage"]["produced_by"]["id"] == run
    assert detail["lineage"]["produced_by"]["status"] == "RUNNING"
    assert detail["lineage"]["consumed_by"] == [consumer]
    uses = api("GET", f"/runs/{consumer}/uses", status=200).json()["items"]
    assert [u["version"]["ref"] for u in uses] == ["flow-phi4-L8:v2"]
    # deleting: not while aliased, not the latest; the alias can go
    assert "alias(es) best" in api("DELETE", f"{one}/v2", status=409).json()["message"]
    api("DELETE", f"{one}/aliases/best", status=204)
    assert "latest" in api("DELETE", f"{one}/v2", status=409).json()["message"]
    api("GET", f"{one}/best", status=404)
    api("DELETE", f"{one}/aliases/best", status=404)
    api("DELETE", f"{one}/v1", status=204)
    assert [v["version"] for v in api("GET", one, status=200).json()["items"]] == [2]


def test_other_groups_see_nothing_and_readers_cannot_write_others_runs(app):
    api, _, _ = app
    pid, run = setup_project(api)
    api.upload(run, "m.pt", b"m")
    arts = f"/projects/{pid}/artifacts"
    api("POST", arts, {"name": "flow", "run_id": run, "path": "m.pt"}, status=201)
    bob = lambda *a, **k: api(*a, token="tok-bob", **k)  # noqa: E731
    for path in (arts, f"{arts}/flow", f"{arts}/flow/v1", f"{arts}/flow/v1/file"):
        assert bob("GET", path, status=404).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    bob("POST", arts, {"name": "flow", "run_id": run, "path": "m.pt"}, status=404)
    bob("PUT", f"{arts}/flow/aliases/best", {"version": 1}, status=404)
    bob("GET", f"/runs/{run}/uses", status=404)
    assert api("GET", f"{arts}/flow/v1", token="tok-adm", status=200).json()["version"] == 1
    # shared with bob's group: he reads. A share is read access only (it used to let him
    # create runs and move aliases in ann's project: the tenant-boundary issue, section 3)
    api("PUT", f"/projects/{pid}/shares/nuclear", status=200)
    assert bob("GET", f"{arts}/flow/latest", status=200).json()["version"] == 1
    r = bob("POST", arts, {"name": "flow", "run_id": run, "path": "m.pt"}, status=403)
    assert "may read but not write" in r.json()["message"]
    bob("POST", f"/runs/{run}/uses", {"project": pid, "ref": "flow:v1"}, status=403)
    bob("DELETE", f"{arts}/flow/v1", status=403)
    bob("POST", "/runs", {"project": pid}, status=403)
    r = bob("PUT", f"{arts}/flow/aliases/seen-by-bob", {"version": 1}, status=403)
    assert "a share gives read access only" in r.json()["message"]
    bob("DELETE", f"{arts}/flow/aliases/best", status=403)
    # his runs, in his group's project, may use (read) the shared version; a use in a
    # project ann cannot read is not shown to her
    theirs = bob("POST", "/projects", {"name": "nuc", "group": "nuclear"}, status=201).json()
    hidden = bob("POST", "/runs", {"project": theirs["id"]}, status=201).json()["id"]
    bob("POST", f"/runs/{hidden}/uses", {"project": pid, "ref": "flow:v1"}, status=200)
    assert api("GET", f"{arts}/flow/v1", status=200).json()["lineage"]["consumed_by"] == []
    everyone = api("GET", f"{arts}/flow/v1", token="tok-adm", status=200).json()
    assert everyone["lineage"]["consumed_by"] == [hidden]


def test_job_token_registers_what_its_run_produced_but_sets_no_alias(app):
    api, _, jobs = app
    pid, run = setup_project(api)
    other = api("POST", "/runs", {"project": pid}, status=201).json()["id"]
    jobs.bound_run, jobs.bound_project = run, int(pid)
    arts = f"/projects/{pid}/artifacts"
    api.upload(run, "m.pt", b"trained", token=JOB_TOKEN)
    api.upload(other, "m.pt", b"other")
    body = {"name": "flow", "run_id": run, "path": "m.pt"}
    api("POST", arts, {**body, "aliases": ["best"]}, token=JOB_TOKEN, status=403)
    assert api("POST", arts, body, token=JOB_TOKEN, status=201).json()["version"] == 1
    api("POST", arts, {**body, "run_id": other}, token=JOB_TOKEN, status=403)
    api("PUT", f"{arts}/flow/aliases/best", {"version": 1}, token=JOB_TOKEN, status=403)
    api("POST", f"/runs/{run}/uses", {"project": pid, "ref": "flow:v1"}, token=JOB_TOKEN,
        status=200)  # fmt: skip
    api("POST", f"/runs/{other}/uses", {"project": pid, "ref": "flow:v1"}, token=JOB_TOKEN,
        status=403)  # fmt: skip
    api("DELETE", f"{arts}/flow/v1", token=JOB_TOKEN, status=403)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "", {"name": "bad name", "run_id": "{run}", "path": "m.pt"}, 400, "letters"),
        ("POST", "", {"name": "x" * 251, "run_id": "{run}", "path": "m.pt"}, 400, "letters"),
        ("POST", "", {"name": "flow", "run_id": "{run}"}, 400, "missing field(s): path"),
        ("POST", "", {"name": "flow", "run_id": "{run}", "path": "m.pt", "x": 1}, 400, "unknown"),
        ("POST", "", {"name": "flow", "run_id": "{run}", "path": "../m.pt"}, 400, "'..'"),
        ("POST", "", {"name": "flow", "run_id": "xyz", "path": "m.pt"}, 400, "Run IDs"),
        ("POST", "", {"name": "flow", "run_id": "{run}", "path": "nope"}, 404, "nope"),
        ("POST", "", {"name": "flow", "run_id": "{other}", "path": "m.pt"}, 400, "belongs to"),
        (
            "POST",
            "",
            {"name": "f", "run_id": "{run}", "path": "m.pt", "metadata": [1]},
            400,
            "JSON object",
        ),
        (
            "POST",
            "",
            {"name": "f", "run_id": "{run}", "path": "m.pt", "aliases": "best"},
            400,
            "list",
        ),
        (
            "POST",
            "",
            {"name": "f", "run_id": "{run}", "path": "m.pt", "aliases": ["v1"]},
            400,
            "version",
        ),
        ("GET", "/flow/v0", None, 400, "v3"),
        ("GET", "/flow/a:b", None, 400, "v3"),
        ("GET", "/flow/v1", None, 404, "does not exist"),
        ("GET", "/bad%20name", None, 400, "letters"),
        ("PUT", "/flow/aliases/best", {"version": "x"}, 400, "v3"),
        ("PUT", "/flow/aliases/best", {"version": 0}, 400, "version number"),
        ("PUT", "/flow/aliases/best", {}, 400, "missing"),
        ("PUT", "/flow/aliases/v2", {"version": 1}, 400, "version"),
        ("PUT", "/flow/aliases/best", {"version": 1}, 404, "does not exist"),
    ],
)
def test_bad_requests_name_the_problem_and_store_nothing(app, method, path, body, status, words):
    api, store, _ = app
    pid, run = setup_project(api)
    other_pid, other = setup_project(api, name="elsewhere")
    api.upload(run, "m.pt", b"m")
    api.upload(other, "m.pt", b"m")
    if isinstance(body, dict):
        body = {k: v.format(run=run, other=other) if isinstance(v, str) else v
                for k, v in body.items()}  # fmt: skip
    r = api(method, f"/projects/{pid}/artifacts{path}", body)
    assert r.status_code == status, r.text
    assert words in r.json()["message"], r.json()
    assert r.json()["status"] == status
    registry = SqlArtifactRegistry.for_store(store)
    assert registry.list_versions(pid).items == [] and registry.list_versions(other_pid).items == []


def test_bad_uses_and_project_ids(app):
    api, _, _ = app
    pid, run = setup_project(api)
    api("GET", "/projects/phi4/artifacts", status=400)
    assert "ref" in api("POST", f"/runs/{run}/uses", {"project": pid}, status=400).json()["message"]
    api("POST", f"/runs/{run}/uses", {"project": pid, "ref": "bad ref"}, status=400)
    api("POST", f"/runs/{run}/uses", {"project": pid, "ref": "nope:v1"}, status=404)
    api("POST", f"/runs/{run}/uses", {"project": "phi4", "ref": "nope:v1"}, status=400)
    api("POST", f"/runs/{run}/uses", {"project": [1], "ref": "nope:v1"}, status=400)
    assert api("GET", f"/runs/{run}/uses", status=200).json()["items"] == []


# -- the race: uploads of just-unreferenced content while GC runs with no grace ----------
@pytest.mark.slow
def test_gc_never_deletes_a_referenced_blob_under_concurrent_uploads(store_uri, tmp_path):
    store = SqlStore(store_uri)
    registry = SqlArtifactRegistry.for_store(store)
    blob_dir = tmp_path / "blobs"
    project = store.create_project("stress", owner="ann", group="lqcd")
    runs = [store.create_run(project.id, user="ann").id for _ in range(4)]
    pool = [bytes([i]) * (4096 * (1 + i % 4)) for i in range(16)]  # shared content
    old_garbage = BlobStore(blob_dir).writer()
    old_garbage.write(b"unreferenced since long ago")
    garbage = old_garbage.commit()
    stop, errors, deleted, checks = threading.Event(), [], [0], [0]

    def uploader(i):
        api, rnd = Api(base), random.Random(i)
        try:
            while not stop.is_set():
                data = rnd.choice(pool)
                got = api.upload(runs[i], "model.bin", data).json()
                assert got["sha256"] == sha(data)
                back = api("GET", f"/runs/{runs[i]}/artifacts/model.bin", status=200).content
                assert back == data  # referenced, so GC may not have taken it
                if rnd.random() < 0.4:
                    v = api("POST", f"/projects/{project.id}/artifacts",
                            {"name": f"flow-{i}", "run_id": runs[i], "path": "model.bin"},
                            status=201).json()  # fmt: skip
                    file = api("GET", f"/projects/{project.id}/artifacts/flow-{i}/"
                               f"v{v['version']}/file", status=200).content  # fmt: skip
                    assert file == data
                checks[0] += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            stop.set()

    def collector():
        gc_blobs = BlobStore(blob_dir)  # its own instance, as the CLI would have
        try:
            while not stop.is_set():
                deleted[0] += collect(gc_blobs, registry, grace_s=0, force=True).deleted
                registry.apply_retention(RetentionRule(keep_last=2))  # unreferences versions
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    with serving(store, blob_dir) as base:
        threads = [threading.Thread(target=uploader, args=(i,)) for i in range(len(runs))]
        threads.append(threading.Thread(target=collector))
        for th in threads:
            th.start()
        stop.wait(6)
        stop.set()
        for th in threads:
            th.join(30)
    assert not errors, errors
    blobs = BlobStore(blob_dir)
    referenced = registry.referenced_blobs()
    assert referenced and checks[0] > 50
    for digest in referenced:
        assert blobs.exists(digest), f"referenced blob {digest} was deleted"
        assert sha(blobs.path(digest).read_bytes()) == digest
    assert not blobs.exists(garbage), "GC deleted nothing"
    assert deleted[0] > 1, "GC never collected a just-unreferenced blob: no race was exercised"
    collect(blobs, registry, grace_s=0)
    assert {b.sha256 for b in blobs.iter_blobs()} == referenced
    assert list((blob_dir / "tmp").iterdir()) == []
    store.close()
