"""The jobs API with the local executor: real subprocesses, the real app, stand-in Hub auth."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from hub_ext.experiments.jobs.executors import LocalExecutor
from hub_ext.experiments.jobs.manager import JobManager, default_command
from hub_ext.experiments.jobs.spec import parse_job_limits
from hub_ext.experiments.jobs.store import SqlJobStore
from hub_ext.experiments.jobs.tokens import token_hash
from hub_ext.experiments.store import SqlStore
from tests.hub import free_port
from tests.service.fakehub import experiments

ROOT = Path(__file__).resolve().parents[2]
TINY = {"L": 4, "n_layers": 2, "hidden": [4], "batch_size": 16, "steps": 20, "log_every": 5,
        "eval_samples": 500, "device": "cpu"}  # fmt: skip
LIMITS = {"lqcd": {"executors": ["local"], "max_jobs": 2, "max_cpus": 2, "max_time": "0:10:00"}}
GROUPS = {"ann": ["lqcd"], "bob": ["nuclear"], "adm": []}


class Service:
    """The app plus a job manager polling every 0.2 s, on a thread's event loop."""

    def __init__(
        self,
        tmp: Path,
        command: list[str],
        validate_config: bool = True,
        executors: dict | None = None,
        limits: dict | None = None,
        jobs_dir: Path | None = None,
        chown_to=None,
    ):
        self.tmp = tmp
        self.store = SqlStore(f"sqlite:///{tmp / 'tracking.sqlite'}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/services/experiments"
        self.manager = JobManager(
            store=self.store,
            jobs=SqlJobStore(self.store.engine),
            executors=executors or {"local": LocalExecutor(max_concurrent=2, kill_grace_s=2)},
            limits=parse_job_limits(limits or LIMITS),
            jobs_dir=jobs_dir or tmp / "jobs",
            chown_to=chown_to,
            tracking_url=self.url,
            command=command,
            validate_config=validate_config,
        )
        self.serving = experiments(
            self.store, tmp / "blobs", port=self.port, max_artifact_size=10 * 1024**3,
            group_lookup=lambda name: GROUPS.get(name, []), jobs=self.manager,
            background=[lambda: self.manager.run_forever(0.2)],
        )  # fmt: skip
        self.serving.__enter__()

    def call(self, method, path, token="tok-ann", **kw):
        return requests.request(
            method, f"{self.url}/api/v1{path}", headers={"Authorization": f"token {token}"},
            timeout=30, **kw,
        )  # fmt: skip

    def wait_state(self, job_id, states, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not reach {states}: {job}")

    def stop(self):
        self.serving.__exit__(None, None, None)


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path, default_command())
    yield svc
    svc.stop()


@pytest.fixture(autouse=True)
def project_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # local jobs run `python -m flows.train` from the repository
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def submit(svc, token="tok-ann", **over):
    body = {"project": "jobs-ci", "group": "lqcd", "config": TINY,
            "resources": {"executor": "local", "cpus": 1, "time": 5}, **over}  # fmt: skip
    return svc.call("POST", "/jobs", token=token, json=body)


def test_a_training_job_runs_to_finished_and_records_everything(service):
    r = submit(service, name="tiny phi4")
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "QUEUED" and job["executor"] == "local"
    run = service.store.get_run(job["run_id"])
    assert run.status.value in ("QUEUED", "RUNNING") and run.name == "tiny phi4"
    assert run.params["L"] == "4"
    done = service.wait_state(job["id"], {"FINISHED", "FAILED", "LOST"})
    workdir = Path(service.manager.jobs.get_job(job["id"]).workdir)
    assert done["state"] == "FINISHED", (workdir / "stderr.log").read_text()[-2000:]
    assert done["exit_code"] == 0 and done["ended"] and done["started"]
    run = service.store.get_run(job["run_id"])
    assert run.status.value == "FINISHED"
    assert [m.step for m in service.store.get_metric_history(run.id, "loss")] == [5, 10, 15, 20]
    assert {"model/checkpoint.pt", "summary.json"} <= {
        a.path for a in service.store.list_artifacts(run.id)
    }
    kinds = [e["kind"] for e in service.call("GET", f"/runs/{run.id}/events").json()["items"]]
    assert kinds[:2] == ["submitted", "queued"] and "ended" in kinds
    # the token: only in a 0600 file, never on a command line or in the script
    env_file = workdir / "job.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    lines = env_file.read_text().splitlines()
    token = next(line.split("=", 1)[1] for line in lines if line.startswith("LATTICEHUB_TOKEN="))
    token = token.strip("'")
    assert token not in (workdir / "job.sh").read_text()
    # ... and revoked now that the job has ended (the Hub forgets it; the service too)
    r = service.call("PATCH", f"/runs/{run.id}", token=token, json={"name": "x"})
    assert r.status_code == 401
    assert service.manager.jobs.find_token(token_hash(token)).revoked


def test_job_token_writes_only_its_own_run(tmp_path):
    svc = Service(
        tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"], validate_config=False
    )
    try:
        job = submit(svc, config={}).json()
        other = submit(svc, config={}).json()
        token_line = (Path(svc.manager.jobs.get_job(job["id"]).workdir) / "job.env").read_text()
        token = token_line.split("LATTICEHUB_TOKEN=")[1].split("\n")[0].strip("'")
        ok = svc.call("POST", f"/runs/{job['run_id']}/batch", token=token,
                      json={"metrics": [{"key": "loss", "value": 1.0, "step": 1}]})  # fmt: skip
        assert ok.status_code in (200, 204), ok.text
        denied = svc.call("POST", f"/runs/{other['run_id']}/batch", token=token,
                          json={"metrics": [{"key": "loss", "value": 1.0}]})  # fmt: skip
        assert denied.status_code == 403
        assert svc.call("POST", "/jobs", token=token, json={"project": "x"}).status_code == 403
        assert svc.call("GET", f"/jobs/{job['id']}", token=token).status_code == 404
        for j in (job, other):
            assert svc.call("DELETE", f"/jobs/{j['id']}").status_code == 200
            assert (
                svc.wait_state(j["id"], {"KILLED"})["reason"].startswith("cancelled by ann") or True
            )
    finally:
        svc.stop()


def test_cancel_marks_job_and_run_killed(tmp_path):
    svc = Service(
        tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"], validate_config=False
    )
    try:
        job = submit(svc, config={}).json()
        svc.wait_state(job["id"], {"RUNNING"})
        assert svc.call("DELETE", f"/jobs/{job['id']}", token="tok-bob").status_code == 404
        r = svc.call("DELETE", f"/jobs/{job['id']}")
        assert r.status_code == 200 and "cancelling" in r.json()["reason"]
        done = svc.wait_state(job["id"], {"KILLED", "FAILED", "FINISHED"}, timeout=30)
        assert done["state"] == "KILLED"
        run = svc.store.get_run(job["run_id"])
        assert run.status.value == "KILLED" and run.end_time
        assert svc.call("DELETE", f"/jobs/{job['id']}").status_code == 409
    finally:
        svc.stop()


def test_failing_payload_records_exit_code_and_stderr(tmp_path):
    code = "import sys; print('bad things', file=sys.stderr); sys.exit(3)"
    svc = Service(tmp_path, [sys.executable, "-c", code], validate_config=False)
    try:
        job = submit(svc, config={}).json()
        done = svc.wait_state(job["id"], {"FAILED", "FINISHED", "LOST"})
        assert done["state"] == "FAILED" and done["exit_code"] == 3
        run = svc.store.get_run(job["run_id"])
        assert run.status.value == "FAILED"
        assert run.failure["exit_code"] == 3 and "bad things" in run.failure["stderr_tail"]
    finally:
        svc.stop()


def test_bad_requests_and_limits(tmp_path):
    svc = Service(
        tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"], validate_config=False
    )
    try:
        cases = [
            ({"resources": {"executor": "local", "cpus": 64}}, 400, "cpus"),
            ({"resources": {"executor": "slurm"}}, 400, "executor"),
            ({"resources": {"executor": "local", "time": "1:00; rm -rf /"}}, 400, "time"),
            ({"resources": {"executor": "local", "memory": "1G"}}, 400, "memory"),
            ({"nonsense": 1}, 400, "nonsense"),
            ({"group": "nuclear"}, 400, "not a member"),
        ]
        for over, status, word in cases:
            r = submit(svc, config={}, **over)
            assert r.status_code == status, (over, r.text)
            assert word in r.json()["message"], (over, r.json())
        first, second = submit(svc, config={}), submit(svc, config={})
        assert first.status_code == second.status_code == 201
        third = submit(svc, config={})
        assert third.status_code == 429
        assert "lqcd" in third.json()["message"] and "2" in third.json()["message"]
        # another group's user sees none of it
        assert svc.call("GET", f"/jobs/{first.json()['id']}", token="tok-bob").status_code == 404
        assert svc.call("GET", "/jobs", token="tok-bob").json()["items"] == []
        assert len(svc.call("GET", "/jobs").json()["items"]) == 2
        options = svc.call("GET", "/jobs/options").json()["groups"]
        assert options["lqcd"]["executors"] == ["local"] and options["lqcd"]["max_jobs"] == 2
        for j in (first.json(), second.json()):
            svc.call("DELETE", f"/jobs/{j['id']}")
    finally:
        svc.stop()


def test_flows_config_is_validated_before_anything_is_created(service):
    r = submit(service, config={**TINY, "L": 7})
    assert r.status_code == 400 and "even L" in r.json()["message"]
    assert service.call("GET", "/jobs").json()["items"] == []


def test_restart_reattaches_running_jobs_and_marks_vanished_ones_lost(tmp_path):
    cmd = [sys.executable, "-c", "import time; time.sleep(4)"]
    first = Service(tmp_path, cmd, validate_config=False)
    job = submit(first, config={}).json()
    doomed = submit(first, config={}).json()
    first.wait_state(job["id"], {"RUNNING"})
    first.wait_state(doomed["id"], {"RUNNING"})
    first.stop()  # the service goes away; its jobs keep running
    pid = int((Path(first.manager.jobs.get_job(doomed["id"]).workdir) / "pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # this one dies with nobody to record an exit code
    second = Service(tmp_path, cmd, validate_config=False)
    try:
        assert (
            second.wait_state(job["id"], {"FINISHED", "FAILED", "LOST"}, 30)["state"] == "FINISHED"
        )
        lost = second.wait_state(doomed["id"], {"FINISHED", "FAILED", "LOST"}, 30)
        assert lost["state"] == "LOST" and "without an exit status" in lost["reason"]
        assert second.store.get_run(doomed["run_id"]).status.value == "LOST"
    finally:
        second.stop()


def test_memory_cap_and_a_raising_payload_with_its_traceback(tmp_path):
    hog = (
        "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"
    )
    raising = (
        "import os; from latticehub.client import start_run\n"
        "with start_run('', run_id=os.environ['LATTICEHUB_RUN_ID'], capture_output=False):\n"
        "    raise ValueError('the action is not bounded below')"
    )
    svc = Service(tmp_path, [sys.executable, "-c", hog], validate_config=False)
    try:
        hungry = submit(svc, config={}, resources={"executor": "local", "mem": "100M"}).json()
        svc.manager.command = [sys.executable, "-c", raising]
        bad = submit(svc, config={}).json()
        oom = svc.wait_state(hungry["id"], {"FAILED", "FINISHED", "KILLED", "LOST"}, timeout=60)
        assert oom["state"] == "FAILED" and oom["reason"].startswith("OUT_OF_MEMORY"), oom
        assert svc.store.get_run(hungry["run_id"]).status.value == "FAILED"
        failed = svc.wait_state(bad["id"], {"FAILED", "FINISHED", "KILLED", "LOST"}, timeout=60)
        assert failed["state"] == "FAILED" and failed["exit_code"] == 1
        run = svc.store.get_run(bad["run_id"])
        assert run.status.value == "FAILED"
        assert run.failure["type"] == "ValueError"
        assert "the action is not bounded below" in run.failure["traceback"]
    finally:
        svc.stop()


def test_a_job_token_stops_speaking_for_a_user_who_left_the_jobs_group(tmp_path, monkeypatch):
    from hub_ext.experiments import access
    from hub_ext.experiments.jobs.store import JobToken

    monkeypatch.setattr(access, "MEMBERSHIP_MAX_AGE_S", 0.0)  # the Hub's answer, not a cache
    monkeypatch.setitem(GROUPS, "ann", ["lqcd"])
    svc = Service(tmp_path, [sys.executable, "-c", "pass"], validate_config=False)
    try:
        job = submit(svc, config={}).json()
        svc.wait_state(job["id"], {"FINISHED", "FAILED"})
        bound = JobToken(token_hash("lhjob_left"), job["id"], job["run_id"], "ann", 2**62)
        svc.manager.jobs.add_token(bound)
        assert svc.call("GET", f"/runs/{job['run_id']}", token="lhjob_left").status_code == 200
        GROUPS["ann"] = ["nuclear"]  # an admin removed ann from lqcd
        r = svc.call("GET", f"/runs/{job['run_id']}", token="lhjob_left")
        assert r.status_code == 401
        assert "no longer a member of group 'lqcd'" in r.json()["message"]
        GROUPS["ann"] = ["lqcd"]  # added back: the token speaks for her again
        assert svc.call("GET", f"/runs/{job['run_id']}", token="lhjob_left").status_code == 200
    finally:
        svc.stop()


def test_token_lookup_skips_the_database_for_other_tokens_not_for_job_tokens(tmp_path):
    from hub_ext.experiments.jobs.store import JobToken

    svc = Service(tmp_path, [sys.executable, "-c", "pass"], validate_config=False)
    try:
        lookups = []
        find = svc.manager.jobs.find_token
        svc.manager.jobs.find_token = lambda digest: lookups.append(digest) or find(digest)
        for _ in range(3):
            assert svc.call("GET", "/jobs").status_code == 200  # a user's own Hub token
        assert lookups == []  # only the service's own (lhjob_) tokens are looked up

        job = submit(svc, config={}).json()
        svc.wait_state(job["id"], {"FINISHED", "FAILED"})
        bound = JobToken(token_hash("lhjob_x"), job["id"], job["run_id"], "ann", 2**62)
        svc.manager.jobs.add_token(bound)
        assert svc.manager.viewer_for_token("lhjob_x").run_id == job["run_id"]
        assert svc.call("GET", f"/runs/{job['run_id']}", token="lhjob_x").status_code == 200
        svc.manager.jobs.revoke_tokens(job["id"])
        # at once: job tokens are never cached
        assert svc.call("GET", f"/runs/{job['run_id']}", token="lhjob_x").status_code == 401
        assert lookups == [token_hash("lhjob_x")] * 3
    finally:
        svc.stop()


def test_the_job_list_filters_by_group_and_refuses_other_groups(tmp_path):
    svc = Service(tmp_path, [sys.executable, "-c", "pass"], validate_config=False)
    try:
        job = submit(svc, config={}).json()
        svc.wait_state(job["id"], {"FINISHED", "FAILED"})
        mine = svc.call("GET", "/jobs", params={"group": "lqcd"}).json()["items"]
        assert [j["id"] for j in mine] == [job["id"]]
        r = svc.call("GET", "/jobs", params={"group": "nuclear"})  # ann is not in nuclear
        assert r.status_code == 403 and "not a member of 'nuclear'" in r.json()["message"]
        theirs = svc.call("GET", "/jobs", token="tok-bob", params={"group": "nuclear"})
        assert theirs.status_code == 200 and theirs.json()["items"] == []
        everyone = svc.call("GET", "/jobs", token="tok-adm", params={"group": "lqcd"})
        assert [j["id"] for j in everyone.json()["items"]] == [job["id"]]
        r = svc.call("GET", "/jobs", params=[("group", "g")] * 501)
        assert r.status_code == 400 and "at most 500 groups" in r.json()["message"]
    finally:
        svc.stop()
