"""Artifact paths through the MLflow artifact API: ``.`` parts are dropped, nothing escapes.

The mlflow client asks for ``artifacts/.`` and ``artifacts/./<file>`` when it downloads a
whole run, so the service drops ``.`` parts of a path. An attacker (``eve``, another group;
``mallory``, the victim's group) tries to use that to climb out of her own run into ann's
private one: ``./..``, ``.%2e``, ``./../../<victim run>``, and the same in a listing's ``path``.
Requests go out raw (``http.client``): an HTTP library would resolve the dots itself.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

from .conftest import Stack
from .test_storage_caps import new_run, upload

SECRET = b"the victim's weights"


def raw_get(stack: Stack, user: str, path: str) -> tuple[int, bytes]:
    """GET ``/services/experiments/api/2.0/mlflow-artifacts/<path>`` exactly as written."""
    url = urllib.parse.urlsplit(stack.hub.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(
            "GET",
            f"/services/experiments/api/2.0/mlflow-artifacts/{path}",
            headers={"Authorization": f"token {stack.tokens[user]}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_dot_parts_never_lead_out_of_the_callers_run(stack: Stack):
    victim = new_run(stack, "ann", None, "victim")  # private: neither attacker may read it
    assert upload(stack, "ann", victim, "model/flow.pt", SECRET).status_code == 201
    victim_project = stack.call("ann", "GET", f"/runs/{victim}").json()["project_id"]
    for attacker, group in (("eve", "nuclear"), ("mallory", "lqcd")):
        own = new_run(stack, attacker, group, f"{attacker}-own")
        assert upload(stack, attacker, own, "mine.txt", b"mine").status_code == 201
        project = stack.call(attacker, "GET", f"/runs/{own}").json()["project_id"]
        base = f"artifacts/{project}/{own}/artifacts"
        # the client's own spellings work for the caller's run
        assert raw_get(stack, attacker, f"{base}/./mine.txt") == (200, b"mine")
        status, body = raw_get(stack, attacker, f"artifacts?path={project}/{own}/artifacts/.")
        assert status == 200 and [f["path"] for f in json.loads(body)["files"]] == ["mine.txt"]
        # climbing out: refused, and never the victim's bytes
        climbs = [
            f"{base}/./../../{victim}/artifacts/model/flow.pt",
            f"{base}/./.%2e/.%2e/{victim}/artifacts/model/flow.pt",
            f"{base}/.././../../{victim_project}/{victim}/artifacts/model/flow.pt",
            f"{base}/%2e/%2e%2e/{victim}/artifacts/model/flow.pt",
        ]
        for path in climbs:
            status, body = raw_get(stack, attacker, path)
            assert status in (400, 404), (attacker, path, status)
            assert SECRET not in body
        for listing in (f"{project}/{own}/artifacts/./..", f"{project}/{own}/artifacts/./../.."):
            status, body = raw_get(stack, attacker, f"artifacts?path={listing}")
            assert status in (200, 400), (attacker, listing, status)
            if status == 200:
                assert json.loads(body)["files"] == []  # only ever the caller's own run
        # the victim's run itself, with dots: not found, as without them
        status, body = raw_get(
            stack, attacker, f"artifacts/{victim_project}/{victim}/artifacts/./model/flow.pt"
        )
        assert status == 404 and SECRET not in body
