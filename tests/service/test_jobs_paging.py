"""``GET /api/v1/jobs`` pages by token, like runs and projects (the real app, stand-in Hub auth).

Jobs are written straight into the job store (no executor runs): what is tested is the list.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import pytest
import requests
from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.jobs.executors import LocalExecutor
from hub_ext.experiments.jobs.manager import JobManager
from hub_ext.experiments.jobs.spec import parse_job_limits
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job, SqlJobStore
from hub_ext.experiments.store import SqlStore
from tests.hub import free_port
from tests.service.conftest import FakeHubAuth

T0 = 1_800_000_000_000


class Api:
    """The app with a job manager (never polling) on a thread's event loop."""

    def __init__(self, tmp_path):
        self.store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
        self.jobs = SqlJobStore(self.store.engine)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/services/experiments/api/v1"
        manager = JobManager(
            store=self.store, jobs=self.jobs, executors={"local": LocalExecutor()},
            limits=parse_job_limits({"*": {}}), jobs_dir=tmp_path / "jobs",
            tracking_url=self.url, command=["true"],
        )  # fmt: skip
        self.projects: dict[str, int] = {}
        ready = threading.Event()

        def serve():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            app = make_app(
                store=self.store, prefix="/services/experiments/", hub_auth=FakeHubAuth(),
                group_lookup=lambda name: [], log=logging.getLogger("test-jobs-paging"),
                blobs=BlobStore(tmp_path / "blobs"), jobs=manager,
            )  # fmt: skip
            HTTPServer(app).listen(port, "127.0.0.1")
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def add(self, created: list[int], *, group: str = "lqcd", user: str = "ann") -> list[str]:
        """Jobs (with their runs) created at these times; their ids."""
        if group not in self.projects:
            self.projects[group] = self.store.create_project(group, owner=user, group=group).id
        project = self.projects[group]
        ids = []
        for when in created:
            run = self.store.create_run(project, user=user, start_time=when)
            job = Job(
                id=uuid.uuid4().hex, run_id=run.id, project_id=project, user=user,
                group=group, executor="local", state=JobState.QUEUED, created=when,
            )  # fmt: skip
            ids.append(self.jobs.create_job(job).id)
        return ids

    def get(self, token: str = "tok-ann", **params) -> requests.Response:
        return requests.get(
            f"{self.url}/jobs", params=params, headers={"Authorization": f"token {token}"},
            timeout=10,
        )  # fmt: skip

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def api(tmp_path):
    api = Api(tmp_path)
    yield api
    api.close()


def newest_first(api: Api, ids: list[str]) -> list[str]:
    jobs = [api.jobs.get_job(i) for i in ids]
    return [j.id for j in sorted(jobs, key=lambda j: (-j.created, j.id))]


def follow(api: Api, token: str = "tok-ann", **params) -> list[list[str]]:
    """Every page, following ``_pagination.next_token``."""
    pages = []
    while True:
        r = api.get(token, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["_pagination"]) == {"next_token"}
        pages.append([j["id"] for j in body["items"]])
        nxt = body["_pagination"]["next_token"]
        if nxt is None:
            return pages
        params["page_token"] = nxt


# ties included: jobs of the same millisecond are ordered by id
TIMES = [T0 + d for d in (0, 1, 1, 2, 3, 3, 3, 5, 8, 13, 21)]


@pytest.mark.parametrize(("size", "pages"), [(1, 11), (2, 6), (3, 4), (5, 3), (10, 2), (11, 1)])
def test_pages_of_any_size_list_every_job_once_newest_first(api, size, pages):
    ids = api.add(TIMES)
    got = follow(api, max_results=size)
    assert len(got) == pages  # no empty page at the end: a token only when there is more
    assert [j for page in got for j in page] == newest_first(api, ids)
    assert all(len(page) == size for page in got[:-1])


def test_the_default_page_is_100_jobs(api):
    api.add([T0 + i for i in range(101)])
    first = api.get().json()
    assert len(first["items"]) == 100 and first["_pagination"]["next_token"]


def test_jobs_submitted_between_pages_neither_shift_nor_repeat_a_page(api):
    ids = api.add(TIMES)
    first = api.get(max_results=4).json()
    api.add([T0 + 100, T0 + 101])  # newer: they belong before the first page
    rest = follow(api, max_results=4, page_token=first["_pagination"]["next_token"])
    seen = [j["id"] for j in first["items"]] + [j for page in rest for j in page]
    assert seen == newest_first(api, ids)


@pytest.mark.parametrize(
    "token",
    ["garbage", "eyJvZmZzZXQiOiAxMDB9", "eyJjcmVhdGVkIjogLTEsICJpZCI6ICJ4In0=", "%00"],
)
def test_a_bad_token_is_a_400_json_error_naming_the_fix(api, token):
    api.add(TIMES[:2])
    r = api.get(page_token=token)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and body["status"] == 400
    assert "next_token" in body["message"] and "leave page_token out" in body["message"]


@pytest.mark.parametrize(
    ("params", "fix"),
    [
        ({"max_results": 0}, "1..1000"),
        ({"max_results": 1001}, "next_token"),
        ({"max_results": "x"}, "integer"),
        ({"max_results": 5, "limit": 6}, "send max_results alone"),
        ({"offset": 0, "page_token": "x"}, "follow _pagination.next_token"),
    ],
)
def test_page_arguments_are_checked(api, params, fix):
    r = api.get(**params)
    assert r.status_code == 400, r.text
    assert fix in r.json()["message"]


@pytest.mark.parametrize("size", [1, 3, 100])
def test_another_groups_jobs_never_appear(api, size):
    ours = api.add(TIMES, group="lqcd", user="ann")
    theirs = api.add(TIMES, group="nuclear", user="bob")
    seen_by_ann = [j for page in follow(api, max_results=size) for j in page]
    assert seen_by_ann == newest_first(api, ours)
    seen_by_bob = [j for page in follow(api, "tok-bob", max_results=size) for j in page]
    assert seen_by_bob == newest_first(api, theirs)
    # a token made from bob's page is a position, not a grant: ann still sees only lqcd
    bobs = api.get("tok-bob", max_results=1).json()["_pagination"]["next_token"]
    after = [j for page in follow(api, page_token=bobs) for j in page]
    assert set(after) <= set(ours)
    refused = api.get(group="nuclear")
    assert refused.status_code == 403 and "not a member of 'nuclear'" in refused.json()["message"]
    everyone = [j for page in follow(api, "tok-adm", max_results=size) for j in page]
    assert sorted(everyone) == sorted(ours + theirs)


def test_the_deprecated_offset_and_limit_still_page(api):
    ids = newest_first(api, api.add(TIMES))
    seen, offset = [], 0
    while offset is not None:
        body = api.get(limit=4, offset=offset).json()
        seen += [j["id"] for j in body["items"]]
        offset = body["_pagination"]["offset"]
        assert "next_token" in body["_pagination"]  # a client may switch to tokens
    assert seen == ids
    # limit alone: the page size (clamped to 1000, as before)
    assert len(api.get(limit=5000).json()["items"]) == len(TIMES)
    # a client speaking both dialects (the same size twice) is answered
    both = api.get(limit=1000, max_results=1000)
    assert both.status_code == 200 and len(both.json()["items"]) == len(TIMES)
    assert api.get(limit=3).json()["_pagination"] == {
        "next_token": api.get(max_results=3).json()["_pagination"]["next_token"]
    }
