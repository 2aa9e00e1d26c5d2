"""Attacks on the JOBS boundary, as ordinary users (and their jobs) against the real stack.

A job runs code its user chose, so everything a job can touch is attack surface: its
config, its data, its container, its credential. Each attack goes through the real Hub,
proxy and experiments service (``docker`` executor on the real engine) and must be refused
or harmless:

- host paths as data (``forward_kl_data``: absolute, relative, ``../``, a plain name, a file
  planted in /tmp, ``/etc/shadow``) are refused with 400 naming ``run:<run id>/<artifact
  path>``, and nothing is created; references to another group's data answer 404;
- a pickle with code, passed by reference, fails the job ("never loaded") and its code
  never runs, neither in the container nor on the host (the job runs the ``flows`` of its
  group's image: an image older than the refusal runs the code); tensors passed the same
  way are read (the positive control);
- the job's container runs as uid 1000 without privileges, with the job's limits and its
  one directory mounted, and nothing of the service's environment reaches its processes;
- the job's token, in every spelling the Hub accepts, writes only its run, reads only its
  project, submits nothing, is worth nothing at the Hub, and dies with its job;
- the service's own Hub token (read from its process, as root on the host can) holds no
  ``tokens`` or admin scope and cannot mint tokens;
- the ``local`` executor (jobs as the service's account) cannot be reached.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
import torch

from hub_ext.experiments.jobs.docker_states import HUB as JOB_HUB_LABEL
from hub_ext.experiments.jobs.docker_states import JOB as JOB_ID_LABEL
from tests.security.conftest import Stack, start_stack

TINY = {"L": 4, "n_layers": 2, "hidden": [4], "batch_size": 16, "steps": 10, "log_every": 5,
        "eval_samples": 300, "device": "cpu"}  # fmt: skip
#: Trains far longer than any test waits: the job is inspected while it runs, then cancelled.
LONG = {**TINY, "steps": 100_000, "log_every": 50}
DOCKER = {"executor": "docker", "cpus": 1, "mem": "1G", "time": 3}
#: Job states that are over.
ENDED = {"FINISHED", "FAILED", "KILLED", "LOST"}
#: The reference forms every refusal of a host path names.
REFERENCE = "run:<run id>/<artifact path>"
#: Variables that may hold the same value in a job and in the service (nothing secret).
HARMLESS = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "SHLVL", "TZ", "SHELL"}


# -- helpers ---------------------------------------------------------------------------------
class _Planted:
    """Unpickling this runs a shell command, as a hostile "samples" file would."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def submit(stack: Stack, user: str, project: str, config: dict, resources: dict = DOCKER):
    """POST /jobs as ``user`` (the project is created in lqcd or eve's nuclear if missing)."""
    group = "nuclear" if user == "eve" else "lqcd"
    body = {"project": project, "group": group, "config": config, "resources": resources}
    return stack.call(user, "POST", "/jobs", json=body)


def wait_job(stack: Stack, user: str, job_id: str, until: set[str], timeout: float = 180) -> dict:
    """Poll the job (bounded) until its state is in ``until``."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        r = stack.call(user, "GET", f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not in {sorted(until)} after {timeout}s: {job}")


def job_dir(stack: Stack, job_id: str) -> Path:
    """The job's directory on the host (the Hub's state directory holds the jobs)."""
    return Path(stack.hub.workdir) / "jobs" / job_id


def job_token(stack: Stack, job_id: str) -> str:
    """The job's token, read from its environment file as code inside the job would."""
    for line in (job_dir(stack, job_id) / "job.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "LATTICEHUB_TOKEN":
            return shlex.split(value)[0]
    raise AssertionError(f"no LATTICEHUB_TOKEN in job {job_id}'s job.env")


def read(path: Path) -> str:
    """A file's text, or "" when it is not there."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def environ(pid: int | str) -> dict[str, str]:
    """A process's environment from /proc (the tests run as root)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def uids(pid: int | str) -> list[int]:
    """Real, effective, saved and filesystem uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def service_environ(stack: Stack) -> dict[str, str]:
    """The environment of this stack's experiments service process (found by its port)."""
    port = stack.hub.env["LATTICEHUB_EXPERIMENTS_PORT"]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"hub_ext.experiments" not in (entry / "cmdline").read_bytes():
                continue
            env = environ(entry.name)
        except OSError:
            continue
        if env.get("JUPYTERHUB_SERVICE_URL", "").rstrip("/").endswith(f":{port}"):
            return env
    raise AssertionError(f"no experiments service process on port {port}")


def listing(stack: Stack, user: str) -> tuple[list, list, list]:
    """What ``user`` sees: job ids, run ids, project names."""
    jobs = stack.call(user, "GET", "/jobs").json()["items"]
    runs = stack.call(user, "GET", "/runs").json()["items"]
    projects = stack.call(user, "GET", "/projects").json()["items"]
    return [j["id"] for j in jobs], [r["id"] for r in runs], sorted(p["name"] for p in projects)


def new_run(stack: Stack, user: str, project: str, group: str | None = "lqcd") -> tuple[int, str]:
    """A project (made if missing) and a new run in it: ``(project id, run id)``."""
    r = stack.call(user, "POST", "/projects", json={"name": project, "group": group})
    assert r.status_code in (200, 201), r.text
    pid = r.json()["id"]
    r = stack.call(user, "POST", "/runs", json={"project": pid})
    assert r.status_code == 201, r.text
    return pid, r.json()["id"]


def upload(stack: Stack, user: str, run_id: str, path: str, data: bytes) -> None:
    """PUT a run's artifact."""
    r = stack.call(user, "PUT", f"/runs/{run_id}/artifacts/{path}", data=data)
    assert r.status_code == 201, r.text


@pytest.fixture
def jobs_stack(make_hub, docker_client) -> Iterator[Stack]:
    """A fresh real stack; afterwards its job containers are removed (they carry the job labels,
    not the spawner's, so the docker tier's cleanup would leave them)."""
    hub_id = f"j{secrets.token_hex(4)}"
    yield start_stack(make_hub(hub_id=hub_id))
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{JOB_HUB_LABEL}={hub_id}"}
    ):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def start_long_job(stack: Stack, docker_client, user: str, project: str):
    """Submit a long training job and wait until it trains: ``(job, its container)``."""
    r = submit(stack, user, project, LONG)
    assert r.status_code == 201, r.text
    job = wait_job(stack, user, r.json()["id"], {"RUNNING", *ENDED})
    assert job["state"] == "RUNNING", (job, stack.hub.tail())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = docker_client.containers.list(filters={"label": f"{JOB_ID_LABEL}={job['id']}"})
        if found and any("flows.train" in " ".join(p) for p in found[0].top()["Processes"]):
            return job, found[0]
        time.sleep(0.5)
    stderr = read(job_dir(stack, job["id"]) / "stderr.log")
    raise AssertionError(f"job {job['id']} never ran flows.train: {stderr[-2000:]}")


def cancel(stack: Stack, user: str, job_id: str) -> dict:
    """DELETE the job and wait until it has ended."""
    r = stack.call(user, "DELETE", f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return wait_job(stack, user, job_id, ENDED, timeout=90)


# -- 1. host paths and foreign references as data ------------------------------------------
def test_host_paths_as_job_data_are_refused_and_create_nothing(jobs_stack):
    stack = jobs_stack
    _, mallory_run = new_run(stack, "mallory", "mallory-data")
    _, ann_run = new_run(stack, "ann", "ann-data")
    upload(stack, "ann", ann_run, "samples.pt", b"ann's samples")
    # a world-readable "samples" file planted where the service's host would find it
    planted = Path("/tmp") / f"lh-planted-{secrets.token_hex(4)}.pt"
    marker = Path("/tmp") / f"lh-pwned-{secrets.token_hex(4)}"
    buf = io.BytesIO()
    torch.save({"configs": _Planted(f"mkdir {marker}")}, buf)
    planted.write_bytes(buf.getvalue())
    planted.chmod(0o644)
    try:
        before = listing(stack, "mallory")
        paths = [str(planted), "../../x.pt", "x.pt", "/etc/shadow", "./x.pt", "~/x.pt",
                 "file:///etc/shadow", f"run:{mallory_run}/../../../etc/shadow",
                 f"run:{mallory_run}//etc/shadow"]  # fmt: skip
        for value in paths:
            # a project that does not exist yet: a refused job must not leave one behind
            r = submit(stack, "mallory", "mallory-new", {**TINY, "forward_kl_data": value})
            assert r.status_code == 400, (value, r.status_code, r.text)
            assert REFERENCE in r.json()["message"], (value, r.text)
        r = submit(stack, "mallory", "mallory-new", {**TINY, "forward_kl_data": ["/etc/shadow"]})
        assert r.status_code == 400 and "forward_kl_data" in r.json()["message"], r.text

        # another group's data by reference: not found (its existence not shown)
        for value in (f"run:{ann_run}/samples.pt", f"run:{ann_run}/missing.pt"):
            r = submit(stack, "eve", "eve-new", {**TINY, "forward_kl_data": value})
            assert r.status_code == 404, (value, r.status_code, r.text)
        assert stack.call("eve", "GET", "/jobs").json()["items"] == []
        assert stack.call("eve", "GET", "/runs").json()["items"] == []

        after = listing(stack, "mallory")
        assert after[0] == before[0], "a refused job was created"
        assert after[1] == before[1], "a refused job created a run"
        assert not marker.exists()
        assert not list((Path(stack.hub.workdir) / "jobs").glob("*/config.json"))
        # nothing at all: not even the project the refused submission named
        assert after[2] == before[2], f"a refused job created a project: {after[2]}"
        assert stack.call("eve", "GET", "/projects").json()["items"] == []
    finally:
        planted.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            marker.rmdir()


# -- 2. a pickle with code, by reference ---------------------------------------------------
def test_pickle_with_code_by_reference_fails_the_job_and_never_runs(jobs_stack):
    stack = jobs_stack
    _, run_id = new_run(stack, "mallory", "mallory-evil")
    host_marker = Path("/tmp") / f"lh-pwned-host-{secrets.token_hex(4)}"
    buf = io.BytesIO()
    # inside the container /job is the job's directory; on the host the second path counts
    torch.save({"configs": _Planted(f"mkdir /job/pwned; mkdir {host_marker}")}, buf)
    upload(stack, "mallory", run_id, "evil.pt", buf.getvalue())
    try:
        r = submit(
            stack, "mallory", "mallory-evil", {**TINY, "forward_kl_data": f"run:{run_id}/evil.pt"}
        )
        assert r.status_code == 201, r.text
        job = wait_job(stack, "mallory", r.json()["id"], ENDED)
        work = job_dir(stack, job["id"])
        stderr = read(work / "stderr.log")
        assert job["state"] == "FAILED", (job, stderr[-2000:])
        assert not (work / "pwned").exists(), "the pickle's code ran in the job"
        assert not host_marker.exists(), "the pickle's code ran on the host"
        # the copy the job read is the uploaded file, inside the job's own directory
        assert (work / "inputs" / "forward_kl_data.pt").read_bytes() == buf.getvalue()
        # ... and it failed because the file was refused, not for some other reason
        assert "never loaded" in stderr, stderr[-2000:]
        run = stack.call("mallory", "GET", f"/runs/{job['run_id']}").json()
        assert run["status"] == "FAILED", run
        assert "never loaded" in str(run["failure"]), run["failure"]
    finally:
        with contextlib.suppress(OSError):
            host_marker.rmdir()


def test_tensor_samples_by_reference_are_read(jobs_stack):
    """The positive control of the two tests above: references are the way data gets in."""
    stack = jobs_stack
    _, run_id = new_run(stack, "mallory", "mallory-data")
    good = io.BytesIO()
    torch.save({"configs": torch.randn(64, 4, 4)}, good)
    upload(stack, "mallory", run_id, "good.pt", good.getvalue())
    config = {**TINY, "forward_kl_data": f"run:{run_id}/good.pt"}
    r = submit(stack, "mallory", "mallory-data", config)
    assert r.status_code == 201, r.text
    job = wait_job(stack, "mallory", r.json()["id"], ENDED)
    stderr = read(job_dir(stack, job["id"]) / "stderr.log")
    assert job["state"] == "FINISHED", (job, stderr[-2000:])
    assert (job_dir(stack, job["id"]) / "inputs" / "forward_kl_data.pt").read_bytes() == (
        good.getvalue()
    )


# -- 3. the job's container and environment --------------------------------------------------
def test_docker_job_runs_unprivileged_with_nothing_of_the_service(jobs_stack, docker_client):
    stack = jobs_stack
    job, container = start_long_job(stack, docker_client, "mallory", "mallory-long")
    try:
        attrs = container.attrs
        host = attrs["HostConfig"]
        assert attrs["Config"]["User"].split(":")[0] == "1000", attrs["Config"]["User"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert "no-new-privileges" in " ".join(host.get("SecurityOpt") or [])
        assert host["ReadonlyRootfs"] is True
        assert host["PidsLimit"] and host["PidsLimit"] > 0
        assert host["Memory"] == 1024 * 2**20 and host["MemorySwap"] == 1024 * 2**20
        assert host["NanoCpus"] == 10**9
        assert host["NetworkMode"] == stack.hub.env["LATTICEHUB_NETWORK"]
        assert host.get("PidMode", "") in ("", "private") and host.get("IpcMode") != "host"
        assert not host.get("Binds") and not host.get("Devices") and not host.get("VolumesFrom")
        mounts = attrs["Mounts"]
        assert [(m["Type"], m["Source"], m["Destination"]) for m in mounts] == [
            ("bind", str(job_dir(stack, job["id"])), "/job")
        ], mounts
        assert "docker.sock" not in str(attrs), "the engine's socket reaches the job"

        service = service_environ(stack)
        secret = service["JUPYTERHUB_API_TOKEN"]
        config_env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
        assert not {"LATTICEHUB_TOKEN", "JUPYTERHUB_API_TOKEN"} & set(config_env), config_env
        top = container.top()
        pids = [row[top["Titles"].index("PID")] for row in top["Processes"]]
        seen_token = False
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                env, ids = environ(pid), uids(pid)
                assert set(ids) == {1000}, (pid, ids)
                leaked = {k for k in env if k.startswith(("JUPYTERHUB_", "JPY_", "CONFIGPROXY_"))}
                leaked |= {"LATTICEHUB_TRACKING_DB", "LATTICEHUB_ARTIFACT_DIR"} & set(env)
                assert not leaked, (pid, sorted(leaked))
                assert secret not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
                same = {k for k, v in env.items() if service.get(k) == v} - HARMLESS
                assert not same, (pid, sorted(same))
                if env.get("LATTICEHUB_RUN_ID") == job["run_id"]:
                    seen_token = env["LATTICEHUB_TOKEN"].startswith("lhjob_")
        assert seen_token, "no process of the job holds its own job token"
    finally:
        ended = cancel(stack, "mallory", job["id"])
    assert ended["state"] == "KILLED", ended


# -- 4. the job's token, in every spelling ---------------------------------------------------
def spellings(token: str) -> dict[str, dict]:
    """Ways to present a token that the Hub accepts: request keyword arguments by name."""
    websocket = {"Sec-Fetch-Mode": "websocket"}
    return {
        "token<TAB>": {"headers": {"Authorization": f"token\t{token}"}},
        "TOKEN": {"headers": {"Authorization": f"TOKEN {token}"}},
        "Bearer<3 spaces>": {"headers": {"Authorization": f"Bearer   {token}"}},
        "?token= (websocket)": {"headers": websocket, "params": {"token": token}},
    }


def test_job_token_in_every_spelling_stays_inside_its_run(jobs_stack, docker_client):
    stack = jobs_stack
    ann_other_pid, ann_other_run = new_run(stack, "ann", "ann-lqcd")
    eve_pid, _ = new_run(stack, "eve", "eve-nuclear", group="nuclear")
    private_pid, private_run = new_run(stack, "mallory", "mallory-private", group=None)
    job, _ = start_long_job(stack, docker_client, "mallory", "mallory-long")
    own_pid = stack.call("mallory", "GET", f"/runs/{job['run_id']}").json()["project_id"]
    r = stack.call("ann", "POST", "/runs", json={"project": own_pid})  # ann's run, same project
    assert r.status_code == 201, r.text
    ann_same_run = r.json()["id"]
    token = job_token(stack, job["id"])
    assert token.startswith("lhjob_")
    base, hub = stack.experiments, stack.hub.api
    batch = {"metrics": [{"key": "probe", "value": 1.0, "step": 1}]}
    columns = {"metrics": [{"key": "probe", "steps": [1], "values": [1.0]}]}
    body = {"project": "mallory-long", "group": "lqcd", "config": TINY, "resources": DOCKER}
    listed: dict[str, list] = {}
    try:
        for name, kw in spellings(token).items():

            def call(method: str, url: str, _kw=kw, **more) -> requests.Response:
                return requests.request(method, url, timeout=30, **_kw, **more)

            expect = [  # (method, url, json, allowed statuses)
                ("POST", f"{base}/jobs", body, {401, 403}),
                ("POST", f"{base}/runs", {"project": own_pid}, {403}),
                ("POST", f"{base}/runs/{ann_same_run}/batch", batch, {403, 404}),
                ("POST", f"{base}/runs/{ann_other_run}/batch", batch, {403, 404}),
                ("POST", f"{base}/runs/{ann_other_run}/metrics", columns, {403, 404}),
                ("GET", f"{base}/runs/{ann_other_run}/history/probe", None, {404}),
                ("GET", f"{base}/projects/{ann_other_pid}", None, {404}),
                ("GET", f"{base}/projects/{eve_pid}", None, {404}),
                ("GET", f"{base}/projects/{private_pid}", None, {404}),
                ("DELETE", f"{base}/jobs/{job['id']}", None, {403, 404}),
                ("POST", f"{base}/jobs/{job['id']}/resubmit", None, {403, 404}),
                ("GET", f"{hub}/user", None, {401, 403}),
                ("POST", f"{hub}/users/ann/tokens", {}, {401, 403}),
                ("POST", f"{hub}/users/mallory/tokens", {}, {401, 403}),
            ]
            for method, url, payload, allowed in expect:
                r = call(method, url, json=payload)
                assert r.status_code in allowed, (name, method, url, r.status_code, r.text[:300])
            # positive control: this spelling is recognised, and writes its own run
            r = call("POST", f"{base}/runs/{job['run_id']}/batch", json=batch)
            assert r.status_code == 200, (name, r.status_code, r.text)
            r = call("GET", f"{base}/runs")
            listed[name] = [run["id"] for run in r.json().get("items", [])]
            # the run table answers the same search: the same runs, no more
            r = call("GET", f"{base}/runs/columns")
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            assert sorted(r.json()["columns"]["run_id"]) == sorted(listed[name]), name
        r = stack.call("ann", "GET", f"/runs/{ann_same_run}")
        assert r.json()["metrics"] == {}, "a job token wrote another user's run"
        assert len(stack.call("mallory", "GET", "/jobs").json()["items"]) == 1
    finally:
        ended = cancel(stack, "mallory", job["id"])
    assert ended["state"] == "KILLED", ended
    # revoked with its job, in every spelling
    for name, kw in spellings(token).items():
        r = requests.get(f"{base}/runs/{job['run_id']}", timeout=30, **kw)
        assert r.status_code == 401, (name, r.status_code, r.text)
    # a job token lists the runs of its own project only, never its user's other projects
    for name, ids in listed.items():
        assert private_run not in ids, f"{name}: the job token lists mallory's private run"
        assert ann_other_run not in ids, f"{name}: the job token lists another project's run"


def test_job_token_of_a_user_removed_from_the_group_is_refused_within_5_s(
    jobs_stack, docker_client
):
    """The token speaks for its user no longer than the user belongs to the job's group."""
    stack = jobs_stack
    job, _ = start_long_job(stack, docker_client, "mallory", "mallory-leaves")
    token = job_token(stack, job["id"])
    url = f"{stack.experiments}/runs/{job['run_id']}/batch"
    batch = {"metrics": [{"key": "after", "value": 1.0, "step": 1}]}
    headers = {"Authorization": f"token {token}"}
    try:
        r = requests.post(url, json=batch, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        r = stack.hub.request("DELETE", "/groups/lqcd/users", json={"users": ["mallory"]})
        assert r.status_code == 200, r.text
        removed = time.monotonic()
        while True:
            r = requests.post(url, json=batch, headers=headers, timeout=30)
            if r.status_code == 401 or time.monotonic() - removed > 10:
                break
            time.sleep(0.25)
        took = time.monotonic() - removed
        assert r.status_code == 401, (r.status_code, r.text)
        assert took <= 6.0, f"refused only after {took:.1f} s"
        assert "no longer a member of group 'lqcd'" in r.json()["message"]
    finally:
        stack.hub.request("POST", "/groups/lqcd/users", json={"users": ["mallory"]})
        cancel(stack, "mallory", job["id"])


# -- 5. the service's own Hub token ------------------------------------------------------------
def test_service_hub_token_cannot_mint_or_administer(jobs_stack):
    stack = jobs_stack
    token = service_environ(stack)["JUPYTERHUB_API_TOKEN"]
    headers = {"Authorization": f"token {token}"}
    me = requests.get(f"{stack.hub.api}/user", headers=headers, timeout=30)
    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "service" and me.json()["name"] == "experiments"
    scopes = me.json()["scopes"]
    bad = [s for s in scopes if s.split("!")[0] in ("tokens", "read:tokens") or "admin" in s]
    assert not bad, scopes
    for method, path in [("POST", "/users/ann/tokens"), ("GET", "/users/ann/tokens"),
                         ("POST", "/users/eve/tokens"), ("POST", "/users")]:  # fmt: skip
        r = requests.request(method, f"{stack.hub.api}{path}", headers=headers, json={}, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code, r.text)


# -- 6. the local executor ------------------------------------------------------------------
ROOT_REFUSAL = "the local executor runs jobs as the service's own account"


@pytest.mark.parametrize("setup", ["group-not-allowed", "service-off", "service-as-root"])
def test_local_executor_is_refused(make_hub, setup):
    hub = make_hub()
    if setup == "service-off":  # the group's limits allow it; the service does not offer it
        hub.env["LATTICEHUB_JOB_LIMITS"] = '{"*": {"executors": ["local"]}}'
    elif setup == "service-as-root":  # configured, with the service running as root
        hub.env["LATTICEHUB_JOB_LIMITS"] = '{"*": {"executors": ["local"]}}'
        hub.env["LATTICEHUB_EXECUTORS"] = "local"
    if setup == "service-as-root":
        with contextlib.suppress(RuntimeError):  # the Hub stops when its service cannot start
            hub.start()
        deadline = time.monotonic() + 90
        while ROOT_REFUSAL not in read(hub.log_path) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ROOT_REFUSAL in read(hub.log_path), hub.tail()
        if hub.proc.poll() is None:  # still up: no job of any user runs on the local executor
            hub.create_users(["mallory"])
            hub.create_group("lqcd", ["mallory"])
            body = {"project": "p", "group": "lqcd", "config": TINY,
                    "resources": {"executor": "local"}}  # fmt: skip
            headers = {"Authorization": f"token {hub.user_token('mallory')}"}
            r = requests.post(f"{hub.experiments}/jobs", json=body, headers=headers, timeout=30)
            assert r.status_code != 201, r.text
        return
    stack = start_stack(hub)
    before = listing(stack, "mallory")
    r = submit(stack, "mallory", "mallory-local", TINY, {"executor": "local"})
    if setup == "group-not-allowed":
        assert r.status_code == 400, r.text
    else:
        assert r.status_code == 503, r.text
        assert "['docker']" in r.json()["message"], r.text
    assert "docker" in r.json()["message"] and "local" in r.json()["message"], r.text
    assert listing(stack, "mallory")[:2] == before[:2]
