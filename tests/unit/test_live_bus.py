"""The change feed: versions, waiting, the bounded metric ring and cursor resets."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hub_ext.experiments import live
from hub_ext.experiments.live import LiveBus


def points(n: int, start: int = 0) -> list[dict]:
    return [
        {"key": "loss", "value": float(i), "step": i, "timestamp": i}
        for i in range(start, start + n)
    ]


def test_metrics_since_a_cursor_returns_only_newer_points():
    bus = LiveBus()
    start = bus.cursor("r")
    bus.publish_metrics("r", points(3))
    got, cursor, reset = bus.metrics_since("r", start)
    assert [p["step"] for p in got] == [0, 1, 2] and not reset
    bus.publish_metrics("r", points(2, start=3))
    got, _, reset = bus.metrics_since("r", cursor)
    assert [p["step"] for p in got] == [3, 4] and not reset
    assert bus.metrics_since("r", bus.cursor("r"))[0] == []


@pytest.mark.parametrize(
    "cursor",
    [None, "", "nonsense", "otherepoch-0", "{epoch}-999", "{epoch}-x"],
    ids=["none", "empty", "garbage", "other-process", "from-the-future", "not-a-number"],
)
def test_unusable_cursors_ask_the_reader_to_reload(cursor):
    bus = LiveBus()
    bus.publish_metrics("r", points(2))
    if cursor:
        cursor = cursor.format(epoch=bus.epoch)
    got, now, reset = bus.metrics_since("r", cursor)
    assert reset and got == [] and now == bus.cursor("r")


def test_ring_is_bounded_and_a_cursor_older_than_it_resets(monkeypatch):
    monkeypatch.setattr(live, "RING_POINTS", 10)
    bus = LiveBus()
    start = bus.cursor("r")
    bus.publish_metrics("r", points(25))
    feed = bus._feeds["r"]
    assert len(feed.ring) == 10
    assert bus.metrics_since("r", start)[2] is True  # 15 points fell out of the ring
    inside = f"{bus.epoch}-20"
    got, _, reset = bus.metrics_since("r", inside)
    assert not reset and [p["step"] for p in got] == [20, 21, 22, 23, 24]


def test_feeds_are_bounded_but_one_with_a_reader_is_kept(monkeypatch):
    monkeypatch.setattr(live, "MAX_FEEDS", 3)
    bus = LiveBus()

    async def scenario():
        waiting = asyncio.ensure_future(bus.wait("watched", 0, 5))
        await asyncio.sleep(0)
        for i in range(10):
            bus.notify(f"run-{i}")
        assert "watched" in bus._feeds and len(bus._feeds) <= 4
        bus.notify("watched")
        assert await waiting is True

    asyncio.run(scenario())


def test_partial_line_keeps_what_a_terminal_shows_and_is_bounded():
    bus = LiveBus()
    bus.set_partial("r", "stdout", "\r 10%|#   |\r 50%|##  |\r")
    assert bus.partial("r", "stdout") == (1, " 50%|##  |")
    version = bus.version("r")
    bus.set_partial("r", "stdout", " 50%|##  |")  # unchanged: no new version, no wake-up
    assert bus.version("r") == version and bus.partial("r", "stdout")[0] == 1
    bus.set_partial("r", "stdout", "x" * 10_000)
    seq, text = bus.partial("r", "stdout")
    assert seq == 2 and len(text) == live.MAX_PARTIAL
    assert bus.partial("r", "stderr") == (0, "") and bus.partial("other", "stdout") == (0, "")


def test_wait_wakes_on_a_write_from_another_thread_and_times_out_otherwise():
    bus = LiveBus()

    async def scenario():
        version = bus.version("r")
        assert await bus.wait("r", version, 0.05) is False
        threading.Timer(0.05, bus.notify, ("r",)).start()
        assert await bus.wait("r", version, 5) is True
        assert bus.readers() == 0
        # a write before the wait starts is not missed: the version already moved
        assert await bus.wait("r", version, 0.01) is True

    asyncio.run(scenario())


def columns(key: str, start: int, n: int, stamp: int = 7):
    from array import array

    from latticehub.columnar import MetricColumns

    return MetricColumns(
        key,
        array("q", range(start, start + n)),
        array("q", [stamp]) * n,
        array("d", map(float, range(start, start + n))),
    )


def test_ring_trims_across_writes_of_every_size(monkeypatch):
    monkeypatch.setattr(live, "RING_POINTS", 10)
    bus = LiveBus()
    start = bus.cursor("r")
    bus.publish_metrics("r", points(4))  # seq 1..4
    bus.publish_columns("r", [columns("a", 4, 3)])  # 5..7
    bus.publish_metrics("r", iter(points(5, start=7)))  # 8..12: the oldest two fall out
    feed = bus._feeds["r"]
    assert len(feed.ring) == 10
    assert [seq for seq, _ in feed.ring] == list(range(3, 13))
    assert bus.metrics_since("r", start)[2] is True
    got, _, reset = bus.metrics_since("r", f"{bus.epoch}-2")
    assert not reset and [p["step"] for p in got] == list(range(2, 12))
    got, _, _ = bus.metrics_since("r", f"{bus.epoch}-6")
    assert [(p["key"], p["step"]) for p in got] == [("a", 6)] + [("loss", s) for s in range(7, 12)]


def test_a_columnar_write_keeps_its_newest_points_and_numbers_them_all(monkeypatch):
    monkeypatch.setattr(live, "RING_POINTS", 5)
    bus = LiveBus()
    bus.publish_columns("r", [columns("a", 0, 4), columns("b", 100, 3)])
    assert bus.cursor("r") == f"{bus.epoch}-7"  # every point of the write has its number
    got, cursor, reset = bus.metrics_since("r", f"{bus.epoch}-1")
    assert reset and got == []  # a1 is not in the ring: the reader reloads, misses nothing
    got, _, reset = bus.metrics_since("r", f"{bus.epoch}-2")
    assert not reset
    assert [(p["key"], p["step"]) for p in got] == [
        ("a", 2), ("a", 3), ("b", 100), ("b", 101), ("b", 102)
    ]  # fmt: skip


def test_column_points_are_json_points_made_on_access():
    import numpy as np

    from hub_ext.experiments.serialize import ColumnPoints
    from latticehub.columnar import MetricColumns

    big = MetricColumns(
        "v",
        np.arange(100_000, dtype=np.int64),
        np.full(100_000, 5, dtype=np.int64),
        np.array([1.0, float("nan"), float("inf"), -float("inf")] * 25_000),
    )
    view = ColumnPoints([columns("a", 0, 2), big], limit=4)
    assert len(view) == 4
    assert [p["value"] for p in view] == [1.0, "NaN", "Infinity", "-Infinity"]
    assert view[-1] == {"key": "v", "value": "-Infinity", "timestamp": 5, "step": 99_999}
    assert type(view[0]["step"]) is int and type(view[0]["value"]) is float
    assert view[1:3] == [view[1], view[2]]
    kept = view._parts[0][1]
    assert kept.base is None and len(kept) == 4  # a copy of the tail, not a view of all of it
    with pytest.raises(IndexError):
        view[4]
    both = ColumnPoints([columns("a", 0, 2), columns("b", 0, 1)], limit=10)
    assert [(p["key"], p["step"]) for p in both] == [("a", 0), ("a", 1), ("b", 0)]
    assert len(ColumnPoints([], limit=10)) == 0
