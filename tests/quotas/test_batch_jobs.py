"""The groups' batch jobs on the quotas API and pages, read over HTTP from a real experiments
app (in-process, with its real job table; its Hub authentication is a stand-in here, the real
Hub's custom scope is exercised in tests/security/test_storage_caps.py)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.common.hub_client import HubSource
from hub_ext.experiments.app import make_app as make_experiments_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job, SqlJobStore
from hub_ext.experiments.store import RunStatus, SqlStore
from hub_ext.quotas.app import make_app
from hub_ext.quotas.jobs_source import ExperimentsJobSource, JobsUnavailable, jobs_json
from tests.quotas.fakes import PREFIX, FakeEngine, FakeHub, TokenHubAuth, container, server
from tests.quotas.test_app import MODELS, POLICY
from tests.quotas.test_artifact_storage import ServiceTokenAuth

#: Job ids as the service makes them (32 hex digits; page tokens name them)
J1, J2, J3, J4 = (str(n) * 32 for n in range(1, 5))
#: (job id, user, group, state, node)
JOBS = [
    (J1, "ann", "lqcd", JobState.RUNNING, "node<1>"),
    (J2, "ben", "lqcd", JobState.QUEUED, ""),
    (J3, "ann", "lqcd", JobState.FINISHED, "node1"),  # done: not shown
    (J4, "dan", "nuclear", JobState.RUNNING, "node2"),
]


@pytest_asyncio.fixture(loop_scope="function")
async def experiments_api(tmp_path):
    """An experiments app whose job table holds :data:`JOBS`; yields its API base URL."""
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    jobs = SqlJobStore(store.engine)
    for job_id, user, group, state, node in JOBS:
        project = store.get_project_by_name(group) or store.create_project(
            group, owner=user, group=group
        )
        run = store.create_run(project.id, user=user, status=RunStatus.RUNNING)
        jobs.create_job(
            Job(
                id=job_id,
                run_id=run.id,
                project_id=project.id,
                user=user,
                group=group,
                executor="slurm",
                state=state,
                created=1_795_000_000_000,
                external_id=f"SLURM-{job_id[0]}",
            )
        )
        if node:  # set when the job starts
            jobs.update_job(job_id, node=node, started=1_795_000_060_000)
    app = make_experiments_app(
        store=store,
        prefix="/services/experiments/",
        hub_auth=ServiceTokenAuth(),
        group_lookup=lambda name: [],
        log=logging.getLogger("test-jobs"),
        blobs=BlobStore(tmp_path / "blobs"),
        # the list reads the job table only; no executor is needed
        jobs=SimpleNamespace(jobs=jobs, blobs=None, registry=None, notify=None),
    )
    sock, port = bind_unused_port()
    http = HTTPServer(app)
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/services/experiments"
    http.stop()
    store.close()


async def test_source_lists_active_jobs_of_the_asked_groups(experiments_api):
    source = ExperimentsJobSource(experiments_api, "svc-ok")
    jobs = await source.active_jobs(["lqcd"])
    assert sorted((j.id, j.state) for j in jobs) == [(J1, "RUNNING"), (J2, "QUEUED")]
    both = await source.active_jobs(["lqcd", "nuclear"])
    assert {j.group for j in both} == {"lqcd", "nuclear"}
    assert await source.active_jobs([]) == []
    summary = jobs_json(jobs, items=False)
    assert summary == {"queued": 1, "running": 1, "per_user": {"ann": 1, "ben": 1}}
    # a token without the usage scope: a clear error, not a crash and not someone's jobs
    with pytest.raises(JobsUnavailable, match="answered 403.*custom:latticehub-usage:read"):
        await ExperimentsJobSource(experiments_api, "svc-bare").active_jobs(["lqcd"])
    with pytest.raises(JobsUnavailable, match="could not be read"):
        await ExperimentsJobSource("http://127.0.0.1:9", "svc-ok").active_jobs(["lqcd"])


async def test_source_follows_page_tokens(experiments_api, monkeypatch):
    """One job a page: every active job is still read once, by the jobs API's page tokens."""
    import hub_ext.quotas.jobs_source as jobs_source

    monkeypatch.setattr(jobs_source, "PAGE", 1)
    jobs = await ExperimentsJobSource(experiments_api, "svc-ok").active_jobs(["lqcd", "nuclear"])
    assert sorted(j.id for j in jobs) == [J1, J2, J4]
    monkeypatch.setattr(jobs_source, "MAX_LISTED", 2)  # bounded however many pages there are
    assert len(await ExperimentsJobSource(experiments_api, "svc-ok").active_jobs(["lqcd"])) == 2


@pytest_asyncio.fixture(loop_scope="function")
async def jobs_service(experiments_api):
    hub = FakeHub(
        {"lqcd": {"users": ["ann", "ben"], "properties": {}}, "nuclear": {"users": ["dan"]}},
        [{"name": "ben", "groups": ["lqcd"], "servers": {"": server()}}],
    )
    app = make_app(
        policy=POLICY,
        hub=HubSource("http://hub/hub/api", "t", fetch=hub.fetch),
        engine=FakeEngine([container("lqcd", "ben")]),
        hub_auth=TokenHubAuth(MODELS),
        prefix=PREFIX,
        log=logging.getLogger("test-jobs"),
        job_source=ExperimentsJobSource(experiments_api, "svc-ok"),
    )
    sock, port = bind_unused_port()
    http = HTTPServer(app)
    http.add_sockets([sock])

    async def get(path, user):
        request = HTTPRequest(
            f"http://127.0.0.1:{port}{PREFIX}{path}", headers={"Authorization": f"token {user}"}
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        return response.code, response.body.decode()

    yield get
    http.stop()


async def test_api_counts_jobs_per_group_for_whoever_sees_the_group(jobs_service):
    code, body = await jobs_service("api/groups", "boss")
    assert code == 200
    counts = {g["name"]: g["jobs"] for g in json.loads(body)["items"]}
    assert counts["lqcd"] == {"queued": 1, "running": 1, "per_user": {"ann": 1, "ben": 1}}
    assert counts["nuclear"] == {"queued": 0, "running": 1, "per_user": {"dan": 1}}
    code, body = await jobs_service("api/groups", "ann")  # manager of lqcd only
    assert [g["name"] for g in json.loads(body)["items"]] == ["lqcd"]
    code, body = await jobs_service("api/groups/lqcd", "ann")
    items = json.loads(body)["jobs"]["items"]
    assert [(j["id"], j["state"], j["external_id"]) for j in items] == [
        (J1, "RUNNING", "SLURM-1"),
        (J2, "QUEUED", "SLURM-2"),
    ]
    assert items[0]["node"] == "node<1>" and items[0]["started"] == 1_795_000_060.0
    code, _ = await jobs_service("api/groups/nuclear", "ann")
    assert code == 403


async def test_pages_show_the_jobs_escaped(jobs_service):
    code, body = await jobs_service("", "boss")
    assert code == 200
    assert (
        'class="num jobs"><span class="jobs-running">1</span> / <span class="jobs-queued">1' in body
    )
    code, body = await jobs_service("groups/lqcd", "ann")
    assert code == 200
    assert f'data-job="{J1}"' in body and f'data-job="{J2}"' in body
    assert f'data-job="{J3}"' not in body
    assert "node&lt;1&gt;" in body and "node<1>" not in body
