"""Artifact storage caps against the real stack: a member cannot fill the group past its cap.

The Hub runs the repository's ``jupyterhub_config.py`` with ``LATTICEHUB_ARTIFACT_QUOTAS``
set; mallory (a member of ``lqcd``) tries every way around the cap: a declared size, a
chunked body that hides its size, concurrent uploads racing for the last room, a private
project, the MLflow artifact path. The quotas service shows the group's use through the real
Hub's custom scope; eve's group is not affected by lqcd's fullness.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests

from tests.security.conftest import Stack, start_stack
from tests.security.test_jobs_boundaries import LONG, cancel, submit

KiB = 1024
#: lqcd's cap; private projects get PRIVATE_CAP; groups not listed have none
GROUP_CAP = 256 * KiB
PRIVATE_CAP = 64 * KiB
QUOTAS = f'{{"lqcd": "{GROUP_CAP // KiB}K", "~": "{PRIVATE_CAP // KiB}K"}}'


@pytest.fixture
def capped(make_hub) -> Stack:  # noqa: F811 - the docker tier's fixture via conftest
    hub = make_hub('c.Authenticator.admin_users = {"boss"}')
    hub.env["LATTICEHUB_ARTIFACT_QUOTAS"] = QUOTAS
    return start_stack(hub)


def new_run(stack: Stack, user: str, group: str | None, name: str) -> str:
    r = stack.call(user, "POST", "/projects", json={"name": name, "group": group})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    r = stack.call(user, "POST", "/runs", json={"project": project})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def upload(stack: Stack, user: str, run: str, path: str, data, **headers) -> requests.Response:
    return stack.call(user, "PUT", f"/runs/{run}/artifacts/{path}", data=data, headers=headers)


def chunks(total: int, piece: int = 16 * KiB):
    """A body without a declared size (chunked transfer encoding)."""
    sent = 0
    while sent < total:
        yield b"\1" * min(piece, total - sent)
        sent += piece


def assert_quota_refusal(r: requests.Response, who: str) -> None:
    assert r.status_code == 413, (r.status_code, r.text[:300])
    body = r.json()
    assert body["error_code"] == "STORAGE_QUOTA_EXCEEDED", body
    assert who in body["message"] and "artifact_quota" in body["message"], body


def listed(stack: Stack, user: str, run: str) -> list[str]:
    r = stack.call(user, "GET", f"/runs/{run}/artifacts")
    assert r.status_code == 200, r.text
    return [a["path"] for a in r.json()["items"]]


def storage(stack: Stack, user: str, **params) -> dict:
    r = stack.call(user, "GET", "/storage", params=params)
    assert r.status_code == 200, r.text
    return {(i["group"] or f"~{i['owner']}"): i for i in r.json()["items"]}


def test_a_member_cannot_fill_her_group_past_its_cap(capped: Stack):
    stack = capped
    run = new_run(stack, "mallory", "lqcd", "fill")
    assert upload(stack, "mallory", run, "base.bin", b"\0" * (200 * KiB)).status_code == 201
    room = GROUP_CAP - 200 * KiB

    # a declared size over the room: refused before the body, nothing stored
    assert_quota_refusal(upload(stack, "mallory", run, "big.bin", b"\2" * (room + 1)), "lqcd")
    # the same bytes without a declared size: refused as they pass the room
    assert_quota_refusal(upload(stack, "mallory", run, "hidden.bin", chunks(room + KiB)), "lqcd")
    # the MLflow artifact path is the same door
    project = stack.call("mallory", "GET", f"/runs/{run}").json()["project_id"]
    mlflow = (
        f"{stack.hub.url}/services/experiments/api/2.0/mlflow-artifacts/artifacts/"
        f"{project}/{run}/artifacts/via-mlflow.bin"
    )
    r = requests.put(
        mlflow,
        data=b"\3" * (room + 1),
        headers={"Authorization": f"token {stack.tokens['mallory']}"},
        timeout=60,
    )
    assert_quota_refusal(r, "lqcd")
    assert listed(stack, "mallory", run) == ["base.bin"]

    # four concurrent uploads race for the room left: exactly as many land as fit
    piece = room // 2 - KiB
    answers: list[int] = []

    def race(i: int) -> None:
        answers.append(
            upload(stack, "mallory", run, f"race{i}.bin", bytes([i]) * piece).status_code
        )

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [201, 201, 413, 413], answers
    used = storage(stack, "ann")["lqcd"]
    assert used["used_bytes"] <= GROUP_CAP and used["cap_bytes"] == GROUP_CAP, used

    # identical bytes add nothing: storing them again is allowed at a full cap (the client
    # names their sha256 up front, as the tracking client does)
    same = b"\0" * (200 * KiB)
    copy = new_run(stack, "bob", "lqcd", "copy")
    digest = hashlib.sha256(same).hexdigest()
    assert upload(stack, "bob", copy, "same.bin", same, **{"X-Content-SHA256": digest}).ok
    # ... and without it, a declared size past the room is refused before the body
    assert_quota_refusal(upload(stack, "bob", copy, "same2.bin", same), "lqcd")

    # a private project is no way around: it has its own (smaller) cap
    private = new_run(stack, "mallory", None, "dodge")
    assert_quota_refusal(
        upload(stack, "mallory", private, "dodge.bin", b"\4" * (PRIVATE_CAP + 1)), "mallory"
    )
    # another group is untouched by lqcd's fullness (no cap for groups not listed)
    other = new_run(stack, "eve", "nuclear", "theirs")
    assert upload(stack, "eve", other, "x.bin", b"\5" * (300 * KiB)).status_code == 201

    # deleting an artifact makes room again
    r = stack.call("mallory", "DELETE", f"/runs/{run}/artifacts/base.bin")
    assert r.status_code == 200, r.text
    # ... but bob's copy still holds the same blob: the group's use does not drop by it
    assert storage(stack, "ann")["lqcd"]["used_bytes"] == used["used_bytes"]


def test_use_is_shown_to_members_and_managers_not_to_strangers(capped: Stack):
    stack = capped
    run = new_run(stack, "ann", "lqcd", "shown")
    assert upload(stack, "ann", run, "m.bin", b"\7" * (10 * KiB)).status_code == 201

    mine = storage(stack, "ann")
    assert mine["lqcd"]["used_bytes"] == 10 * KiB and mine["lqcd"]["cap_bytes"] == GROUP_CAP
    assert mine["~ann"]["cap_bytes"] == PRIVATE_CAP
    # eve may not read lqcd's use
    r = stack.call("eve", "GET", "/storage", params={"group": "lqcd"})
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text

    # the quotas service reads the group's storage and its jobs over HTTP, with its own token
    # through the Hub's custom scope (an admin looks at its pages)
    r = submit(stack, "ann", "shown", LONG)
    assert r.status_code == 201, r.text
    job = r.json()
    try:
        boss = stack.hub.user_token("boss")
        headers = {"Authorization": f"token {boss}"}
        r = requests.get(
            f"{stack.hub.url}/services/quotas/api/groups/lqcd", headers=headers, timeout=60
        )
        assert r.status_code == 200, r.text
        group = r.json()
        assert group["artifact_storage"] == {"used_bytes": 10 * KiB, "cap_bytes": GROUP_CAP}
        assert "jobs_warning" not in group, group["jobs_warning"]
        assert [j["id"] for j in group["jobs"]["items"]] == [job["id"]]
        assert group["jobs"]["queued"] + group["jobs"]["running"] == 1
        page = requests.get(
            f"{stack.hub.url}/services/quotas/groups/lqcd", headers=headers, timeout=60
        )
        assert page.status_code == 200 and 'id="artifact-storage"' in page.text
        assert "storage-warning" not in page.text and f'data-job="{job["id"]}"' in page.text
    finally:
        cancel(stack, "ann", job["id"])
