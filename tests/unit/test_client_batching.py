"""The tracking client splits output into request bodies the service accepts."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("lines", "sizes"),
    [
        ([], [0]),
        (["x"] * 12_001, [5_000, 5_000, 2_001]),
        (["y" * 400_000] * 5, [2, 2, 1]),  # about 1 MiB a request
        (["z" * 3_000_000, "a"], [1, 1]),  # a long line goes alone
    ],
)
def test_the_client_sends_a_burst_of_output_in_bodies_the_service_accepts(lines, sizes):
    from latticehub.client.active import _log_pieces

    pieces = _log_pieces(lines)
    assert [len(p) for p in pieces] == sizes
    assert [line for piece in pieces for line in piece] == lines  # order kept, nothing lost


class FlakyClient:
    """Answers each write from a script: None (ok), an OSError or a TrackingAPIError."""

    def __init__(self, answers):
        self.answers, self.seen = list(answers), []

    def request(self, method, path, body=None, params=None):
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.seen.append(body)

    def update_run(self, run_id, **fields):  # the sender's heartbeat
        self.beats = getattr(self, "beats", 0) + 1


@pytest.mark.parametrize(
    ("answer", "spooled", "refused"),
    [
        (OSError("down"), [{"n": 2}, {"n": 3}], []),  # unreachable: keep the rest, in order
        ("429", [{"n": 2}, {"n": 3}], []),  # busy: the same
        ("503", [{"n": 2}, {"n": 3}], []),
        ("400", [], [{"n": 2}]),  # refused for good: said, and the rest still sent
    ],
)
def test_a_write_the_service_cannot_take_now_is_spooled_not_dropped(
    tmp_path, capfd, answer, spooled, refused
):
    from latticehub.client.active import ActiveRun
    from latticehub.client.errors import TrackingAPIError
    from latticehub.client.spool import Spool

    error = answer if isinstance(answer, OSError) else TrackingAPIError(int(answer), "X", "no")
    client = FlakyClient([None, error])
    run = ActiveRun(client, {"id": "r1"}, spool_dir=tmp_path)
    run._send([("POST", "/b", {"n": 1}), ("POST", "/b", {"n": 2}), ("POST", "/b", {"n": 3})])
    spool = Spool.for_run("r1", tmp_path)
    assert [body for _, _, body in spool.read()] == spooled
    assert client.seen == [{"n": 1}] + ([{"n": 3}] if refused else [])
    assert ("refused a write" in capfd.readouterr().err) == bool(refused)
    # a later replay: a busy answer keeps the writes, one refused for good is set aside
    if spooled:
        replay = FlakyClient([TrackingAPIError(429, "BUSY", "later"), None])
        assert spool.replay(replay.request) == (0, 2)
        gone = FlakyClient([TrackingAPIError(400, "BAD", "never"), None])
        assert spool.replay(gone.request) == (2, 0)
        assert gone.seen == [{"n": 3}]
        assert [b for _, _, b in Spool(spool.refused_path).read()] == [{"n": 2}]


def test_logging_far_faster_than_the_sender_drains_loses_nothing(monkeypatch, capfd, tmp_path):
    """A full queue pushes back (the logging call sends it) instead of dropping points.

    The queue holds 500 points and 50 lines and the background sender waits 60 s between
    rounds, so nearly everything goes through push-back; every point and line must arrive
    once, lines in order with contiguous offsets.
    """
    import threading

    import latticehub.client.active as active
    from latticehub.client.active import ActiveRun

    monkeypatch.setattr(active, "MAX_PENDING_METRICS", 500)
    monkeypatch.setattr(active, "MAX_PENDING_LINES", 50)
    monkeypatch.setattr(active, "FLUSH_S", 60.0)
    client = FlakyClient([])
    run = ActiveRun(client, {"id": "r1"}, spool_dir=tmp_path)
    run._thread.start()

    def log(first: int) -> None:
        for step in range(first, first + 10_000):
            run.log_metric("loss", step * 0.5, step=step)

    writers = [threading.Thread(target=log, args=(i * 10_000,)) for i in range(2)]
    for w in writers:
        w.start()
    for i in range(1_000):
        run._line("stdout", f"line {i}")
    for w in writers:
        w.join()
    run.finish("FINISHED")
    columns = [c for b in client.seen if b and "metrics" in b for c in b["metrics"]]
    assert {c["key"] for c in columns} == {"loss"}
    steps = [s for c in columns for s in c["steps"]]
    values = [v for c in columns for v in c["values"]]
    assert sorted(steps) == list(range(20_000))  # each once
    assert values == [s * 0.5 for s in steps]
    assert all(len(c["timestamps"]) == len(c["steps"]) for c in columns)
    logs = [b for b in client.seen if b and "lines" in b]
    assert [line for b in logs for line in b["lines"]] == [f"line {i}" for i in range(1_000)]
    offsets = [b["offset"] for b in logs]
    assert offsets == [sum(len(b["lines"]) for b in logs[:k]) for k in range(len(logs))]
    assert run.dropped == 0 and not run.spool.pending()
    assert "nothing is dropped" in capfd.readouterr().err  # said once, not per call
