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
