"""Shares, ownership, membership and names through the real app in-process (stand-in Hub).

The tenant-boundary issue, section 3: a share is read access; an owner who leaves the group
loses access; managers and admins give projects away; names are unique per group and a name
used by another group tells nothing. tests/security repeats the attacks on the real stack.
"""

from __future__ import annotations

import time

import pytest
import requests

from hub_ext.experiments.access import MEMBERSHIP_MAX_AGE_S
from tests.service.fakehub import serve

USERS = {
    "ann": {"groups": {"lqcd"}},
    "bob": {"groups": {"lqcd"}},
    "eve": {"groups": {"nuclear"}},
    # manages lqcd (the Hub scope the lqcd-manager role gives) and belongs to it
    "mia": {"groups": {"lqcd"}, "scopes": ["groups!group=lqcd", "read:groups!group=lqcd"]},
    # manages nuclear only
    "nick": {"groups": {"lqcd"}, "scopes": ["groups!group=nuclear"]},
    "carl": {"groups": {"theory"}},
    "root": {"admin": True, "groups": set()},
}


@pytest.fixture
def svc(tmp_path):
    users = {name: {**spec, "groups": set(spec["groups"])} for name, spec in USERS.items()}
    with serve(tmp_path, users) as service:
        yield service


def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code, response.text
    return response.json()["message"]


def lqcd_project(svc, name: str = "flows") -> tuple[int, str]:
    """ann's project in lqcd with a run that logged, uploaded and registered a version."""
    pid = ok(svc.call("ann", "POST", "/projects", json={"name": name, "group": "lqcd"}), 201)["id"]
    run = ok(svc.call("ann", "POST", "/runs", json={"project": pid}), 201)["id"]
    ok(svc.call("ann", "POST", f"/runs/{run}/batch",
                json={"metrics": [{"key": "loss", "value": 0.5, "step": 1}]}))  # fmt: skip
    ok(svc.call("ann", "POST", f"/runs/{run}/logs/stdout", json={"offset": 0, "lines": ["hi"]}))
    ok(svc.call("ann", "PUT", f"/runs/{run}/artifacts/m.pt", data=b"weights"), 201)
    body = {"name": "flow", "run_id": run, "path": "m.pt", "aliases": ["best"]}
    ok(svc.call("ann", "POST", f"/projects/{pid}/artifacts", json=body), 201)
    return pid, run


# -- a share is read access ----------------------------------------------------------------
def test_a_share_lets_the_other_group_read_and_nothing_more(svc):
    pid, run = lqcd_project(svc)
    arts = f"/projects/{pid}/artifacts"
    ok(svc.call("ann", "PUT", f"/projects/{pid}/shares/nuclear"))
    # eve reads runs, metrics, logs, artifacts, versions, files and streams
    assert ok(svc.call("eve", "GET", f"/projects/{pid}"))["shared_with"] == ["nuclear"]
    assert ok(svc.call("eve", "GET", f"/runs/{run}"))["metrics"]["loss"]["value"] == 0.5
    assert ok(svc.call("eve", "GET", f"/runs/{run}/logs/stdout"))["items"][0]["text"] == "hi"
    assert ok(svc.call("eve", "GET", f"{arts}/flow/best"))["version"] == 1
    assert svc.call("eve", "GET", f"{arts}/flow/v1/file").content == b"weights"
    assert ok(svc.call("eve", "GET", f"/runs/{run}/updates", params={"wait": 0}))["run"]["id"]
    # ... and writes nothing
    # (the message of POST /runs is handlers/runs.py's; MLflow's below names the share)
    refused(svc.call("eve", "POST", "/runs", json={"project": pid}), 403, "PERMISSION_DENIED")
    refused(svc.call("eve", "POST", "/runs", json={"project": "flows"}), 403, "PERMISSION_DENIED")
    body = {"name": "flow", "run_id": run, "path": "m.pt"}
    refused(svc.call("eve", "POST", arts, json=body), 403, "PERMISSION_DENIED")
    message = refused(svc.call("eve", "PUT", f"{arts}/flow/aliases/best", json={"version": 1}),
                      403, "PERMISSION_DENIED")  # fmt: skip
    assert "a share gives read access only" in message
    refused(svc.call("eve", "DELETE", f"{arts}/flow/aliases/best"), 403, "PERMISSION_DENIED")
    refused(svc.call("eve", "DELETE", f"{arts}/flow/v1"), 403, "PERMISSION_DENIED")
    refused(svc.call("eve", "PATCH", f"/projects/{pid}", json={"name": "x"}), 403,
            "PERMISSION_DENIED")  # fmt: skip
    refused(svc.call("eve", "PUT", f"/projects/{pid}/shares/theory"), 403, "PERMISSION_DENIED")
    refused(svc.call("eve", "DELETE", f"/projects/{pid}"), 403, "PERMISSION_DENIED")
    # the MLflow API: read yes, create runs no
    got = svc.mlflow("eve", "experiments/get", params={"experiment_id": str(pid)})
    assert got.status_code == 200
    r = svc.mlflow("eve", "runs/create", {"experiment_id": str(pid), "start_time": 1})
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    assert "a share gives read access only" in r.json()["message"]
    r = svc.mlflow("eve", "experiments/set-experiment-tag",
                   {"experiment_id": str(pid), "key": "k", "value": "v"})  # fmt: skip
    assert r.status_code == 403
    # nothing of hers landed in ann's project
    runs = ok(svc.call("ann", "GET", "/runs", params={"project": pid}))["items"]
    assert [r["id"] for r in runs] == [run]
    assert ok(svc.call("ann", "GET", f"{arts}/flow/best"))["version"] == 1
    # members still write everything
    ok(svc.call("bob", "POST", "/runs", json={"project": pid}), 201)
    ok(svc.call("bob", "PUT", f"{arts}/flow/aliases/ok", json={"version": 1}))


def test_a_share_reader_registers_nothing_even_from_a_run_of_their_own(svc):
    pid, _ = lqcd_project(svc)
    # a run of hers in the project, left from when she was a member of lqcd
    svc.set_groups("eve", "lqcd")
    eves_run = ok(svc.call("eve", "POST", "/runs", json={"project": pid}), 201)["id"]
    ok(svc.call("eve", "PUT", f"/runs/{eves_run}/artifacts/m.pt", data=b"hers"), 201)
    svc.set_groups("eve", "nuclear")
    ok(svc.call("ann", "PUT", f"/projects/{pid}/shares/nuclear"))
    body = {"name": "flow2", "run_id": eves_run, "path": "m.pt"}
    message = refused(svc.call("eve", "POST", f"/projects/{pid}/artifacts", json=body), 403,
                      "PERMISSION_DENIED")  # fmt: skip
    assert "registering a version needs write access" in message


# -- ownership and membership --------------------------------------------------------------
def test_an_owner_who_leaves_the_group_loses_access_like_any_member(svc):
    pid, run = lqcd_project(svc)
    svc.set_groups("ann", "nuclear")  # ann moves to another group
    for method, path in [("GET", f"/projects/{pid}"), ("GET", f"/runs/{run}"),
                         ("GET", f"/runs/{run}/logs/stdout"), ("DELETE", f"/projects/{pid}"),
                         ("PUT", f"/projects/{pid}/shares/nuclear"),
                         ("GET", f"/projects/{pid}/artifacts/flow/best")]:  # fmt: skip
        refused(svc.call("ann", method, path), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(svc.call("ann", "POST", "/runs", json={"project": pid}), 404, "RESOURCE_DOES_NOT_EXIST")
    assert ok(svc.call("ann", "GET", "/projects"))["items"] == []
    r = svc.mlflow("ann", "experiments/get-by-name", params={"experiment_name": "flows"})
    assert r.status_code == 404
    r = svc.mlflow("ann", "runs/create", {"experiment_id": str(pid)})
    assert r.status_code == 404
    # a share with her new group gives her read access, as for anyone in it
    ok(svc.call("bob", "GET", f"/projects/{pid}"))
    ok(svc.call("root", "PUT", f"/projects/{pid}/shares/nuclear"))
    ok(svc.call("ann", "GET", f"/runs/{run}"))
    refused(svc.call("ann", "PATCH", f"/projects/{pid}", json={"name": "mine-now"}), 403,
            "PERMISSION_DENIED")  # fmt: skip


def test_managers_and_admins_give_a_project_to_another_member(svc):
    pid, _ = lqcd_project(svc)
    svc.set_groups("ann")  # the owner left: the project needs a new one
    message = refused(svc.call("bob", "PATCH", f"/projects/{pid}", json={"owner": "bob"}), 403,
                      "PERMISSION_DENIED")  # fmt: skip
    assert "groups!group=lqcd" in message
    refused(
        svc.call("nick", "PATCH", f"/projects/{pid}", json={"owner": "bob"}),
        403,
        "PERMISSION_DENIED",
    )  # fmt: skip  (he manages nuclear, not lqcd)
    message = refused(svc.call("mia", "PATCH", f"/projects/{pid}", json={"owner": "carl"}), 400,
                      "INVALID_PARAMETER_VALUE")  # fmt: skip
    assert "carl is not a member of group 'lqcd'" in message
    assert ok(svc.call("mia", "PATCH", f"/projects/{pid}", json={"owner": "bob"}))["owner"] == "bob"
    # the new owner manages it; the manager too
    ok(svc.call("bob", "PATCH", f"/projects/{pid}", json={"description": "bob's now"}))
    ok(svc.call("mia", "PUT", f"/projects/{pid}/shares/theory"))
    # admins give away any project, private ones included
    given = ok(svc.call("root", "PATCH", f"/projects/{pid}", json={"owner": "mia"}))
    assert given["owner"] == "mia"
    private = ok(svc.call("bob", "POST", "/projects", json={"name": "own"}), 201)["id"]
    refused(svc.call("mia", "PATCH", f"/projects/{private}", json={"owner": "mia"}), 404,
            "RESOURCE_DOES_NOT_EXIST")  # fmt: skip
    given = ok(svc.call("root", "PATCH", f"/projects/{private}", json={"owner": "ann"}))
    assert given["owner"] == "ann"
    assert ok(svc.call("ann", "GET", f"/projects/{private}"))["name"] == "own"


def test_a_removal_from_a_group_takes_effect_within_five_seconds(svc):
    """Tokens whose Hub model shows no groups: the service asks the Hub, caching briefly."""
    pid, run = lqcd_project(svc)
    svc.users["bob"]["hide_groups"] = True
    ok(svc.call("bob", "GET", f"/runs/{run}"))
    assert svc.lookups[-1] == "bob"  # asked the Hub for his groups
    svc.set_groups("bob")
    removed = time.monotonic()
    while svc.call("bob", "GET", f"/runs/{run}").status_code == 200:
        assert time.monotonic() - removed < MEMBERSHIP_MAX_AGE_S + 1, "still allowed after 5 s"
        time.sleep(0.2)
    assert svc.call("bob", "GET", f"/projects/{pid}").status_code == 404


# -- names ---------------------------------------------------------------------------------
def test_a_name_another_group_uses_tells_nothing_and_stays_free(svc):
    lqcd_project(svc, "flows")

    def probe(name: str) -> list[tuple[int, str]]:
        replies = [
            svc.call("eve", "POST", "/runs", json={"project": name}),
            svc.mlflow("eve", "experiments/get-by-name", params={"experiment_name": name}),
            svc.call("eve", "GET", "/projects", params={"name": name}),
            svc.call("eve", "GET", "/projects", params={"name_like": name}),
        ]
        return [(r.status_code, r.text.replace(name, "NAME")) for r in replies]

    assert probe("flows") == probe("never-used")
    # eve makes her own, in her group and privately: both allowed
    mine = ok(svc.call("eve", "POST", "/projects", json={"name": "flows", "group": "nuclear"}), 201)
    r = svc.mlflow("eve", "experiments/create", {"name": "flows"})
    assert r.status_code == 200, r.text
    private = int(r.json()["experiment_id"])
    # two of hers use the name: she must say which, and only hers are named
    r = svc.mlflow("eve", "experiments/get-by-name", params={"experiment_name": "flows"})
    assert r.status_code == 400 and "'nuclear/flows'" in r.json()["message"]
    assert "lqcd" not in r.json()["message"]
    get = {"experiment_name": "nuclear/flows"}
    r = svc.mlflow("eve", "experiments/get-by-name", params=get)
    assert r.json()["experiment"]["experiment_id"] == str(mine["id"])
    r = svc.mlflow("eve", "experiments/get-by-name", params={"experiment_name": "~/flows"})
    assert r.json()["experiment"]["experiment_id"] == str(private)
    run = ok(svc.call("eve", "POST", "/runs", json={"project": "nuclear/flows"}), 201)
    assert run["project_id"] == mine["id"]


def test_a_share_never_changes_what_a_name_means_to_its_readers(svc):
    pid, _ = lqcd_project(svc, "flows")
    mine = ok(svc.call("eve", "POST", "/projects", json={"name": "flows", "group": "nuclear"}), 201)
    ok(svc.call("ann", "PUT", f"/projects/{pid}/shares/nuclear"))
    # her own project keeps the plain name; the shared one is lqcd/flows
    assert (
        ok(svc.call("eve", "GET", "/projects", params={"name": "flows"}))["items"][0]["id"]
        == (mine["id"])
    )
    r = svc.mlflow("eve", "experiments/get-by-name", params={"experiment_name": "flows"})
    assert r.json()["experiment"]["experiment_id"] == str(mine["id"])
    r = svc.mlflow("eve", "experiments/get-by-name", params={"experiment_name": "lqcd/flows"})
    assert r.json()["experiment"]["experiment_id"] == str(pid)
    # ann sees hers
    found = ok(svc.call("ann", "GET", "/projects", params={"name": "flows"}))["items"]
    assert [p["id"] for p in found] == [pid]
    # an ambiguous plain name among a caller's own groups names the group/name forms
    both = {"ann2": {"groups": {"lqcd", "nuclear"}}}
    svc.users.update(both)
    r = svc.call("ann2", "GET", "/projects", params={"name": "flows"})
    assert r.status_code == 400
    assert "'lqcd/flows'" in r.json()["message"] and "'nuclear/flows'" in r.json()["message"]


# -- the dashboard -------------------------------------------------------------------------
def page(svc, user: str, path: str, **kwargs):
    """A dashboard page (or form post) as ``user``, with a token as a program sends it."""
    method = "POST" if "data" in kwargs else "GET"
    return requests.request(
        method,
        f"{svc.url}/{path}",
        headers={"Authorization": f"token tok-{user}", "Accept": "text/html"},
        allow_redirects=False,
        timeout=30,
        **kwargs,
    )


def test_the_project_page_marks_shares_read_only_and_offers_managers_the_transfer(svc):
    name = "<b>flows</b>"
    pid, _ = lqcd_project(svc, name)
    ok(svc.call("ann", "PUT", f"/projects/{pid}/shares/nuclear"))
    as_eve = page(svc, "eve", f"projects/{pid}")
    assert as_eve.status_code == 200
    assert 'id="read-only"' in as_eve.text and 'id="transfer-form"' not in as_eve.text
    assert "&lt;b&gt;flows&lt;/b&gt;" in as_eve.text and name not in as_eve.text  # escaped
    as_bob = page(svc, "bob", f"projects/{pid}")
    assert 'id="read-only"' not in as_bob.text and 'id="transfer-form"' not in as_bob.text
    assert 'id="transfer-form"' in page(svc, "mia", f"projects/{pid}").text
    # a member who is no manager: refused on the page, nothing changes
    refused_page = page(svc, "bob", f"projects/{pid}", data={"action": "transfer", "owner": "bob"})
    assert refused_page.status_code == 403 and "groups!group=lqcd" in refused_page.text
    # a manager: not to an outsider (the reason shows, escaped), then to a member
    outsider = page(svc, "mia", f"projects/{pid}", data={"action": "transfer", "owner": "<carl>"})
    assert outsider.status_code == 400
    assert "&lt;carl&gt; is not a member of group" in outsider.text
    moved = page(svc, "mia", f"projects/{pid}", data={"action": "transfer", "owner": "bob"})
    assert moved.status_code == 303 and moved.headers["Location"].endswith(f"/projects/{pid}")
    assert svc.store.get_project(pid).owner == "bob"
    eves = page(svc, "eve", f"projects/{pid}", data={"action": "transfer", "owner": "eve"})
    assert eves.status_code == 403
