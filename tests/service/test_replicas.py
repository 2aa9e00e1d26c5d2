"""Two replicas of the experiments app over one PostgreSQL database, in-process.

Live streams cross replicas through LISTEN/NOTIFY (hub_ext/experiments/replicas.py); the
heartbeat sweep, the job poll and blob GC run on one replica at a time (advisory locks,
hub_ext/common/dblocks.py). Each replica has its own store, live bus and bridge, as separate
processes would.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_ext.common.dblocks import BLOB_GC_KEY, HEARTBEAT_SWEEP_KEY, JOB_POLL_KEY, AdvisoryLock
from hub_ext.experiments import cli, live
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.gc import GcBusy, collect
from hub_ext.experiments.heartbeats import HeartbeatMonitor
from hub_ext.experiments.live import LiveBus
from hub_ext.experiments.replicas import ReplicaBridge
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.registry import SqlArtifactRegistry
from latticehub.columnar import MetricColumns
from tests.conftest import _drop, _postgres_url
from tests.service.fakehub import experiments
from tests.service.test_live import SSEReader

pytestmark = pytest.mark.postgres

H_ANN = {"Authorization": "token tok-ann"}
#: the longest a reader waits for what a write on the other replica changed (not a timing)
PATIENCE_S = 20.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database shared by the test's replicas."""
    url, (admin_url, db) = _postgres_url()
    yield url
    _drop(admin_url, db)


@dataclass
class Replica:
    """One replica: its URL, store, live bus and bridge."""

    url: str
    store: SqlStore
    bus: LiveBus
    bridge: ReplicaBridge


@contextlib.contextmanager
def replica(db_url: str, blob_dir: Path) -> Iterator[Replica]:
    """An experiments app with its own store, bus and LISTEN/NOTIFY bridge."""
    store = SqlStore(db_url)
    bus = LiveBus()
    bridge = ReplicaBridge(bus, store.engine, backoff_s=(0.05, 0.5)).attach()
    try:
        with experiments(store, blob_dir, live=bus, background=[bridge.run_forever]) as url:
            assert bridge.listening.wait(10), "the replica never started listening"
            yield Replica(url, store, bus, bridge)
    finally:
        store.close()


@pytest.fixture
def pair(pg_url, tmp_path) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B over one database and one blob directory."""
    with replica(pg_url, tmp_path / "blobs") as a, replica(pg_url, tmp_path / "blobs") as b:
        yield a, b


def make_run(url: str, name: str = "rep") -> str:
    r = requests.post(f"{url}/api/v1/projects", json={"name": name, "group": "lqcd"}, headers=H_ANN)
    assert r.status_code == 201, r.text
    r = requests.post(f"{url}/api/v1/runs", json={"project": name}, headers=H_ANN)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def log(url: str, run_id: str, offset: int, lines: list[str], **kw: Any) -> int:
    r = requests.post(
        f"{url}/api/v1/runs/{run_id}/logs/stdout",
        json={"offset": offset, "lines": lines, **kw},
        headers=H_ANN,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["next_offset"]


def metrics(url: str, run_id: str, steps: list[int], key: str = "loss") -> None:
    body: dict[str, Any] = {
        "metrics": [{"key": key, "steps": steps, "values": [s / 2 for s in steps]}]
    }
    r = requests.post(f"{url}/api/v1/runs/{run_id}/metrics", json=body, headers=H_ANN, timeout=30)
    assert r.status_code == 200, r.text


@dataclass
class Follower:
    """A long-poll reader (``/updates``) that may move to another replica with its cursor."""

    url: str
    run_id: str
    cursor: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    #: key -> step -> value; a reset replaces everything with the history
    points: dict[str, dict[int, float]] = field(default_factory=dict)
    resets: int = 0
    partial: str = ""

    def poll(self, wait: float = 5.0) -> dict[str, Any]:
        params = {k: v for k, v in self.cursor.items() if v is not None}
        params["metrics"] = self.cursor.get("metrics") or "1"
        params["wait"] = wait
        r = requests.get(
            f"{self.url}/api/v1/runs/{self.run_id}/updates",
            params=params,
            headers=H_ANN,
            timeout=wait + 20,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        offsets = [line["offset"] for line in body["stdout"]["lines"]]
        assert offsets == list(range(len(self.lines), len(self.lines) + len(offsets)))
        self.lines += [line["text"] for line in body["stdout"]["lines"]]
        if body["cursor"].get("partial_stdout") != self.cursor.get("partial_stdout"):
            self.partial = body["stdout"]["partial"]  # else unchanged (and sent as "")
        update = body["metrics"]
        if update["reset"]:
            self.resets += 1
            self.points = {}
        steps: dict[str, list[int]] = {}
        for point in update["points"]:
            self.points.setdefault(point["key"], {})[point["step"]] = point["value"]
            steps.setdefault(point["key"], []).append(point["step"])
        if not update["reset"]:  # new points come in the order they were written
            assert all(s == sorted(s) for s in steps.values()), steps
        self.cursor = body["cursor"]
        return body

    def until(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not done():
            assert time.monotonic() < deadline, f"the reader never saw {what}"
            self.poll(wait=2.0)


def test_writes_on_a_reach_a_long_poll_reader_on_b(pair):
    a, b = pair
    run_id = make_run(a.url)
    reader = Follower(b.url, run_id)
    reader.poll(wait=0)  # starts with the (empty) history
    done = threading.Event()
    answers: list[dict] = []

    def wait_on_b() -> None:
        answers.append(reader.poll(wait=30))
        done.set()

    waiter = threading.Thread(target=wait_on_b)
    waiter.start()
    deadline = time.monotonic() + 10
    while b.bus.readers() == 0:  # the long-poll waits on B's bus now
        assert time.monotonic() < deadline
        time.sleep(0.02)
    offset = log(a.url, run_id, 0, ["one", "two"], partial="3%")
    assert done.wait(PATIENCE_S), "a write on A did not wake the long-poll on B"
    waiter.join()
    reader.until(lambda: reader.lines == ["one", "two"] and reader.partial == "3%", "the lines")
    for chunk in range(5):
        metrics(a.url, run_id, list(range(chunk * 10, chunk * 10 + 10)))
        offset = log(a.url, run_id, offset, [f"line {chunk}"])
    want = {s: s / 2 for s in range(50)}
    reader.until(lambda: reader.points.get("loss") == want and len(reader.lines) == 7, "all")
    assert reader.lines == ["one", "two"] + [f"line {c}" for c in range(5)]
    assert reader.resets == 1  # only the first read: every later point came through the ring
    assert a.bridge.sent > 0 and a.bridge.received == 0  # A skips its own notifications
    assert b.bridge.received >= 7


def test_sse_reader_on_b_sees_every_line_and_point_in_order(pair):
    a, b = pair
    run_id = make_run(a.url)
    sse = SSEReader(f"{b.url}/api/v1/runs/{run_id}/stream", params={"metrics": "1"})
    assert sse.status == 200
    sse.next("run", timeout=PATIENCE_S)
    offset = 0
    for chunk in range(4):
        offset = log(a.url, run_id, offset, [f"l{chunk}a", f"l{chunk}b"])
        metrics(a.url, run_id, [chunk * 2, chunk * 2 + 1])
    lines: list[str] = []
    steps: list[int] = []
    deadline = time.monotonic() + PATIENCE_S
    while len(lines) < 8 or len(steps) < 8:
        event = sse.events.get(timeout=max(0.1, deadline - time.monotonic()))
        if event["event"] == "log":
            lines += [x["text"] for x in event["data"]["lines"]]
        elif event["event"] == "metrics":
            if event["data"]["reset"]:
                steps = []
            steps += [p["step"] for p in event["data"]["points"]]
        assert event["event"] != "closed"
    assert lines == [f"l{c}{x}" for c in range(4) for x in "ab"]
    assert steps == list(range(8))
    requests.patch(f"{a.url}/api/v1/runs/{run_id}", json={"status": "FINISHED"}, headers=H_ANN)
    assert sse.next("end", timeout=PATIENCE_S)["data"] == {"reason": "finished"}


def test_a_write_larger_than_a_notification_resets_b_readers_completely(pair):
    a, b = pair
    run_id = make_run(a.url)
    reader = Follower(b.url, run_id)
    reader.poll(wait=0)
    metrics(a.url, run_id, [0, 1, 2])
    reader.until(lambda: len(reader.points.get("loss", {})) == 3, "the first points")
    resets = reader.resets
    sent = a.bridge.sent
    metrics(a.url, run_id, list(range(3, 1503)))  # far more points than 8000 bytes hold
    metrics(a.url, run_id, list(range(3, 1503)), key="acc")  # a key B's reader never saw
    want = {s: s / 2 for s in range(1503)}
    reader.until(lambda: reader.points.get("loss") == want, "every point of the big write")
    reader.until(lambda: len(reader.points.get("acc", {})) == 1500, "the new key")
    assert reader.resets > resets  # B's reader reloaded the history
    assert a.bridge.sent > sent


def test_payload_keeps_the_newest_points_within_the_limit(pg_url):
    store = SqlStore(pg_url)
    try:
        bridge = ReplicaBridge(LiveBus(), store.engine, max_payload=1000)
        points = [{"key": "k", "value": float(i), "step": i, "timestamp": i} for i in range(500)]
        points.append({"key": "k", "value": float("nan"), "step": 500, "timestamp": 500})
        payload = bridge.encode("r1", ("run",), points, ("stdout", "é" * 5000))
        assert len(payload.encode()) <= 1000
        other = ReplicaBridge(LiveBus(), store.engine)
        assert other.apply(payload)
        assert not bridge.apply(payload)  # its own
        got, cursor, reset = other.bus.metrics_since("r1", f"{other.bus.epoch}-0")
        assert reset and got == []  # points were left out: readers reload
        ring = list(other.bus._feeds["r1"].ring)
        kept = [p for _, p in ring]
        assert kept and kept[-1]["value"] == "NaN" and kept[-1]["step"] == 500
        assert [p["step"] for p in kept] == list(range(501 - len(kept), 501))
        seq, partial = other.bus.partial("r1", "stdout")
        assert seq == 1 and partial and set(partial) == {"é"}  # the tail of the line
        assert other.bus.topic_versions("r1")["run"] == 1
    finally:
        store.close()


def test_points_a_write_left_out_of_the_ring_count_as_skipped(pg_url):
    """A columnar write bigger than the ring: the other replica's readers reload."""
    store = SqlStore(pg_url)
    try:
        sent: list[str] = []
        bus = LiveBus()
        bridge = ReplicaBridge(bus, store.engine)
        bus.forward = lambda *change: sent.append(bridge.encode(*change))
        n = live.RING_POINTS + 10
        steps = array("q", range(n))
        bus.publish_columns("r1", [MetricColumns("k", steps, steps, array("d", steps))])
        body = json.loads(sent[-1])
        assert body["g"] + len(body.get("p", [])) == n  # every point counted, sent or not
        other = ReplicaBridge(LiveBus(), store.engine)
        assert other.apply(sent[-1])
        got, _, reset = other.bus.metrics_since("r1", f"{other.bus.epoch}-0")
        assert reset and got == []
    finally:
        store.close()


def test_reader_moves_to_the_other_replica_when_one_stops(pg_url, tmp_path):
    with replica(pg_url, tmp_path / "blobs") as b:
        with replica(pg_url, tmp_path / "blobs") as a:
            run_id = make_run(b.url)
            reader = Follower(a.url, run_id)
            reader.poll(wait=0)
            offset = log(b.url, run_id, 0, ["before 1", "before 2"])
            metrics(b.url, run_id, [0, 1, 2])
            reader.until(lambda: len(reader.lines) == 2 and len(reader.points) == 1, "before")
        # A is gone; writes go on through B, some while no reader is connected at all
        with pytest.raises(requests.ConnectionError):
            reader.poll(wait=0)
        offset = log(b.url, run_id, offset, ["after 1"])
        metrics(b.url, run_id, [3, 4])
        reader.url = b.url  # the front address would send the reader here
        offset = log(b.url, run_id, offset, ["after 2"])
        metrics(b.url, run_id, [5])
        want = {s: s / 2 for s in range(6)}
        reader.until(lambda: len(reader.lines) == 4 and reader.points.get("loss") == want, "all")
        assert reader.lines == ["before 1", "before 2", "after 1", "after 2"]
        assert reader.resets == 2  # its metric cursor was A's: it reloaded from the store


def test_listener_reconnects_and_readers_resync(pair):
    a, b = pair
    run_id = make_run(a.url)
    reader = Follower(b.url, run_id)
    reader.poll(wait=0)
    version = b.bus.version(run_id)
    with b.store.engine.connect() as conn:  # as if PostgreSQL restarted under B's listener
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid() "
            "AND datname = current_database()"
        )
        conn.commit()
    deadline = time.monotonic() + PATIENCE_S
    while b.bus.version(run_id) == version:  # B's readers were told to re-read everything
        assert time.monotonic() < deadline, "B's listener did not come back"
        time.sleep(0.05)
    assert b.bridge.listening.wait(PATIENCE_S)
    reader.poll(wait=0)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (reader.poll(wait=30), done.set()))
    waiter.start()
    deadline = time.monotonic() + 10
    while b.bus.readers() == 0:  # the long-poll waits on B's bus now
        assert time.monotonic() < deadline
        time.sleep(0.02)
    log(a.url, run_id, 0, ["after the break"])
    assert done.wait(PATIENCE_S), "B's new listening connection did not wake its reader"
    waiter.join()
    reader.until(lambda: reader.lines == ["after the break"], "the line after the break")


def test_one_of_two_monitors_sweeps_and_a_silent_run_is_lost_once(pg_url):
    one, two = SqlStore(pg_url), SqlStore(pg_url)
    monitors: list[HeartbeatMonitor] = []
    try:
        run_id = lost_candidate_in(one, "hb")
        events = one.job_store()
        monitors += [
            HeartbeatMonitor(
                store, timeout_s=1, events=store.job_store(), clock=lambda: 10_000,
                lock=AdvisoryLock(store.engine, HEARTBEAT_SWEEP_KEY, "heartbeat sweep"),
            )
            for store in (one, two)
        ]  # fmt: skip
        found: list[list] = [[], []]
        start = threading.Barrier(2)

        def sweep(i: int) -> None:
            start.wait()
            found[i] = monitors[i].sweep()

        threads = [threading.Thread(target=sweep, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(len(f) for f in found) == [0, 1]
        assert [e.kind for e in events.list_events(run_id)] == ["lost"]
        leader = 0 if found[0] else 1
        follower = monitors[1 - leader]
        # the leader keeps the lock from round to round: the other replica skips
        assert monitors[leader].lock.held and not follower.lock.held
        second = lost_candidate_in(two, "hb2")
        assert follower.sweep() == []
        assert [r.id for r in monitors[leader].sweep()] == [second]
        # the leader stops (its connection closes): the other takes over
        monitors[leader].lock.release()
        third = lost_candidate_in(one, "hb3")
        assert [r.id for r in follower.sweep()] == [third]
        assert [e.kind for e in events.list_events(run_id)] == ["lost"]
    finally:
        for m in monitors:
            m.lock.release()
        one.close()
        two.close()


def lost_candidate_in(store: SqlStore, name: str) -> str:
    project = store.create_project(name, owner="ann", group="lqcd")
    run = store.create_run(project.id, user="ann")
    store.update_run(run.id, heartbeat=1000)
    return run.id


def test_job_poll_runs_on_the_replica_holding_its_lock(pg_url):
    store = SqlStore(pg_url)
    try:
        first = AdvisoryLock(store.engine, JOB_POLL_KEY, "job poll")
        second = AdvisoryLock(store.engine, JOB_POLL_KEY, "job poll")
        assert first.try_acquire() and first.try_acquire()  # a holder keeps it
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire()
        second.release()
    finally:
        store.close()


def test_two_concurrent_gcs_one_refuses(pg_url, tmp_path, capsys):
    store = SqlStore(pg_url)
    blobs = BlobStore(tmp_path / "blobs")
    registry = SqlArtifactRegistry.for_store(store)
    writer = blobs.writer()
    writer.write(b"some artifact")
    writer.commit()
    inside, leave = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def slow_progress(_report: Any) -> None:
        inside.set()
        assert leave.wait(30)

    def first_gc() -> None:
        outcome.append(
            collect(blobs, registry, dry_run=True, force=True, progress=slow_progress,
                    progress_every=1)
        )  # fmt: skip

    thread = threading.Thread(target=first_gc)
    thread.start()
    try:
        assert inside.wait(30), "the first gc never started"
        with pytest.raises(GcBusy, match="another gc is running"):
            collect(blobs, SqlArtifactRegistry.for_store(store), dry_run=True, force=True)
        code = cli.main(
            ["gc", "--db-url", pg_url, "--artifact-dir", str(tmp_path / "blobs"), "--dry-run"]
        )
        assert code == 2
        assert "another gc is running" in capsys.readouterr().err
    finally:
        leave.set()
        thread.join(30)
        store.close()
    assert outcome and outcome[0].scanned == 1  # the first one ran to its end
    # once it is done, the next one runs
    store = SqlStore(pg_url)
    try:
        report = collect(blobs, SqlArtifactRegistry.for_store(store), dry_run=True, force=True)
        assert report.scanned == 1
    finally:
        store.close()
    assert BLOB_GC_KEY != JOB_POLL_KEY != HEARTBEAT_SWEEP_KEY
