"""The artifact registry contract, on every back end (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from hub_ext.experiments.retention import RetentionRule
from hub_ext.experiments.store import SqlStore, TrackingError
from hub_ext.experiments.store import schema as t
from hub_ext.experiments.store.errors import (
    CONFLICT,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
)
from hub_ext.experiments.store.migrations import release_0_1
from hub_ext.experiments.store.registry import AbstractArtifactRegistry, SqlArtifactRegistry

A, B, C = "a" * 64, "b" * 64, "c" * 64
HEARTBEAT_INDEX = "ix_lh_runs_status_heartbeat"


@pytest.fixture
def registry(store):
    return SqlArtifactRegistry.for_store(store)


@pytest.fixture
def run(store):
    project = store.create_project("phi4", owner="ann", group="lqcd")
    return store.create_run(project.id, user="ann")


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(TrackingError) as err:
        call(*args, **kwargs)
    return err.value.code


def add(registry, run, sha=A, name="flow", **kwargs):
    return registry.create_version(
        run.project_id, name, run_id=run.id, sha256=sha, size=10, **kwargs
    )


def test_abstract_registry_is_enforced():
    with pytest.raises(TypeError, match="abstract"):
        AbstractArtifactRegistry()
    with pytest.raises(TypeError, match="keeps no artifact registry"):
        SqlArtifactRegistry.for_store(object())


def test_versions_are_numbered_and_resolved(registry, run):
    v1 = add(registry, run, A, path="model/flow.pt", description="first", metadata={"L": 8})
    v2 = add(registry, run, B)
    other = add(registry, run, C, name="samples")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.ref == "flow:v1" and v1.path == "model/flow.pt" and v1.metadata == {"L": 8}
    pid = run.project_id
    assert registry.get_version(pid, "flow:v1") == v1
    assert registry.get_version(pid, "flow:1").sha256 == A
    assert registry.get_version(pid, "flow:latest").version == 2
    assert registry.get_version(pid, "flow").version == 2
    assert registry.get_version_by_id(v2.id) == v2
    for ref in ("flow:v3", "flow:best", "nope", "nope:v1"):
        assert code_of(registry.get_version, pid, ref) == RESOURCE_DOES_NOT_EXIST
    assert code_of(registry.get_version, pid + 1, "flow:v1") == RESOURCE_DOES_NOT_EXIST
    assert code_of(registry.get_version, pid, "flow:v0") == INVALID_PARAMETER_VALUE
    page = registry.list_versions(pid, "flow")
    assert [v.version for v in page.items] == [2, 1] and page.next_token is None
    first = registry.list_versions(pid, max_results=2)
    assert [v.ref for v in first.items] == ["flow:v2", "flow:v1"]
    rest = registry.list_versions(pid, page_token=first.next_token, max_results=2)
    assert [v.ref for v in rest.items] == ["samples:v1"] and rest.next_token is None
    names = registry.list_names(pid).items
    assert [(n.name, n.latest.version, n.versions) for n in names] == [
        ("flow", 2, 2),
        ("samples", 1, 1),
    ]


def test_bad_versions_store_nothing(store, registry, run):
    pid = run.project_id
    elsewhere = store.create_run(store.create_project("u1", owner="ann", group=None).id, user="ann")
    bad = [
        ({"name": "a b"}, INVALID_PARAMETER_VALUE),
        ({"sha256": "xyz"}, INVALID_PARAMETER_VALUE),
        ({"size": -1}, INVALID_PARAMETER_VALUE),
        ({"metadata": [1]}, INVALID_PARAMETER_VALUE),
        ({"metadata": {"x": float("nan")}}, INVALID_PARAMETER_VALUE),
        ({"metadata": {"x": "y" * 70_000}}, INVALID_PARAMETER_VALUE),
        ({"aliases": ["latest"]}, INVALID_PARAMETER_VALUE),
        ({"run_id": "f" * 32}, RESOURCE_DOES_NOT_EXIST),
        ({"run_id": elsewhere.id}, INVALID_PARAMETER_VALUE),
    ]
    for change, code in bad:
        args = {"name": "flow", "run_id": run.id, "sha256": A, "size": 1, **change}
        name = args.pop("name")
        assert code_of(registry.create_version, pid, name, **args) == code, change
    assert registry.list_versions(pid).items == []
    with pytest.raises(TrackingError, match=f"belongs to project {elsewhere.project_id}"):
        registry.create_version(pid, "flow", run_id=elsewhere.id, sha256=A, size=1)


def test_aliases_move_atomically_and_latest_is_implicit(registry, run):
    pid = run.project_id
    v1 = add(registry, run, A, aliases=["best", "prod"])
    assert v1.aliases == ("best", "prod")
    add(registry, run, B)
    moved = registry.set_alias(pid, "flow", "best", 2)
    assert moved.version == 2 and moved.aliases == ("best",)
    assert registry.get_version(pid, "flow:best").version == 2
    assert registry.get_version(pid, "flow:v1").aliases == ("prod",)
    assert registry.list_names(pid).items[0].aliases == {"best": 2, "prod": 1}
    assert code_of(registry.set_alias, pid, "flow", "latest", 1) == INVALID_PARAMETER_VALUE
    assert code_of(registry.set_alias, pid, "flow", "v2", 1) == INVALID_PARAMETER_VALUE
    assert code_of(registry.set_alias, pid, "flow", "best", 9) == RESOURCE_DOES_NOT_EXIST
    assert code_of(registry.set_alias, pid, "nope", "best", 1) == RESOURCE_DOES_NOT_EXIST
    registry.delete_alias(pid, "flow", "prod")
    assert code_of(registry.delete_alias, pid, "flow", "prod") == RESOURCE_DOES_NOT_EXIST
    assert code_of(registry.get_version, pid, "flow:prod") == RESOURCE_DOES_NOT_EXIST


def test_delete_refuses_aliased_and_latest_and_never_reuses_numbers(registry, run):
    pid = run.project_id
    add(registry, run, A, aliases=["best"])
    add(registry, run, B)
    with pytest.raises(TrackingError, match="alias.*best") as err:
        registry.delete_version(pid, "flow", 1)
    assert err.value.code == CONFLICT
    with pytest.raises(TrackingError, match="latest") as err:
        registry.delete_version(pid, "flow", 2)
    assert err.value.code == CONFLICT
    registry.set_alias(pid, "flow", "best", 2)
    registry.record_use(run.id, registry.get_version(pid, "flow:v1").id)
    assert registry.delete_version(pid, "flow", 1).sha256 == A
    assert registry.uses_of_run(run.id) == []  # its use records went with it
    assert code_of(registry.delete_version, pid, "flow", 1) == RESOURCE_DOES_NOT_EXIST
    assert add(registry, run, C).version == 3


def test_uses_and_lineage(store, registry, run):
    pid = run.project_id
    v1 = add(registry, run, A)
    consumer = store.create_run(pid, user="bob")
    other_project = store.create_project("downstream", owner="bob", group="nuclear")
    remote = store.create_run(other_project.id, user="bob")
    first = registry.record_use(consumer.id, v1.id)
    again = registry.record_use(consumer.id, v1.id)
    assert first.time == again.time and first.project_id == pid  # idempotent
    registry.record_use(remote.id, v1.id)
    lineage = registry.lineage(v1)
    assert lineage.produced_by == run.id
    assert [(u.run_id, u.project_id) for u in lineage.consumed_by] == [
        (consumer.id, pid),
        (remote.id, other_project.id),
    ]
    assert [u.version.ref for u in registry.uses_of_run(remote.id)] == ["flow:v1"]
    assert registry.uses_of_run(run.id) == []
    assert code_of(registry.record_use, consumer.id, 9999) == RESOURCE_DOES_NOT_EXIST
    assert code_of(registry.record_use, "f" * 32, v1.id) == RESOURCE_DOES_NOT_EXIST


def test_references_cover_run_artifacts_and_versions(store, registry, run):
    assert not registry.has_references() and registry.referenced_blobs() == set()
    store.add_artifact(run.id, "model.pt", A, 3)
    assert registry.has_references()
    add(registry, run, B)
    assert registry.referenced_blobs() == {A, B}
    assert registry.referenced_among([A, B, C]) == {A, B}
    assert registry.is_referenced(B) and not registry.is_referenced(C)
    store.add_artifact(run.id, "model.pt", C, 3)  # the path moves on: A is free, B is kept
    assert registry.referenced_blobs() == {B, C}


def test_retention(registry, run):
    pid = run.project_id
    for i in range(6):
        add(registry, run, f"{i:064x}")
    registry.set_alias(pid, "flow", "best", 1)
    add(registry, run, A, name="other")
    rule = RetentionRule(keep_last=2)
    dry = registry.apply_retention(rule, dry_run=True)
    assert [v.ref for v in dry.planned] == ["flow:v2", "flow:v3", "flow:v4"] and not dry.deleted
    assert len(registry.list_versions(pid, "flow").items) == 6
    done = registry.apply_retention(rule, project_id=pid)
    assert [v.ref for v in done.deleted] == ["flow:v2", "flow:v3", "flow:v4"]
    assert [v.version for v in registry.list_versions(pid, "flow").items] == [6, 5, 1]
    assert registry.apply_retention(rule).planned == []


def test_retention_skips_what_got_an_alias_meanwhile(registry, run):
    pid = run.project_id
    for sha in (A, B, C):
        add(registry, run, sha)

    class Stale(SqlArtifactRegistry):
        def version_groups(self, project_id=None, name=None):
            for group in super().version_groups(project_id, name):
                registry.set_alias(pid, "flow", "best", 1)  # after the plan read the versions
                yield group

    report = Stale(registry.engine).apply_retention(RetentionRule(keep_last=1))
    assert [v.ref for v in report.planned] == ["flow:v1", "flow:v2"]
    assert [v.ref for v in report.deleted] == ["flow:v2"]
    assert [(v.ref, "best" in why) for v, why in report.skipped] == [("flow:v1", True)]


def test_concurrent_creations_get_distinct_numbers(store, registry, run):
    threads, per_thread = 8, 5
    made, errors = [], []
    start = threading.Barrier(threads)

    def create():
        start.wait()
        try:
            for _ in range(per_thread):
                made.append(add(registry, run, A).version)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=create) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(60)
    assert not errors, errors
    assert sorted(made) == list(range(1, threads * per_thread + 1))


def test_concurrent_alias_moves_leave_one_alias_on_a_real_version(registry, run):
    pid = run.project_id
    for sha in (A, B, C):
        add(registry, run, sha)
    start = threading.Barrier(6)
    errors = []

    def move(version):
        start.wait()
        try:
            for _ in range(10):
                registry.set_alias(pid, "flow", "best", version)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    pool = [threading.Thread(target=move, args=(1 + i % 3,)) for i in range(6)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(60)
    assert not errors, errors
    with registry.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(t.artifact_aliases)).scalar() == 1
        )
    assert registry.get_version(pid, "flow:best").version in (1, 2, 3)


def test_migration_from_version_2_keeps_data_and_adds_tables(store_uri):
    """A version-2 database (no registry tables, no heartbeat index) opened by this code."""
    new_tables = {"lh_artifact_versions", "lh_artifact_aliases", "lh_artifact_uses"}
    old = sa.MetaData()
    for table in release_0_1.metadata.sorted_tables:  # 0.1's schema (version 4)
        if table.name not in new_tables:
            table.to_metadata(old)
    runs = old.tables["lh_runs"]
    runs.indexes = {i for i in runs.indexes if i.name != HEARTBEAT_INDEX}
    engine = sa.create_engine(store_uri)
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(old.tables["lh_schema_version"].insert().values(version=2))
        conn.execute(
            old.tables["lh_projects"].insert().values(
                id=1, name="legacy", owner="ann", group_name="lqcd", artifact_location="x",
                lifecycle_stage="active", creation_time=1, last_update_time=1, description="",
            )
        )  # fmt: skip
        conn.execute(
            runs.insert().values(
                run_id="0" * 32, project_id=1, name="r", user_id="ann", status="FINISHED",
                start_time=1, lifecycle_stage="active", artifact_uri="", code="{}",
                environment="{}", failure="{}", status_reason="",
            )
        )  # fmt: skip
        conn.execute(
            old.tables["lh_artifacts"]
            .insert()
            .values(run_id="0" * 32, path="model.pt", sha256=A, size=5, created=1)
        )
    inspector = sa.inspect(engine)
    assert not new_tables & set(inspector.get_table_names())
    assert "ix_lh_runs_status_heartbeat" not in {
        i["name"] for i in inspector.get_indexes("lh_runs")
    }
    engine.dispose()

    store = SqlStore(store_uri)
    try:
        assert store.get_project(1).name == "legacy"
        assert store.get_artifact("0" * 32, "model.pt").sha256 == A
        inspector = sa.inspect(store.engine)
        assert new_tables <= set(inspector.get_table_names())
        assert "ix_lh_runs_status_heartbeat" in {
            i["name"] for i in inspector.get_indexes("lh_runs")
        }
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(t.schema_version.c.version)).scalar() == t.SCHEMA_VERSION
        registry = SqlArtifactRegistry.for_store(store)
        v = registry.create_version(1, "flow", run_id="0" * 32, sha256=A, size=5, path="model.pt")
        assert v.version == 1 and registry.referenced_blobs() == {A}
    finally:
        store.close()
    again = SqlStore(store_uri)  # migrating twice changes nothing
    assert SqlArtifactRegistry.for_store(again).get_version(1, "flow:v1").sha256 == A
    again.close()
