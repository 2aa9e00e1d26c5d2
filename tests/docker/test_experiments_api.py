"""The experiments service behind a real Hub: tokens, group isolation, bad input."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.docker]


class Client:
    def __init__(self, base: str, token: str | None):
        self.base = base
        self.headers = {"Authorization": f"token {token}"} if token else {}

    def __call__(self, method: str, path: str, headers=None, **kwargs) -> requests.Response:
        headers = {**self.headers, **(headers or {})}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture
def hub(make_hub):
    hub = make_hub().start()
    hub.create_users(["ann", "bob", "root2"])
    hub.create_group("lqcd", ["ann"])
    hub.create_group("nuclear", ["bob"])
    hub.wait_experiments()
    return hub


def test_group_isolation_and_explicit_sharing(hub):
    ann = Client(hub.experiments, hub.user_token("ann"))
    bob = Client(hub.experiments, hub.user_token("bob"))
    # a notebook server's token: only access to the service, groups looked up by the service
    ann_nb = Client(
        hub.experiments,
        hub.user_token("ann", scopes=["access:services!service=experiments"]),
    )

    r = ann("POST", "/projects", json={"name": "phi4-L8", "group": "lqcd"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = ann("POST", "/projects", json={"name": "sneaky", "group": "nuclear"})
    assert r.status_code == 400 and "not a member" in r.json()["message"]

    r = ann("POST", "/runs", json={"project": pid, "name": "r1", "params": {"lr": 0.01}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    batch = {"metrics": [{"key": "loss", "value": 0.5, "step": 1}], "tags": {"k": "v"}}
    assert ann("POST", f"/runs/{run_id}/batch", json=batch).status_code == 200
    r = ann("POST", f"/runs/{run_id}/logs/stdout", json={"offset": 0, "lines": ["hello"]})
    assert r.json() == {"next_offset": 1}

    # the notebook token sees the group's project through the group lookup
    assert [p["name"] for p in ann_nb("GET", "/projects").json()["items"]] == ["phi4-L8"]
    r = ann_nb("GET", "/runs", params={"filter": "metrics.loss < 1 and params.lr = '0.01'"})
    assert [x["id"] for x in r.json()["items"]] == [run_id]

    # bob (another group) sees nothing and cannot write
    assert bob("GET", "/projects").json()["items"] == []
    assert bob("GET", f"/projects/{pid}").status_code == 404
    assert bob("GET", f"/runs/{run_id}").status_code == 404
    assert bob("GET", f"/runs/{run_id}/logs/stdout").status_code == 404
    assert bob("GET", f"/runs/{run_id}/metrics/loss").status_code == 404
    assert bob("POST", f"/runs/{run_id}/batch", json=batch).status_code == 404
    assert bob("POST", "/runs", json={"project": pid}).status_code == 404
    assert bob("GET", "/runs", params={"project": pid}).json()["items"] == []

    # an explicit share gives bob's group read access, not write access
    assert ann("PUT", f"/projects/{pid}/shares/nuclear").status_code == 200
    assert bob("GET", f"/runs/{run_id}").json()["metrics"]["loss"]["value"] == 0.5
    r = bob("POST", f"/runs/{run_id}/batch", json=batch)
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    assert bob("PUT", f"/projects/{pid}/shares/nuclear").status_code == 403
    assert ann("DELETE", f"/projects/{pid}/shares/nuclear").status_code == 200
    assert bob("GET", f"/runs/{run_id}").status_code == 404


def test_bad_input_gets_clear_4xx_and_stores_nothing(hub):
    ann = Client(hub.experiments, hub.user_token("ann"))
    anonymous = Client(hub.experiments, None)
    assert anonymous("GET", "/projects").status_code in (401, 403)
    pid = ann("POST", "/projects", json={"name": "p", "group": "lqcd"}).json()["id"]
    run_id = ann("POST", "/runs", json={"project": pid}).json()["id"]

    cases = [
        ("POST", "/projects", b"{not json", 400, "Malformed JSON"),
        ("POST", "/projects", b"[1, 2]", 400, "must be an object"),
        ("POST", "/projects", b'{"name": "x", "colour": "red"}', 400, "unknown field"),
        ("POST", f"/runs/{run_id}/batch", b'{"metrics": [{"key": "a", "value": NaN}]}', 400,
         "NaN"),
        ("POST", f"/runs/{run_id}/batch", b'{"metrics": [{"key": "a", "value": "1"}]}', 400,
         "must be a number"),
        ("POST", f"/runs/{run_id}/batch", b'{"metrics": [{"key": "../x", "value": 1}]}', 400,
         "Invalid metric name"),
        ("POST", f"/runs/{run_id}/batch",
         b'{"metrics": [{"key": "ok", "value": 1}], "params": {"p": [1]}}', 400,
         "must be a string or a number"),
        ("GET", "/runs?filter=metrics.loss%20%3D%3D%201", None, 400, "Invalid filter"),
        ("GET", "/runs?max_results=0", None, 400, "max_results"),
        ("POST", f"/runs/{run_id}/logs/stdout", b'{"offset": 5, "lines": ["x"]}', 400,
         "send lines from offset 0"),
        ("GET", "/runs/" + "0" * 32, None, 404, "does not exist"),
    ]  # fmt: skip
    for method, path, body, status, fragment in cases:
        r = ann(method, path, data=body)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert fragment in r.json()["message"], (path, body, r.text)
        assert "error_code" in r.json()
    run = ann("GET", f"/runs/{run_id}").json()
    assert run["metrics"] == {} and run["params"] == {}
    assert ann("GET", f"/runs/{run_id}/logs/stdout").json()["items"] == []


def test_artifacts_upload_download_list_and_isolation(hub):
    import hashlib

    ann = Client(hub.experiments, hub.user_token("ann"))
    bob = Client(hub.experiments, hub.user_token("bob"))
    pid = ann("POST", "/projects", json={"name": "arts", "group": "lqcd"}).json()["id"]
    run_id = ann("POST", "/runs", json={"project": pid}).json()["id"]
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256(data).hexdigest()
    r = ann("PUT", f"/runs/{run_id}/artifacts/model/flow.pt", data=data,
            headers={"X-Content-SHA256": digest})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == digest and r.json()["size"] == len(data)
    r = ann("GET", f"/runs/{run_id}/artifacts/model/flow.pt")
    assert r.status_code == 200 and r.content == data
    assert [a["path"] for a in ann("GET", f"/runs/{run_id}/artifacts").json()["items"]] == [
        "model/flow.pt"
    ]
    # corrupt upload, traversal, other group
    r = ann("PUT", f"/runs/{run_id}/artifacts/x.bin", data=b"abc",
            headers={"X-Content-SHA256": "0" * 64})  # fmt: skip
    assert r.status_code == 400 and "corrupt" in r.json()["message"]
    r = ann("PUT", f"/runs/{run_id}/artifacts/a/%2E%2E/%2E%2E/x", data=b"abc")
    assert r.status_code in (400, 404)
    assert bob("GET", f"/runs/{run_id}/artifacts/model/flow.pt").status_code == 404
    assert bob("PUT", f"/runs/{run_id}/artifacts/evil", data=b"x").status_code == 404
    names = [a["path"] for a in ann("GET", f"/runs/{run_id}/artifacts").json()["items"]]
    assert names == ["model/flow.pt"]


def test_browser_logs_in_through_hub_oauth_and_admin_sees_all(make_hub):
    import re

    hub = make_hub('c.Authenticator.admin_users = {"boss"}').start()
    hub.create_users(["ann", "bob", "boss"])
    hub.wait_experiments()
    ann = Client(hub.experiments, hub.user_token("ann"))
    ann("POST", "/projects", json={"name": "ann-private", "group": None})
    # a browser session: Hub login, then the service sends it through OAuth and back
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    login = session.post(
        f"{hub.url}/hub/login?next=",
        data={"username": "bob", "password": "x", "_xsrf": xsrf},
        timeout=30,
        allow_redirects=False,
    )
    assert login.status_code == 302, login.text
    r = session.get(f"{hub.experiments}/projects", headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.url, r.text[:300])
    assert "/oauth_callback" in " ".join(h.url for h in r.history)
    assert r.json()["items"] == []  # bob sees nothing of ann's

    # an admin sees every project
    boss = Client(hub.experiments, hub.user_token("boss"))
    names = [p["name"] for p in boss("GET", "/projects").json()["items"]]
    assert "ann-private" in names


def test_docker_job_behind_the_real_hub_with_a_service_issued_token(hub):
    """The job runs in a container and holds the service's own token, which the Hub never knew."""
    import time
    from pathlib import Path

    ann = Client(hub.experiments, hub.user_token("ann"))
    bob = Client(hub.experiments, hub.user_token("bob"))
    config = {"L": 4, "n_layers": 2, "hidden": [4], "batch_size": 16, "steps": 10,
              "log_every": 5, "eval_samples": 300, "device": "cpu"}  # fmt: skip
    body = {"project": "hub-jobs", "group": "lqcd", "config": config,
            "resources": {"executor": "docker", "cpus": 1, "time": 10}}  # fmt: skip
    r = ann("POST", "/jobs", json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert bob("GET", f"/jobs/{job['id']}").status_code == 404
    env_file = Path(hub.workdir) / "jobs" / job["id"] / "job.env"
    token = next(
        line.split("=", 1)[1].strip("'")
        for line in env_file.read_text().splitlines()
        if line.startswith("LATTICEHUB_TOKEN=")
    )
    # not a Hub token: worth nothing at the Hub, in any spelling
    for header in (f"token {token}", f"token\t{token}", f"Bearer {token}"):
        me = requests.get(f"{hub.api}/user", headers={"Authorization": header}, timeout=10)
        assert me.status_code in (401, 403), me.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = ann("GET", f"/jobs/{job['id']}").json()
        if state["state"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.5)
    assert state["state"] == "FINISHED", state
    run = ann("GET", f"/runs/{job['run_id']}").json()
    assert run["status"] == "FINISHED" and "loss" in run["metrics"]
    # revoked in the service when the job ended
    gone = requests.get(
        f"{hub.experiments}/runs/{job['run_id']}",
        headers={"Authorization": f"token {token}"},
        timeout=10,
    )
    assert gone.status_code == 401, gone.text
