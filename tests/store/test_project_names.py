"""Project names per group (schema 4) and the upgrade from schema 3, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub_ext.experiments.store import SqlStore, TrackingError
from hub_ext.experiments.store import schema as t
from hub_ext.experiments.store.entities import Metric
from hub_ext.experiments.store.errors import RESOURCE_ALREADY_EXISTS
from hub_ext.experiments.store.migrations import release_0_1

RUN_A, RUN_B = "a" * 32, "b" * 32
SHA = "5" * 64
NEW_INDEXES = {"uq_lh_projects_group_name", "uq_lh_projects_private_name", "ix_lh_projects_name"}


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(TrackingError) as err:
        call(*args, **kwargs)
    return err.value.code


def test_names_are_unique_per_group_and_per_private_owner(store):
    lqcd = store.create_project("flows", owner="ann", group="lqcd")
    nuclear = store.create_project("flows", owner="eve", group="nuclear")  # another group: fine
    mine = store.create_project("flows", owner="ann", group=None)  # ann's private namespace
    theirs = store.create_project("flows", owner="eve", group=None)
    assert len({lqcd.id, nuclear.id, mine.id, theirs.id}) == 4
    with pytest.raises(TrackingError) as err:
        store.create_project("flows", owner="bob", group="lqcd")
    assert err.value.code == RESOURCE_ALREADY_EXISTS
    assert "in group 'lqcd'" in err.value.message and "nuclear" not in err.value.message
    with pytest.raises(TrackingError) as err:
        store.create_project("flows", owner="ann", group=None)
    assert "among ann's private projects" in err.value.message
    # a deleted project keeps its name (it can be restored)
    store.update_project(lqcd.id, lifecycle_stage="deleted")
    assert code_of(store.create_project, "flows", owner="bob", group="lqcd") == (
        RESOURCE_ALREADY_EXISTS
    )
    # renames are checked in the project's own namespace
    other = store.create_project("other", owner="bob", group="lqcd")
    assert code_of(store.update_project, other.id, name="flows") == RESOURCE_ALREADY_EXISTS
    assert store.update_project(nuclear.id, name="other").name == "other"


def test_projects_named_and_the_lookup_without_a_caller(store):
    a = store.create_project("flows", owner="ann", group="lqcd")
    assert store.get_project_by_name("flows").id == a.id  # the only one: found
    b = store.create_project("flows", owner="eve", group="nuclear")
    assert [p.id for p in store.projects_named("flows")] == [a.id, b.id]
    assert store.projects_named("nope") == []
    assert store.get_project_by_name("flows") is None  # several: a caller must choose
    assert store.get_project_by_name("lqcd/flows").id == a.id
    assert store.get_project_by_name("nuclear/flows").id == b.id
    assert store.get_project_by_name("theory/flows") is None
    odd = store.create_project("lqcd/flows", owner="ann", group=None)  # a name with a slash
    assert store.get_project_by_name("lqcd/flows").id == a.id  # the group's, qualified
    assert odd.id in [p.id for p in store.projects_named("lqcd/flows")]


def test_giving_a_project_to_another_owner(store):
    group = store.create_project("flows", owner="ann", group="lqcd")
    assert store.update_project(group.id, owner="bob").owner == "bob"
    assert store.get_project(group.id).owner == "bob"
    private = store.create_project("mine", owner="ann", group=None)
    store.create_project("mine", owner="cat", group=None)
    # cat already has a private project of that name
    with pytest.raises(TrackingError) as err:
        store.update_project(private.id, owner="cat")
    assert err.value.code == RESOURCE_ALREADY_EXISTS and "cat's private" in err.value.message
    assert store.get_project(private.id).owner == "ann"
    assert code_of(store.update_project, private.id, owner="") == "INVALID_PARAMETER_VALUE"


# -- the upgrade from schema 3 -------------------------------------------------------------
def _version_3_metadata() -> sa.MetaData:
    """The tables as schema 3 had them: one name unique across the service."""
    old = sa.MetaData()
    for table in release_0_1.metadata.sorted_tables:  # 0.1's schema (version 4)
        table.to_metadata(old)
    projects = old.tables["lh_projects"]
    projects.indexes = {i for i in projects.indexes if i.name not in NEW_INDEXES}
    projects.append_constraint(sa.UniqueConstraint("name", name=release_0_1.LEGACY_NAME_CONSTRAINT))
    return old


def _seed_version_3(engine: sa.Engine, old: sa.MetaData) -> None:
    tb = old.tables
    project = dict(artifact_location="x", lifecycle_stage="active", creation_time=1,
                   last_update_time=2, description="d")  # fmt: skip
    run = dict(status="FINISHED", start_time=1, lifecycle_stage="active", artifact_uri="u",
               code="{}", environment="{}", failure="{}", status_reason="")  # fmt: skip
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(tb["lh_schema_version"].insert().values(version=3))
        conn.execute(
            tb["lh_projects"].insert(),
            [
                {"id": 3, "name": "flows", "owner": "ann", "group_name": "lqcd", **project},
                {"id": 7, "name": "mine", "owner": "ann", "group_name": None, **project},
                {"id": 9, "name": "old", "owner": "bob", "group_name": "lqcd", **project,
                 "lifecycle_stage": "deleted"},
            ],
        )  # fmt: skip
        conn.execute(tb["lh_project_tags"].insert().values(project_id=3, key="k", value="v"))
        conn.execute(tb["lh_project_shares"].insert().values(project_id=3, group_name="nuclear"))
        conn.execute(
            tb["lh_runs"].insert(),
            [
                {"run_id": RUN_A, "project_id": 3, "name": "a", "user_id": "ann", **run},
                {"run_id": RUN_B, "project_id": 7, "name": "b", "user_id": "ann", **run},
            ],
        )
        conn.execute(tb["lh_params"].insert().values(run_id=RUN_A, key="L", value="8"))
        conn.execute(tb["lh_tags"].insert().values(run_id=RUN_A, key="t", value="1"))
        conn.execute(
            tb["lh_metrics"]
            .insert()
            .values(run_id=RUN_A, key="loss", step=1, timestamp=5, value=0.5, is_nan=False)
        )
        conn.execute(
            tb["lh_latest_metrics"]
            .insert()
            .values(run_id=RUN_A, key="loss", step=1, timestamp=5, value=0.5, is_nan=False)
        )
        conn.execute(
            tb["lh_logs"].insert().values(run_id=RUN_A, stream="stdout", seq=0, text="hi",
                                          timestamp=5)
        )  # fmt: skip
        conn.execute(
            tb["lh_artifacts"].insert().values(run_id=RUN_A, path="m.pt", sha256=SHA, size=3,
                                               created=5)
        )  # fmt: skip
        conn.execute(
            tb["lh_jobs"].insert().values(
                job_id="j" * 32, run_id=RUN_A, project_id=3, user_id="ann", group_name="lqcd",
                executor="local", state="FINISHED", reason="", resources="{}", config="{}",
                workdir="", node="", created=1,
            )
        )  # fmt: skip
        conn.execute(
            tb["lh_run_events"].insert().values(run_id=RUN_A, time=1, kind="submitted",
                                                message="m")
        )  # fmt: skip
        conn.execute(
            tb["lh_artifact_versions"].insert().values(
                id=1, project_id=3, name="flow", version=1, run_id=RUN_A, path="m.pt",
                sha256=SHA, size=3, created=5, description="", metadata="{}",
            )
        )  # fmt: skip
        conn.execute(
            tb["lh_artifact_aliases"].insert().values(project_id=3, name="flow", alias="best",
                                                      version_id=1)
        )  # fmt: skip
        conn.execute(tb["lh_artifact_uses"].insert().values(run_id=RUN_B, version_id=1, time=6))
        if engine.dialect.name == "postgresql":  # as a database that made these rows would be
            for table in ("lh_projects", "lh_artifact_versions"):
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
                )  # fmt: skip


def _dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    out = {}
    with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            if table.name in ("lh_schema_version", t.metric_blocks.name):
                continue  # points: rows before, blocks after (the test reads the history)
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_upgrade_from_version_3_keeps_every_row_and_scopes_names_to_groups(store_uri):
    old = _version_3_metadata()
    engine = sa.create_engine(store_uri)
    _seed_version_3(engine, old)
    before = _dump(engine)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert release_0_1.sqlite_has_legacy_name_constraint(conn)
    else:
        unique = sa.inspect(engine).get_unique_constraints("lh_projects")
        assert release_0_1.LEGACY_NAME_CONSTRAINT in {c["name"] for c in unique}
    engine.dispose()

    store = SqlStore(store_uri)
    try:
        assert _dump(store.engine) == before  # nothing lost, nothing changed, ids kept
        assert store.get_metric_history(RUN_A, "loss") == [Metric("loss", 0.5, 5, 1)]
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(t.schema_version.c.version)).scalar() == t.SCHEMA_VERSION
            if store.engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert not release_0_1.sqlite_has_legacy_name_constraint(conn)
        inspector = sa.inspect(store.engine)
        assert NEW_INDEXES <= {i["name"] for i in inspector.get_indexes("lh_projects")}
        assert release_0_1.LEGACY_NAME_CONSTRAINT not in {
            c["name"] for c in inspector.get_unique_constraints("lh_projects")
        }
        # the projects and what hangs off them read as before
        flows = store.get_project(3)
        assert (flows.name, flows.group, flows.tags, flows.shared_with) == (
            "flows", "lqcd", {"k": "v"}, ("nuclear",),
        )  # fmt: skip
        assert store.get_run(RUN_A).params == {"L": "8"}
        assert store.get_project(9).lifecycle_stage == "deleted"
        # names are now per group; the old rule's name is free elsewhere
        elsewhere = store.create_project("flows", owner="eve", group="nuclear")
        assert elsewhere.id > 9  # ids go on after the kept ones
        assert code_of(store.create_project, "flows", owner="bob", group="lqcd") == (
            RESOURCE_ALREADY_EXISTS
        )
        assert code_of(store.create_project, "mine", owner="ann", group=None) == (
            RESOURCE_ALREADY_EXISTS
        )
        # foreign keys still hold on the rebuilt table
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
            conn.execute(
                t.runs.insert().values(
                    run_id="c" * 32, project_id=999, name="x", user_id="ann", status="RUNNING",
                    start_time=1, lifecycle_stage="active", artifact_uri="", code="{}",
                    environment="{}", failure="{}", status_reason="",
                )
            )  # fmt: skip
        after = _dump(store.engine)
    finally:
        store.close()
    again = SqlStore(store_uri)  # opening again changes nothing
    try:
        assert _dump(again.engine) == after
        assert [p.id for p in again.projects_named("flows")] == [3, elsewhere.id]
    finally:
        again.close()


def test_a_failed_upgrade_changes_nothing(store_uri, monkeypatch):
    """An error inside the upgrade rolls it back whole: schema 3, every row, the old rule."""
    old = _version_3_metadata()
    engine = sa.create_engine(store_uri)
    _seed_version_3(engine, old)
    before = _dump(engine)
    engine.dispose()

    real = release_0_1.drop_legacy_name_constraint

    def broken(conn):
        real(conn)
        raise RuntimeError("disk full")

    monkeypatch.setattr(release_0_1, "drop_legacy_name_constraint", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        SqlStore(store_uri)
    engine = sa.create_engine(store_uri)
    try:
        assert _dump(engine) == before
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.schema_version.c.version)).scalar() == 3
        assert "lh_alembic_version" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    monkeypatch.undo()
    store = SqlStore(store_uri)  # and the real upgrade still goes through afterwards
    try:
        assert _dump(store.engine) == before
    finally:
        store.close()
