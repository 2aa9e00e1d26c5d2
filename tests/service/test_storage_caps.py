"""Artifact storage caps per group in the experiments service, in-process.

Uploads that would take a group (or a user's private projects) past its cap get 413
``STORAGE_QUOTA_EXCEEDED``; ``DELETE`` of artifacts makes room; ``GET /api/v1/storage``
shows use against the caps to members, admins and the quotas service. The caps are a few
KiB so that every case is quick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from traitlets import TraitError

from hub_ext.experiments.app import ExperimentsApp
from hub_ext.experiments.storage import StorageCaps, parse_storage_caps
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.registry import SqlArtifactRegistry
from tests.hub import free_port
from tests.service.fakehub import FakeHubAuth, declared_only, experiments

PREFIX = "/services/experiments"
K = 1024
#: the cap of each of the two groups and of each user's private projects
CAP = 4 * K
PRIVATE_CAP = 2 * K
CAPS = {"lqcd": CAP, "nuclear": "4K", "~": "2K"}  # groups not listed: no cap
ARTIFACT_LIMIT = 1024 * K
QUICK_S = 10

USERS = {
    "tok-ann": {"name": "ann", "kind": "user", "admin": False, "groups": ["lqcd"]},
    "tok-cat": {"name": "cat", "kind": "user", "admin": False, "groups": ["lqcd", "nuclear"]},
    "tok-bob": {"name": "bob", "kind": "user", "admin": False, "groups": ["nuclear"]},
    "tok-dan": {"name": "dan", "kind": "user", "admin": False, "groups": ["free"]},
    "tok-adm": {"name": "adm", "kind": "user", "admin": True, "groups": []},
    "tok-quotas": {
        "name": "quotas",
        "kind": "service",
        "scopes": ["custom:latticehub-usage:read"],
    },
    "tok-other-service": {"name": "ann", "kind": "service", "scopes": ["read:users"]},
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


ANN, CAT, BOB, DAN, ADM = (auth(f"tok-{u}") for u in ("ann", "cat", "bob", "dan", "adm"))
QUOTAS, OTHER_SERVICE = auth("tok-quotas"), auth("tok-other-service")


class Service:
    """The running service: URL, port, store and blob directory, with helpers."""

    def __init__(self, port: int, store: SqlStore, blobs: Path):
        self.port, self.store, self.blobs = port, store, blobs
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}{PREFIX}"

    def run_in(self, name: str, group: str | None, user: str = "ann") -> str:
        project = self.store.create_project(name, owner=user, group=group)
        return self.store.create_run(project.id, user=user).id

    def path(self, run: str, rel: str, api: str = "native") -> str:
        if api == "native":
            return f"{PREFIX}/api/v1/runs/{run}/artifacts/{rel}"
        project = self.store.get_run(run).project_id
        return f"{PREFIX}/api/2.0/mlflow-artifacts/artifacts/{project}/{run}/artifacts/{rel}"

    def put(self, who: dict, run: str, rel: str, data, api: str = "native") -> requests.Response:
        return requests.put(
            self.base + self.path(run, rel, api), data=data, headers=who, timeout=QUICK_S * 3
        )

    def delete(self, who: dict, run: str, rel: str, api: str = "native") -> requests.Response:
        return requests.delete(self.base + self.path(run, rel, api), headers=who, timeout=QUICK_S)

    def storage(self, who: dict, **params) -> requests.Response:
        return requests.get(
            f"{self.url}/api/v1/storage", params=params, headers=who, timeout=QUICK_S
        )

    def listed(self, run: str) -> list[tuple[str, int]]:
        return [(a.path, a.size) for a in self.store.list_artifacts(run)]

    def files_left(self) -> list[Path]:
        return [p for p in self.blobs.rglob("*") if p.is_file() and p.name != ".gc.lock"]


@contextmanager
def service(tmp_path: Path, caps: StorageCaps | None) -> Iterator[Service]:
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    port = free_port()
    with experiments(
        store, tmp_path / "blobs", port=port, hub_auth=FakeHubAuth(USERS),
        max_artifact_size=ARTIFACT_LIMIT, max_body_size=256 * K,  # as ExperimentsApp.start
        max_json_body=256 * K, refused_body_drain=1024 * K, storage_caps=caps,
    ):  # fmt: skip
        yield Service(port, store, tmp_path / "blobs")
    store.close()


@pytest.fixture
def svc(tmp_path) -> Iterator[Service]:
    with service(tmp_path, parse_storage_caps(CAPS)) as running:
        yield running


def blob(size: int, seed: str = "x") -> bytes:
    """``size`` bytes whose content depends on ``seed`` (distinct seeds: distinct blobs)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return out[:size]


def pieces(data: bytes, size: int = K) -> Iterator[bytes]:
    """``data`` as a generator: requests sends it chunked (no Content-Length)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def assert_quota_refusal(status: int, headers, body: dict, *, who: str, key: str) -> None:
    """A 413 JSON ``STORAGE_QUOTA_EXCEEDED`` that names the bucket and the setting's key."""
    assert status == 413, body
    assert headers["Content-Type"].startswith("application/json")
    assert body["error_code"] == "STORAGE_QUOTA_EXCEEDED"
    assert body["status"] == 413
    assert who in body["message"]
    assert f"artifact_quota[{key!r}]" in body["message"]


def created(response: requests.Response) -> None:
    assert response.status_code in (200, 201), response.text


def used(svc: Service, group: str | None, owner: str | None = None) -> int:
    return svc.store.bucket_bytes(group, owner)


# -- uploads within and past the cap -----------------------------------------------------------
def test_uploads_within_the_cap_are_created_up_to_exactly_the_cap(svc):
    run = svc.run_in("phi4", "lqcd")
    r = svc.put(ANN, run, "model/a.bin", blob(1000, "a"))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 1000
    created(svc.put(ANN, run, "b.bin", blob(CAP - 1000, "b")))  # exactly at the cap
    assert used(svc, "lqcd") == CAP
    assert sorted(svc.listed(run)) == [("b.bin", CAP - 1000), ("model/a.bin", 1000)]
    r = svc.put(ANN, run, "c.bin", b"!")  # one byte over
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    assert f"{CAP} bytes" in r.json()["message"]
    assert sorted(svc.listed(run)) == [("b.bin", CAP - 1000), ("model/a.bin", 1000)]


@pytest.mark.parametrize("api", ["native", "mlflow"])
def test_a_declared_size_over_the_room_gets_413_before_the_body(svc, api):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "first.bin", blob(1000, "first"), api=api))
    path = svc.path(run, "model/flow.pt", api)
    # the server answers without a byte of the body: a wait would time out
    status, headers, body = declared_only(svc.port, "PUT", path, CAP - 1000 + 1, ANN)
    assert_quota_refusal(status, headers, body, who="group 'lqcd'", key="lqcd")
    assert "1000 bytes are in use" in body["message"]
    assert f"upload of {CAP - 1000 + 1} bytes" in body["message"]
    assert headers.get("Connection") == "close"
    assert svc.listed(run) == [("first.bin", 1000)]
    assert used(svc, "lqcd") == 1000
    assert len(svc.files_left()) == 1


@pytest.mark.parametrize("api", ["native", "mlflow"])
def test_a_declared_oversize_upload_sent_whole_gets_413_and_stores_nothing(svc, api):
    run = svc.run_in("phi4", "lqcd")
    r = svc.put(ANN, run, "big.bin", blob(CAP + 1, "big"), api=api)
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    assert svc.listed(run) == []
    assert not svc.files_left()


@pytest.mark.parametrize("api", ["native", "mlflow"])
def test_a_chunked_upload_passing_the_cap_gets_413_and_stores_nothing(svc, api):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "first.bin", blob(1000, "first"), api=api))
    r = svc.put(ANN, run, "model/flow.pt", pieces(blob(CAP + 2 * K, "big")), api=api)
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    assert svc.listed(run) == [("first.bin", 1000)]
    assert used(svc, "lqcd") == 1000
    assert len(svc.files_left()) == 1, "partial upload left behind"


def test_a_chunked_upload_that_just_fits_is_stored(svc):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "first.bin", blob(1000, "first")))
    data = blob(CAP - 1000, "rest")
    r = svc.put(ANN, run, "rest.bin", pieces(data, 700))
    assert r.status_code == 201, r.text
    assert svc.store.get_artifact(run, "rest.bin").sha256 == hashlib.sha256(data).hexdigest()
    assert used(svc, "lqcd") == CAP
    r = svc.put(ANN, run, "more.bin", pieces(b"!"))
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("api", ["native", "mlflow"])
@pytest.mark.parametrize("size", [CAP, 3 * K], ids=["full-cap", "three-quarters"])
@pytest.mark.parametrize("hint", ["header", "query", "upper-case"])
def test_identical_bytes_may_be_uploaded_again_at_a_full_cap(svc, api, chunked, size, hint):
    """A blob the group already holds adds nothing: a copy fits however full the group is.

    Before the body the service knows the content only from the digest the client declares
    (``X-Content-SHA256`` or ``?sha256=``); the commit checks it.
    """
    run = svc.run_in("phi4", "lqcd")
    other = svc.run_in("qcd", "lqcd", user="cat")  # another member's run of the group
    data = blob(size, "same")
    created(svc.put(ANN, run, "model/flow.pt", data))
    sha = hashlib.sha256(data).hexdigest()
    for who, target in [(ANN, run), (CAT, other)]:
        rel = "copy/flow.pt"
        if hint == "query":
            rel += f"?sha256={sha}"
        else:
            who = {**who, "X-Content-SHA256": sha.upper() if hint == "upper-case" else sha}
        again = svc.put(who, target, rel, pieces(data) if chunked else data, api=api)
        created(again)
        assert svc.store.get_artifact(target, "copy/flow.pt").sha256 == sha
    assert used(svc, "lqcd") == size
    assert len(svc.files_left()) == 1  # stored once
    created(svc.put(ANN, run, "rest.bin", blob(CAP - size, "rest")))  # the copies took no room


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_without_a_declared_digest_a_copy_counts_by_its_size(svc, chunked):
    """Refused as it arrives: what it is becomes known only at its end."""
    run = svc.run_in("phi4", "lqcd")
    data = blob(CAP, "same")
    created(svc.put(ANN, run, "a.bin", data))
    r = svc.put(ANN, run, "b.bin", pieces(data) if chunked else data)
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    assert svc.listed(run) == [("a.bin", CAP)]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("size", "expected"),
    [(2 * K, 413), (100, 400)],  # over the room: the cap; within it: the digest mismatch
    ids=["over-the-room", "within-the-room"],
)
def test_a_false_digest_gets_nothing_past_the_cap(svc, chunked, size, expected):
    run = svc.run_in("phi4", "lqcd")
    held = blob(3 * K, "held")
    created(svc.put(ANN, run, "a.bin", held))
    lie = {**ANN, "X-Content-SHA256": hashlib.sha256(held).hexdigest()}
    other = blob(size, "other")  # not what the digest says
    r = svc.put(lie, run, "b.bin", pieces(other) if chunked else other)
    assert r.status_code == expected, r.text
    if expected == 413:
        assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    assert svc.listed(run) == [("a.bin", 3 * K)]
    assert used(svc, "lqcd") == 3 * K
    assert len(svc.files_left()) == 1, "the refused upload left a file behind"


def test_a_full_group_does_not_hold_back_another_group(svc):
    lqcd = svc.run_in("phi4", "lqcd", user="cat")
    nuclear = svc.run_in("phi4", "nuclear", user="cat")
    created(svc.put(CAT, lqcd, "a.bin", blob(CAP, "lqcd")))
    r = svc.put(CAT, lqcd, "b.bin", b"!")
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")
    created(svc.put(CAT, nuclear, "a.bin", blob(CAP, "nuclear")))  # its own, full cap
    r = svc.put(CAT, nuclear, "b.bin", b"!")
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'nuclear'", key="nuclear")
    # private projects are their own bucket, and a group not listed has no cap
    created(svc.put(CAT, svc.run_in("mine", None, user="cat"), "p.bin", blob(PRIVATE_CAP)))
    created(svc.put(DAN, svc.run_in("big", "free", user="dan"), "f.bin", blob(8 * CAP, "f")))
    assert used(svc, "lqcd") == CAP and used(svc, "nuclear") == CAP
    assert used(svc, None, "cat") == PRIVATE_CAP and used(svc, "free") == 8 * CAP


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_private_projects_have_the_private_cap_per_user(svc, chunked):
    ann = svc.run_in("mine", None, user="ann")
    bob = svc.run_in("mine", None, user="bob")
    over = blob(PRIVATE_CAP + 1, "over")  # within the groups' cap, over the private one
    r = svc.put(ANN, ann, "over.bin", pieces(over) if chunked else over)
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="ann's private projects", key="~")
    assert svc.listed(ann) == []
    created(svc.put(ANN, ann, "full.bin", blob(PRIVATE_CAP, "ann")))
    created(svc.put(BOB, bob, "full.bin", blob(PRIVATE_CAP, "bob")))  # ann's use is not his
    assert used(svc, None, "ann") == PRIVATE_CAP == used(svc, None, "bob")
    created(svc.put(ANN, svc.run_in("phi4", "lqcd"), "g.bin", blob(CAP, "group")))


# -- DELETE ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["native", "mlflow"])
def test_deleting_an_artifact_makes_room(svc, api):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "model/a.bin", blob(CAP // 2, "a")))
    created(svc.put(ANN, run, "model/b.bin", blob(CAP // 2, "b")))
    created(svc.put(ANN, run, "keep.bin", b""))
    r = svc.put(ANN, run, "c.bin", blob(CAP // 2, "c"))
    assert r.status_code == 413, r.text
    gone = svc.delete(ANN, run, "model", api=api)  # a directory: both its files
    assert gone.status_code == 200, gone.text
    if api == "native":
        assert sorted(a["path"] for a in gone.json()["deleted"]) == ["model/a.bin", "model/b.bin"]
    assert svc.listed(run) == [("keep.bin", 0)]
    assert used(svc, "lqcd") == 0
    created(svc.put(ANN, run, "c.bin", blob(CAP, "c")))
    missing = svc.delete(ANN, run, "model", api=api)
    assert missing.status_code == 404, missing.text
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_deleting_a_blob_a_registered_version_holds_makes_no_room(svc):
    run = svc.run_in("phi4", "lqcd")
    data = blob(CAP, "kept")
    created(svc.put(ANN, run, "model/flow.pt", data))
    project = svc.store.get_run(run).project_id
    SqlArtifactRegistry.for_store(svc.store).create_version(
        project, "flow", run_id=run, sha256=hashlib.sha256(data).hexdigest(), size=CAP
    )
    gone = svc.delete(ANN, run, "model/flow.pt")
    assert gone.status_code == 200, gone.text
    assert svc.listed(run) == []
    assert used(svc, "lqcd") == CAP  # the version still points to the blob
    r = svc.put(ANN, run, "new.bin", b"!")
    assert_quota_refusal(r.status_code, r.headers, r.json(), who="group 'lqcd'", key="lqcd")


@pytest.mark.parametrize("api", ["native", "mlflow"])
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (BOB, 403),  # reads the project through a share
        (CAT, 403),  # a member of the group, but not the run's user
        (DAN, 404),  # sees nothing of the project
        ({}, 401),
    ],
    ids=["share-reader", "other-member", "stranger", "anonymous"],
)
def test_only_the_runs_writers_delete_its_artifacts(svc, api, who, expected):
    run = svc.run_in("phi4", "lqcd")
    svc.store.share_project(svc.store.get_run(run).project_id, "nuclear")
    created(svc.put(ANN, run, "a.bin", blob(100)))
    if who is BOB:  # the share lets him read it
        r = requests.get(svc.base + svc.path(run, "a.bin", api), headers=BOB, timeout=QUICK_S)
        assert r.status_code == 200 and r.content == blob(100)
    r = svc.delete(who, run, "a.bin", api=api)
    assert r.status_code == expected, r.text
    assert r.json()["status"] == expected
    assert svc.listed(run) == [("a.bin", 100)]
    assert svc.delete(ADM, run, "a.bin", api=api).status_code == 200  # admins write any run
    assert svc.listed(run) == []


@pytest.mark.parametrize(
    ("api", "target"),
    [
        ("native", "known"),
        ("native", "unknown-run"),
        ("mlflow", "known"),
        ("mlflow", "unknown-run"),
        ("mlflow", "wrong-experiment"),
    ],
)
def test_an_anonymous_delete_is_401_before_the_run_is_looked_up(svc, api, target):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "a.bin", blob(100)))
    path = svc.path(run, "a.bin", api)
    if target == "unknown-run":
        path = path.replace(run, "f" * 32)
    elif target == "wrong-experiment":
        project = svc.store.get_run(run).project_id
        path = path.replace(f"/{project}/{run}/", f"/{project + 1}/{run}/")
    for method in ("GET", "PUT", "DELETE"):  # every method: 401 before anything else
        r = requests.request(method, svc.base + path, data=b"x", timeout=QUICK_S)
        assert r.status_code == 401, (method, r.text)
        assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert svc.listed(run) == [("a.bin", 100)]


def test_artifacts_of_a_deleted_run_are_not_deleted(svc):
    run = svc.run_in("phi4", "lqcd")
    created(svc.put(ANN, run, "a.bin", blob(100)))
    svc.store.update_run(run, lifecycle_stage="deleted")
    r = svc.delete(ANN, run, "a.bin")
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_STATE", r.text
    assert svc.listed(run) == [("a.bin", 100)]


# -- GET /api/v1/storage ---------------------------------------------------------------------------
@pytest.fixture
def filled(svc) -> Service:
    """lqcd uses 1000 bytes, nuclear 3000, ann's private projects 500, free 7000."""
    created(svc.put(ANN, svc.run_in("phi4", "lqcd"), "a.bin", blob(1000, "l")))
    created(svc.put(BOB, svc.run_in("phi4", "nuclear", user="bob"), "a.bin", blob(3000, "n")))
    created(svc.put(ANN, svc.run_in("mine", None), "a.bin", blob(500, "p")))
    created(svc.put(DAN, svc.run_in("big", "free", user="dan"), "a.bin", blob(7000, "f")))
    return svc


LQCD_ITEM = {"group": "lqcd", "used_bytes": 1000, "cap_bytes": CAP, "free_bytes": CAP - 1000}
NUCLEAR_ITEM = {"group": "nuclear", "used_bytes": 3000, "cap_bytes": CAP, "free_bytes": CAP - 3000}
FREE_ITEM = {"group": "free", "used_bytes": 7000, "cap_bytes": None, "free_bytes": None}


def storage_of(svc: Service, who: dict, **params) -> list[dict]:
    r = svc.storage(who, **params)
    assert r.status_code == 200, r.text
    assert r.json()["capped"] is True
    return r.json()["items"]


def test_members_see_their_groups_and_their_private_projects(filled):
    ann_private = {
        "group": None, "owner": "ann", "used_bytes": 500, "cap_bytes": PRIVATE_CAP,
        "free_bytes": PRIVATE_CAP - 500,
    }  # fmt: skip
    assert storage_of(filled, ANN) == [LQCD_ITEM, ann_private]
    cat_private = {
        "group": None, "owner": "cat", "used_bytes": 0, "cap_bytes": PRIVATE_CAP,
        "free_bytes": PRIVATE_CAP,
    }  # fmt: skip
    assert storage_of(filled, CAT) == [LQCD_ITEM, NUCLEAR_ITEM, cat_private]
    assert storage_of(filled, CAT, group="nuclear") == [NUCLEAR_ITEM]  # only what was asked


@pytest.mark.parametrize(
    ("who", "asked", "named"),
    [
        (ANN, ["nuclear"], "'nuclear'"),
        (ANN, ["lqcd", "nuclear"], "'nuclear'"),
        (BOB, ["lqcd"], "'lqcd'"),
        (DAN, ["nosuch"], "'nosuch'"),
    ],
)
def test_a_member_asking_for_another_group_gets_403(filled, who, asked, named):
    r = filled.storage(who, group=asked)
    assert r.status_code == 403, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["error_code"] == "PERMISSION_DENIED" and body["status"] == 403
    assert "not a member of" in body["message"] and named in body["message"]
    assert "used_bytes" not in r.text


@pytest.mark.parametrize("who", [ADM, QUOTAS], ids=["admin", "quotas-service"])
def test_admins_and_the_scoped_service_read_any_group(filled, who):
    # by default every group with a project, sorted; no private projects
    assert storage_of(filled, who) == [FREE_ITEM, LQCD_ITEM, NUCLEAR_ITEM]
    assert storage_of(filled, who, group=["nuclear"]) == [NUCLEAR_ITEM]
    assert storage_of(filled, who, group=["nosuch", "lqcd"]) == [
        {"group": "nosuch", "used_bytes": 0, "cap_bytes": None, "free_bytes": None},
        LQCD_ITEM,
    ]


def test_a_service_without_the_scope_reads_nothing(filled):
    for params in ({}, {"group": "lqcd"}):
        r = filled.storage(OTHER_SERVICE, **params)
        assert r.status_code == 403, r.text
        assert r.json()["error_code"] == "PERMISSION_DENIED"
        assert "custom:latticehub-usage:read" in r.json()["message"]
        assert "used_bytes" not in r.text


def test_anonymous_callers_read_nothing(filled):
    r = filled.storage({})
    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("who", [QUOTAS, OTHER_SERVICE], ids=["scoped", "unscoped"])
def test_a_service_token_is_refused_on_every_other_api(filled, who):
    run = filled.run_in("other", "lqcd")
    r = requests.get(f"{filled.url}/api/v1/projects", headers=who, timeout=QUICK_S)
    assert r.status_code == 403, r.text
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert "may not use this API as a user" in r.json()["message"]
    r = requests.get(f"{filled.url}/api/v1/runs/{run}", headers=who, timeout=QUICK_S)
    assert r.status_code == 403, r.text
    put = filled.put(who, run, "a.bin", b"data")
    assert put.status_code == 403, put.text
    assert filled.listed(run) == []
    # the unscoped service has the name of a user: it never acts as ann
    assert filled.delete(who, run, "a.bin").status_code == 403


def test_without_caps_uploads_are_unlimited_and_storage_says_so(tmp_path):
    with service(tmp_path, None) as svc:
        run = svc.run_in("phi4", "lqcd")
        created(svc.put(ANN, run, "a.bin", blob(16 * CAP, "a")))
        created(svc.put(ANN, run, "b.bin", pieces(blob(16 * CAP, "b"))))
        r = svc.storage(ANN)
        assert r.status_code == 200, r.text
        assert r.json()["capped"] is False
        assert r.json()["items"][0] == {
            "group": "lqcd", "used_bytes": 32 * CAP, "cap_bytes": None, "free_bytes": None,
        }  # fmt: skip


def test_caps_set_to_none_cap_nothing(tmp_path):
    caps = parse_storage_caps({"lqcd": None, "~": "unlimited"})
    with service(tmp_path, caps) as svc:
        created(svc.put(ANN, svc.run_in("phi4", "lqcd"), "a.bin", blob(8 * CAP)))
        created(svc.put(ANN, svc.run_in("mine", None), "a.bin", blob(8 * CAP, "p")))
        assert svc.storage(ANN).json()["capped"] is False


# -- ExperimentsApp.artifact_quota -----------------------------------------------------------------
@pytest.fixture
def no_env_quota(monkeypatch):
    monkeypatch.delenv("LATTICEHUB_ARTIFACT_QUOTAS", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"lqcd": "lots"}, "lqcd"),
        ({"lqcd": "1G", "*": -1}, "*"),
        ({"~": [1]}, "~"),
        ({"": "1G"}, "''"),
    ],
)
def test_a_bad_artifact_quota_is_a_trait_error_naming_the_key(no_env_quota, value, key):
    with pytest.raises(TraitError) as err:
        ExperimentsApp(artifact_quota=value)
    assert key in str(err.value)


def test_a_good_artifact_quota_is_kept_as_given(no_env_quota):
    value = {"lqcd": "500G", "*": 1024, "~": None}
    app = ExperimentsApp(artifact_quota=value)
    assert app.artifact_quota == value
    assert parse_storage_caps(app.artifact_quota).caps == {
        "lqcd": 500 * 1024**3, "*": 1024, "~": None,
    }  # fmt: skip


def test_artifact_quota_defaults_to_no_cap(no_env_quota):
    assert ExperimentsApp().artifact_quota == {}
    no_env_quota.setenv("LATTICEHUB_ARTIFACT_QUOTAS", "  ")
    assert ExperimentsApp().artifact_quota == {}


def test_artifact_quota_comes_from_the_environment(no_env_quota):
    no_env_quota.setenv("LATTICEHUB_ARTIFACT_QUOTAS", '{"lqcd": "2G", "*": "1G", "~": null}')
    app = ExperimentsApp()
    assert app.artifact_quota == {"lqcd": "2G", "*": "1G", "~": None}
    caps = parse_storage_caps(app.artifact_quota)
    assert caps.caps == {"lqcd": 2 * 1024**3, "*": 1024**3, "~": None}
    # an explicit setting wins over the environment
    assert ExperimentsApp(artifact_quota={"lqcd": "1K"}).artifact_quota == {"lqcd": "1K"}


def test_artifact_quota_from_the_environment_must_be_json(no_env_quota):
    no_env_quota.setenv("LATTICEHUB_ARTIFACT_QUOTAS", "lqcd=2G")
    with pytest.raises(TraitError, match="LATTICEHUB_ARTIFACT_QUOTAS is not JSON"):
        ExperimentsApp().artifact_quota  # noqa: B018 - the default is computed when read


@pytest.mark.parametrize(
    ("raw", "named"),
    [('{"lqcd": "lots"}', "artifact_quota['lqcd']"), ('["lqcd"]', "must map group names")],
)
def test_a_bad_value_in_the_environment_is_refused_naming_it(no_env_quota, raw, named):
    no_env_quota.setenv("LATTICEHUB_ARTIFACT_QUOTAS", raw)
    with pytest.raises((TraitError, ValueError)) as err:
        ExperimentsApp().artifact_quota  # noqa: B018 - the default is computed when read
    assert named in str(err.value)
