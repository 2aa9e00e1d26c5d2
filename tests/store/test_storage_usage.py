"""Artifact storage per bucket (group or private projects), on SQLite and PostgreSQL.

``bucket_bytes`` counts the distinct blobs of a group's runs' artifacts and registered
versions; ``delete_artifacts`` forgets a file or a directory's files.
"""

from __future__ import annotations

import pytest

from hub_ext.experiments.store import TrackingError
from hub_ext.experiments.store.errors import INVALID_STATE, RESOURCE_DOES_NOT_EXIST
from hub_ext.experiments.store.registry import SqlArtifactRegistry

A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
#: every blob has one size, as content-addressed blobs do
SIZE = {A: 10, B: 200, C: 3_000, D: 40_000}


def run_in(store, name: str, group: str | None, owner: str = "ann"):
    project = store.create_project(name, owner=owner, group=group)
    return store.create_run(project.id, user=owner)


def put(store, run, path: str, sha: str):
    return store.add_artifact(run.id, path, sha, SIZE[sha])


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(TrackingError) as err:
        call(*args, **kwargs)
    return err.value.code


def test_an_empty_bucket_holds_nothing(store):
    assert store.bucket_bytes("lqcd") == 0
    assert store.bucket_bytes(None, "ann") == 0
    run_in(store, "phi4", "lqcd")  # a project and a run, no artifacts
    run_in(store, "mine", None)
    assert store.bucket_bytes("lqcd") == 0
    assert store.bucket_bytes(None, "ann") == 0
    assert store.bucket_holds("lqcd", None, A) is False


def test_a_blob_counts_once_per_group(store):
    first = run_in(store, "phi4", "lqcd")
    second = run_in(store, "qcd", "lqcd", owner="cat")  # another project of the group
    put(store, first, "model/flow.pt", A)
    assert store.bucket_bytes("lqcd") == SIZE[A]
    put(store, first, "copy/flow.pt", A)  # the same blob at a second path
    put(store, second, "flow.pt", A)  # and in another run
    assert store.bucket_bytes("lqcd") == SIZE[A]
    put(store, second, "samples.npy", B)
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[B]
    third = store.create_run(first.project_id, user="ann")  # another run of the project
    put(store, third, "samples.npy", B)
    put(store, third, "big.bin", C)
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[B] + SIZE[C]


def test_a_blob_in_two_groups_counts_in_each(store):
    put(store, run_in(store, "phi4", "lqcd"), "f.pt", A)
    put(store, run_in(store, "phi4", "nuclear", owner="bob"), "f.pt", A)
    put(store, run_in(store, "other", "nuclear", owner="bob"), "g.pt", B)
    assert store.bucket_bytes("lqcd") == SIZE[A]
    assert store.bucket_bytes("nuclear") == SIZE[A] + SIZE[B]
    assert store.bucket_bytes("empty") == 0


def test_private_projects_count_per_owner_and_in_no_group(store):
    put(store, run_in(store, "mine", None, owner="ann"), "f.pt", A)
    put(store, run_in(store, "mine", None, owner="bob"), "f.pt", B)
    put(store, run_in(store, "more", None, owner="bob"), "g.pt", C)
    put(store, run_in(store, "phi4", "lqcd", owner="ann"), "h.pt", D)  # ann's, but the group's
    assert store.bucket_bytes(None, "ann") == SIZE[A]
    assert store.bucket_bytes(None, "bob") == SIZE[B] + SIZE[C]
    assert store.bucket_bytes(None, "cat") == 0
    assert store.bucket_bytes("lqcd") == SIZE[D]
    # the group parameter wins: an owner does not narrow a group's bucket
    assert store.bucket_bytes("lqcd", "bob") == SIZE[D]


def test_registered_versions_count_until_nothing_references_the_blob(store):
    registry = SqlArtifactRegistry.for_store(store)
    run = run_in(store, "phi4", "lqcd")
    put(store, run, "model/flow.pt", A)
    registry.create_version(
        run.project_id, "flow", run_id=run.id, sha256=A, size=SIZE[A], path="model/flow.pt"
    )
    assert store.bucket_bytes("lqcd") == SIZE[A]  # artifact and version: one blob
    registry.create_version(run.project_id, "flow", run_id=run.id, sha256=B, size=SIZE[B])
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[B]  # a version alone counts too
    assert store.bucket_holds("lqcd", None, B)

    removed = store.delete_artifacts(run.id, "model/flow.pt")
    assert [(a.path, a.sha256) for a in removed] == [("model/flow.pt", A)]
    assert store.list_artifacts(run.id) == []
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[B]  # v1 still points to A
    assert store.bucket_holds("lqcd", None, A)

    registry.delete_version(run.project_id, "flow", 1)
    assert store.bucket_bytes("lqcd") == SIZE[B]
    assert store.bucket_holds("lqcd", None, A) is False


def test_a_private_projects_registered_versions_count_for_its_owner(store):
    registry = SqlArtifactRegistry.for_store(store)
    run = run_in(store, "mine", None, owner="ann")
    registry.create_version(run.project_id, "flow", run_id=run.id, sha256=C, size=SIZE[C])
    assert store.bucket_bytes(None, "ann") == SIZE[C]
    assert store.bucket_bytes(None, "bob") == 0
    assert store.bucket_holds(None, "ann", C) and not store.bucket_holds(None, "bob", C)


def test_deleting_a_directory_removes_only_the_files_under_it(store):
    run = run_in(store, "phi4", "lqcd")
    other = store.create_run(run.project_id, user="ann")
    for path, sha in [
        ("dir/a.bin", A),
        ("dir/sub/b.bin", B),
        ("dirx/c.bin", C),  # shares the prefix "dir" but is not under "dir/"
        ("dir.txt", D),
        ("d_r/a.bin", A),  # "_" and "%" are no wildcards
        ("d%/a.bin", A),
    ]:
        put(store, run, path, sha)
    put(store, other, "dir/a.bin", C)
    assert store.bucket_bytes("lqcd") == sum(SIZE.values())

    removed = store.delete_artifacts(run.id, "dir")
    assert sorted(a.path for a in removed) == ["dir/a.bin", "dir/sub/b.bin"]
    assert {a.run_id for a in removed} == {run.id}
    assert [a.path for a in store.list_artifacts(run.id)] == [
        "d%/a.bin", "d_r/a.bin", "dir.txt", "dirx/c.bin",
    ]  # fmt: skip
    assert [a.path for a in store.list_artifacts(other.id)] == ["dir/a.bin"]  # another run's
    # B was only under dir/; A is still at d_r/ and d%/
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[C] + SIZE[D]

    assert [a.path for a in store.delete_artifacts(run.id, "d_r")] == ["d_r/a.bin"]
    assert [a.path for a in store.delete_artifacts(run.id, "dirx/c.bin")] == ["dirx/c.bin"]
    assert [a.path for a in store.delete_artifacts(run.id, "dir.txt")] == ["dir.txt"]
    assert [a.path for a in store.list_artifacts(run.id)] == ["d%/a.bin"]
    assert store.bucket_bytes("lqcd") == SIZE[A] + SIZE[C]  # C: the other run's dir/a.bin


def test_deleting_a_file_and_a_directory_of_the_same_name(store):
    run = run_in(store, "phi4", "lqcd")
    put(store, run, "out", A)
    put(store, run, "out/x", B)
    assert sorted(a.path for a in store.delete_artifacts(run.id, "out")) == ["out", "out/x"]
    assert store.list_artifacts(run.id) == []
    assert store.bucket_bytes("lqcd") == 0


@pytest.mark.parametrize("path", ["nope", "di", "dir/a", "dir/a.bin/x", "DIR"])
def test_deleting_nothing_is_404_and_changes_nothing(store, path):
    run = run_in(store, "phi4", "lqcd")
    put(store, run, "dir/a.bin", A)
    assert code_of(store.delete_artifacts, run.id, path) == RESOURCE_DOES_NOT_EXIST
    assert [a.path for a in store.list_artifacts(run.id)] == ["dir/a.bin"]


def test_deleting_from_an_unknown_run_is_404(store):
    assert code_of(store.delete_artifacts, "f" * 32, "a.bin") == RESOURCE_DOES_NOT_EXIST


def test_a_deleted_runs_artifacts_cannot_be_deleted_and_still_count(store):
    run = run_in(store, "phi4", "lqcd")
    put(store, run, "a.bin", A)
    store.update_run(run.id, lifecycle_stage="deleted")
    assert code_of(store.delete_artifacts, run.id, "a.bin") == INVALID_STATE
    assert [a.path for a in store.list_artifacts(run.id)] == ["a.bin"]
    assert store.bucket_bytes("lqcd") == SIZE[A]  # its blob is still on disk
    store.update_run(run.id, lifecycle_stage="active")
    assert [a.path for a in store.delete_artifacts(run.id, "a.bin")] == ["a.bin"]
    assert store.bucket_bytes("lqcd") == 0


def test_a_replaced_file_counts_its_new_blob_only(store):
    run = run_in(store, "phi4", "lqcd")
    put(store, run, "a.bin", A)
    put(store, run, "a.bin", C)  # a new version of the path
    assert store.bucket_bytes("lqcd") == SIZE[C]
    assert not store.bucket_holds("lqcd", None, A)


def test_bucket_holds(store):
    put(store, run_in(store, "phi4", "lqcd"), "f.pt", A)
    put(store, run_in(store, "mine", None, owner="ann"), "g.pt", B)
    assert store.bucket_holds("lqcd", None, A) is True
    assert store.bucket_holds("lqcd", None, B) is False  # ann's private blob
    assert store.bucket_holds("lqcd", None, C) is False
    assert store.bucket_holds("nuclear", None, A) is False
    assert store.bucket_holds(None, "ann", B) is True
    assert store.bucket_holds(None, "ann", A) is False  # the group's blob
    assert store.bucket_holds(None, "bob", B) is False


def test_groups_with_projects_are_sorted_and_exclude_private(store):
    assert store.groups_with_projects() == []
    run_in(store, "p", None, owner="ann")
    assert store.groups_with_projects() == []
    for name, group in [("a", "zeta"), ("b", "lqcd"), ("c", "alpha"), ("d", "lqcd")]:
        store.create_project(name, owner="ann", group=group)
    assert store.groups_with_projects() == ["alpha", "lqcd", "zeta"]
