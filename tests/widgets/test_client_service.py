"""TrackingClient against the real experiments app (jobs on): a round trip per resource."""

from __future__ import annotations

import dataclasses

import pytest

from latticehub.client import TrackingAPIError
from widgets.launcher_state import GroupOptions


def test_job_options_carry_every_field_the_launcher_reads(ann):
    options = ann.job_options()
    wanted = {f.name for f in dataclasses.fields(GroupOptions)} - {"extra"}
    assert set(options) == {"lqcd"}
    assert wanted <= set(options["lqcd"]), wanted - set(options["lqcd"])
    parsed = GroupOptions.from_json(options["lqcd"])
    assert parsed.executors == ("local",) and parsed.max_cpus == 2
    assert parsed.max_time_s == 600 and parsed.default_cpus is not None


def test_runs_logs_history_and_updates(ann):
    project = ann.project("client-roundtrip", "lqcd")
    assert ann.find_project("lqcd/client-roundtrip")["id"] == project["id"]
    assert ann.get_project(project["id"])["name"] == "client-roundtrip"
    run = ann.create_run(project["id"], name="r", params={"L": "8"})
    ann.log_batch(run["id"], metrics=[{"key": "loss", "value": v, "step": i}
                                      for i, v in enumerate((3.0, 2.0, 1.0))])  # fmt: skip
    assert ann.append_logs(run["id"], "stdout", 0, ["a", "b"], partial="50%") == 2
    assert [x["text"] for x in ann.iter_logs(run["id"])] == ["a", "b"]
    assert [p["value"] for p in ann.get_metric_history(run["id"], "loss")] == [3.0, 2.0, 1.0]
    assert ann.update_run(run["id"], status="FINISHED", end_time=1)["status"] == "FINISHED"
    (only,) = ann.search_runs(project["id"], filter="params.L = '8'")
    assert only["metrics"]["loss"]["value"] == 1.0
    rounds = list(ann.follow_run(run["id"], wait=1))
    assert rounds[-1]["done"] and [x["text"] for x in rounds[0]["stdout"]["lines"]] == ["a", "b"]
    assert ann.run_events(run["id"]) == []


def test_artifacts_and_the_registry(ann, tmp_path):
    project = ann.project("client-registry", "lqcd")
    run = ann.create_run(project["id"], name="producer")
    (tmp_path / "w.bin").write_bytes(b"weights" * 1000)
    ann.upload_artifact(run["id"], "model/w.bin", tmp_path / "w.bin")
    assert [a["path"] for a in ann.list_artifacts(run["id"], "model/")] == ["model/w.bin"]
    got = ann.download_artifact(run["id"], "model/w.bin", tmp_path / "back.bin")
    assert got.read_bytes() == b"weights" * 1000
    version = ann.register_artifact(project["id"], "flow", run["id"], "model/w.bin")
    assert version["ref"] == "flow:v1"
    assert ann.set_alias(project["id"], "flow", "best", 1)["aliases"] == ["best"]
    assert (
        ann.get_version(project["id"], "flow", "best")["lineage"]["produced_by"]["id"] == run["id"]
    )
    path = ann.download_version(project["id"], "flow", "best", tmp_path / "v.bin")
    assert path.read_bytes() == b"weights" * 1000
    (name,) = ann.list_registered(project["id"]).items
    assert name["name"] == "flow" and name["versions"] == 1
    consumer = ann.create_run(project["id"], name="consumer")
    ann.record_use(consumer["id"], project["id"], "flow:best")
    assert [u["version"]["ref"] for u in ann.run_uses(consumer["id"])] == ["flow:v1"]
    with pytest.raises(TrackingAPIError) as caught:
        ann.delete_version(project["id"], "flow", 1)  # aliased
    assert caught.value.status == 409
    ann.delete_alias(project["id"], "flow", "best")
    assert ann.register_artifact(project["id"], "flow", run["id"], "model/w.bin")["version"] == 2
    ann.delete_version(project["id"], "flow", 1)  # no alias, no longer the latest
    assert [v["version"] for v in ann.list_versions(project["id"], "flow").items] == [2]
    assert [a["path"] for a in ann.delete_artifact(run["id"], "model")] == ["model/w.bin"]
    assert ann.storage()["items"] and "/api/v1/jobs" in ann.openapi()["paths"]


def test_jobs_list_and_a_missing_job(ann):
    assert isinstance(list(ann.list_jobs(states=["RUNNING"])), list)
    with pytest.raises(TrackingAPIError) as caught:
        ann.get_job("0" * 32)
    assert caught.value.status == 404 and not caught.value.transient
