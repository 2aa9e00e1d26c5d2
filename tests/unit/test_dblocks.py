"""Advisory locks off PostgreSQL: SQLite deployments are one process, so the lock is a no-op."""

from __future__ import annotations

import sqlalchemy as sa

from hub_ext.common.dblocks import BLOB_GC_KEY, HEARTBEAT_SWEEP_KEY, AdvisoryLock, try_lock
from hub_ext.experiments.live import LiveBus


def test_sqlite_lock_always_succeeds_and_holds_no_connection(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        first = AdvisoryLock(engine, HEARTBEAT_SWEEP_KEY, "heartbeat sweep")
        second = AdvisoryLock(engine, HEARTBEAT_SWEEP_KEY, "heartbeat sweep")
        assert first.try_acquire() and second.try_acquire()
        assert first.held and not first.shared
        first.release()
        assert not first.held
        with try_lock(engine, BLOB_GC_KEY, "blob gc") as got:
            assert got
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


def test_no_engine_means_no_lock():
    lock = AdvisoryLock(None, BLOB_GC_KEY, "blob gc")
    assert lock.try_acquire() and lock.held
    lock.release()
    lock.release()  # idempotent


def test_bus_forwards_local_changes_but_not_remote_ones():
    bus = LiveBus()
    sent: list[tuple] = []
    bus.forward = lambda *change: sent.append(change)
    bus.notify("r1", "stdout")
    bus.publish_metrics("r1", iter([{"key": "k", "value": 1.0, "step": 0, "timestamp": 0}]))
    bus.set_partial("r1", "stdout", "50%")
    bus.set_partial("r1", "stdout", "50%")  # unchanged: nothing to tell
    assert [c[1:] for c in sent] == [
        (("stdout",), (), None, 0),
        ((), [{"key": "k", "value": 1.0, "step": 0, "timestamp": 0}], None, 0),
        ((), (), ("stdout", "50%"), 0),
    ]
    points, cursor, reset = bus.metrics_since("r1", f"{bus.epoch}-0")
    assert len(points) == 1 and not reset  # the generator was read once for both
    bus.apply_remote("r1", ["stderr"], [{"key": "k", "value": 2.0, "step": 1, "timestamp": 1}])
    assert len(sent) == 3
    more, cursor, reset = bus.metrics_since("r1", cursor)
    assert [p["step"] for p in more] == [1] and not reset


def test_points_left_out_make_readers_reset():
    bus = LiveBus()
    bus.publish_metrics("r1", [{"key": "k", "value": 1.0, "step": 0, "timestamp": 0}])
    cursor = bus.cursor("r1")
    newest = {"key": "k", "value": 9.0, "step": 9, "timestamp": 9}
    bus.apply_remote("r1", (), [newest], skipped=8)
    points, now, reset = bus.metrics_since("r1", cursor)
    assert reset and points == []  # the reader reloads the history from the store
    assert bus.topic_versions("r1")["run"] == 1  # and the run (its metric keys)
    assert bus.metrics_since("r1", now) == ([], now, False)


def test_resync_makes_every_reader_reread():
    bus = LiveBus()
    bus.publish_metrics("r1", [{"key": "k", "value": 1.0, "step": 0, "timestamp": 0}])
    cursor, version = bus.cursor("r1"), bus.version("r1")
    bus.resync()
    assert bus.version("r1") > version
    assert set(bus.topic_versions("r1")) == {"run", "stdout", "stderr", "timeline"}
    assert bus.metrics_since("r1", cursor)[2]
