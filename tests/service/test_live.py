"""Live streams against the real app in-process: SSE, long-poll, resume, progress bars."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import time

import pytest
import requests
from traitlets import TraitError

from hub_ext.experiments.live import LiveConfig
from tests.service.fakehub import serve

H_ANN = {"Authorization": "token tok-ann"}
H_BOB = {"Authorization": "token tok-bob"}


def make_run(url: str, name: str = "live") -> str:
    r = requests.post(f"{url}/api/v1/projects", json={"name": name, "group": "lqcd"}, headers=H_ANN)
    assert r.status_code == 201, r.text
    r = requests.post(f"{url}/api/v1/runs", json={"project": name}, headers=H_ANN)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def log(url: str, run_id: str, offset: int, lines: list[str], stream: str = "stdout", **kw):
    r = requests.post(
        f"{url}/api/v1/runs/{run_id}/logs/{stream}",
        json={"offset": offset, "lines": lines, **kw},
        headers=H_ANN,
    )
    assert r.status_code == 200, r.text
    return r.json()["next_offset"]


class SSEReader:
    """Reads a text/event-stream in a thread; events land in ``self.events`` as dicts."""

    def __init__(self, url: str, headers: dict | None = None, params: dict | None = None):
        self.events: queue.Queue = queue.Queue()
        self.response = requests.get(
            url, headers={**H_ANN, **(headers or {})}, params=params, stream=True, timeout=30
        )
        self.status = self.response.status_code
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self.thread.start()

    def _read(self) -> None:
        event: dict = {}
        try:
            for raw in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if raw == "":
                    if "event" in event:
                        event["data"] = json.loads(event.get("data", "null"))
                        event["received"] = time.monotonic()
                        self.events.put(event)
                    event = {}
                elif raw.startswith(":"):
                    continue
                else:
                    field, _, value = raw.partition(": ")
                    event[field] = value
        except (requests.RequestException, AttributeError):
            pass
        self.events.put({"event": "closed"})

    def next(self, name: str, timeout: float = 5.0) -> dict:
        """The next event called ``name`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name!r} event within {timeout} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event["event"] == name:
                return event
            if event["event"] == "closed":
                raise AssertionError(f"stream closed before a {name!r} event")

    def close(self) -> None:
        # shut the socket down first: a plain close() waits for the reader thread's recv
        conn = getattr(self.response.raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()


def test_sse_reader_sees_a_line_and_a_metric_as_they_are_written(service):
    url, _ = service
    run_id = make_run(url)
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream", params={"metrics": 1})
    try:
        assert reader.status == 200
        assert reader.response.headers["Content-Type"].startswith("text/event-stream")
        assert reader.next("run")["data"]["status"] == "RUNNING"
        first = reader.next("metrics")["data"]
        assert first["reset"] is True and first["points"] == []
        time.sleep(0.2)
        sent = time.monotonic()
        log(url, run_id, 0, ["hello from step 1"])
        got = reader.next("log")
        assert got["data"]["lines"][0]["text"] == "hello from step 1"
        assert got["data"]["next_offset"] == 1
        # woken by the write, not by the 15 s keep-alive (the lag itself: bench/live.py)
        assert got["received"] - sent < 10
        requests.post(
            f"{url}/api/v1/runs/{run_id}/batch",
            json={"metrics": [{"key": "loss", "value": 0.5, "step": 3}]},
            headers=H_ANN,
        ).raise_for_status()
        points = reader.next("metrics")["data"]
        assert points["reset"] is False
        assert [(p["key"], p["value"], p["step"]) for p in points["points"]] == [("loss", 0.5, 3)]
    finally:
        reader.close()


def test_stream_resumes_from_last_event_id_and_ends_with_the_run(service):
    url, _ = service
    run_id = make_run(url)
    nxt = log(url, run_id, 0, [f"line {i}" for i in range(3)])
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream")
    got = reader.next("log")
    reader.close()
    assert [x["text"] for x in got["data"]["lines"]] == ["line 0", "line 1", "line 2"]
    log(url, run_id, nxt, ["line 3", "line 4"])
    # a reconnect with the last id gets only what came after it
    again = SSEReader(f"{url}/api/v1/runs/{run_id}/stream", headers={"Last-Event-ID": got["id"]})
    try:
        resumed = again.next("log")
        assert [x["text"] for x in resumed["data"]["lines"]] == ["line 3", "line 4"]
        requests.patch(
            f"{url}/api/v1/runs/{run_id}", json={"status": "FINISHED"}, headers=H_ANN
        ).raise_for_status()
        assert again.next("run")["data"]["status"] == "FINISHED"
        assert again.next("end")["data"] == {"reason": "finished"}
        assert again.next("closed", timeout=5)
    finally:
        again.close()


def test_tail_starts_at_the_last_lines_and_a_long_backlog_comes_in_order(service):
    url, _ = service
    run_id = make_run(url)
    log(url, run_id, 0, [f"l{i}" for i in range(1200)])
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream", params={"tail": 5})
    try:
        assert [x["text"] for x in reader.next("log")["data"]["lines"]] == [
            f"l{i}" for i in range(1195, 1200)
        ]
    finally:
        reader.close()
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream")
    try:
        seen = []
        while len(seen) < 1200:
            seen += [x["offset"] for x in reader.next("log")["data"]["lines"]]
        assert seen == list(range(1200))
    finally:
        reader.close()


def test_progress_bar_lines_and_the_unfinished_line(service):
    url, store = service
    run_id = make_run(url)
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream")
    try:
        log(url, run_id, 0, [], partial="\r 10%|#         |\r 40%|####      |")
        assert reader.next("partial")["data"] == {"stream": "stdout", "text": " 40%|####      |"}
        log(url, run_id, 0, ["\r 90%|######### |\r100%|##########|"])
        assert reader.next("log")["data"]["lines"][0]["text"] == "100%|##########|"
        assert reader.next("partial")["data"]["text"] == ""  # the finished line replaced it
    finally:
        reader.close()
    assert [x.text for x in store.read_logs(run_id, "stdout")] == ["100%|##########|"]
    r = requests.post(
        f"{url}/api/v1/runs/{run_id}/logs/stdout",
        json={"offset": 1, "lines": [], "partial": 5},
        headers=H_ANN,
    )
    assert r.status_code == 400 and "partial" in r.json()["message"]


def test_long_poll_waits_for_news_and_returns_at_once_when_there_is_some(service):
    url, _ = service
    run_id = make_run(url)
    updates = f"{url}/api/v1/runs/{run_id}/updates"
    threading.Timer(0.5, log, (url, run_id, 0, ["late line"])).start()
    started = time.monotonic()
    body = requests.get(updates, params={"wait": 10}, headers=H_ANN, timeout=20).json()
    waited = time.monotonic() - started
    assert 0.4 < waited < 9  # it waited for the line, and returned before `wait` ran out
    assert [x["text"] for x in body["stdout"]["lines"]] == ["late line"]
    assert body["cursor"]["stdout"] == 1 and body["done"] is False
    # nothing new: returns after `wait`
    started = time.monotonic()
    body = requests.get(
        updates, params={"wait": 0.3, "stdout": 1}, headers=H_ANN, timeout=20
    ).json()
    assert body["stdout"]["lines"] == [] and time.monotonic() - started < 2
    # an unfinished line is news once; passing its counter back waits for the next change
    log(url, run_id, 1, [], partial="\r 30%|###  |")
    body = requests.get(updates, params={"wait": 5, "stdout": 1}, headers=H_ANN).json()
    assert body["stdout"]["partial"] == " 30%|###  |"
    seen = body["cursor"]["partial_stdout"]
    started = time.monotonic()
    body = requests.get(
        updates, params={"wait": 0.5, "stdout": 1, "partial_stdout": seen}, headers=H_ANN
    ).json()
    assert time.monotonic() - started > 0.4 and body["stdout"]["lines"] == []
    bad = requests.get(updates, params={"wait": 600}, headers=H_ANN)
    assert bad.status_code == 400 and "wait" in bad.json()["message"]
    bad = requests.get(updates, params={"stdout": -1}, headers=H_ANN)
    assert bad.status_code == 400 and "non-negative" in bad.json()["message"]


def test_long_poll_metric_cursor_and_history_reset(service):
    url, _ = service
    run_id = make_run(url)
    batch = f"{url}/api/v1/runs/{run_id}/batch"
    points = [{"key": "loss", "value": 1.0 / (s + 1), "step": s} for s in range(5)]
    requests.post(batch, json={"metrics": points}, headers=H_ANN).raise_for_status()
    updates = f"{url}/api/v1/runs/{run_id}/updates"
    first = requests.get(updates, params={"metrics": 1, "wait": 0}, headers=H_ANN).json()
    assert first["metrics"]["reset"] is True
    assert [p["step"] for p in first["metrics"]["points"]] == [0, 1, 2, 3, 4]
    cursor = first["metrics"]["cursor"]
    requests.post(
        batch, json={"metrics": [{"key": "loss", "value": 0.1, "step": 5}]}, headers=H_ANN
    ).raise_for_status()
    nxt = requests.get(updates, params={"metrics": cursor, "wait": 5}, headers=H_ANN).json()
    assert nxt["metrics"]["reset"] is False
    assert [p["step"] for p in nxt["metrics"]["points"]] == [5]
    # a cursor of another service process: the reader is told to reload the history
    stale = requests.get(updates, params={"metrics": "dead0000-3", "wait": 0}, headers=H_ANN)
    assert stale.json()["metrics"]["reset"] is True
    assert len(stale.json()["metrics"]["points"]) == 6


def test_a_reset_history_thinned_to_its_limit_keeps_every_spike(service):
    """20,000 points drawn as 2,000: a loss spike and a collapse of the ESS are still there."""
    from hub_ext.experiments.handlers.live import HISTORY_POINTS

    url, _ = service
    run_id = make_run(url)
    n = 10 * HISTORY_POINTS
    loss = [1.0 / (s + 1) for s in range(n)]
    loss[12_345] = 50.0
    ess = [0.9] * n
    ess[7_777] = 0.01
    body = {"metrics": [
        {"key": "loss", "steps": list(range(n)), "values": loss, "timestamps": 1},
        {"key": "ess", "steps": list(range(n)), "values": ess, "timestamps": 1},
    ]}  # fmt: skip
    requests.post(
        f"{url}/api/v1/runs/{run_id}/metrics", json=body, headers=H_ANN
    ).raise_for_status()
    got = requests.get(
        f"{url}/api/v1/runs/{run_id}/updates", params={"metrics": 1, "wait": 0}, headers=H_ANN
    ).json()["metrics"]
    assert got["reset"] is True
    by_key: dict[str, dict[int, float]] = {}
    for point in got["points"]:
        by_key.setdefault(point["key"], {})[point["step"]] = point["value"]
    assert len(by_key["loss"]) <= HISTORY_POINTS and len(by_key["ess"]) <= HISTORY_POINTS
    assert by_key["loss"][12_345] == 50.0 and by_key["ess"][7_777] == 0.01
    assert {0, n - 1} <= set(by_key["loss"])


def test_another_groups_stream_is_not_found(service):
    url, _ = service
    run_id = make_run(url)
    reader = SSEReader(f"{url}/api/v1/runs/{run_id}/stream", headers=H_BOB)
    assert reader.status == 404
    r = requests.get(f"{url}/api/v1/runs/{run_id}/updates", params={"wait": 0}, headers=H_BOB)
    assert r.status_code == 404


@pytest.mark.slow
def test_many_readers_of_many_runs_all_see_every_line(service, monkeypatch):
    # 20 streams of one user: above the default cap of open streams per user (read when the
    # first stream opens)
    monkeypatch.setenv("LATTICEHUB_LIVE_MAX_STREAMS", "40")
    url, _ = service
    runs = [make_run(url, f"many-{i}") for i in range(5)]
    readers = {r: [SSEReader(f"{url}/api/v1/runs/{r}/stream") for _ in range(4)] for r in runs}
    try:
        for r in runs:
            for offset in range(3):
                log(url, r, offset, [f"{r} {offset}"])
        for r, group in readers.items():
            for reader in group:
                texts: list[str] = []
                while len(texts) < 3:
                    texts += [x["text"] for x in reader.next("log")["data"]["lines"]]
                assert texts == [f"{r} {i}" for i in range(3)]
    finally:
        for group in readers.values():
            for reader in group:
                reader.close()


# -- access while a stream is open; open streams per user ----------------------------------
RECHECK_S = 0.5
#: generous: the check runs every RECHECK_S, and the reader needs a moment to notice
ENDS_WITHIN_S = 15


@pytest.fixture
def moving(tmp_path):
    """The app with users a test moves between groups, short access re-checks, 3 streams each."""
    users = {
        "ann": {"groups": {"lqcd"}},
        "bob": {"groups": {"lqcd"}},
        "eve": {"groups": {"nuclear"}},
    }
    config = LiveConfig(access_recheck_interval=RECHECK_S, max_streams_per_user=3)
    with serve(tmp_path, users, config) as svc:
        pid = svc.call("ann", "POST", "/projects", json={"name": "flows", "group": "lqcd"})
        svc.pid = pid.json()["id"]
        svc.run_id = svc.call("ann", "POST", "/runs", json={"project": svc.pid}).json()["id"]
        yield svc


def reader_of(svc, user: str, **params) -> SSEReader:
    return SSEReader(
        f"{svc.api}/runs/{svc.run_id}/stream",
        headers={"Authorization": f"token tok-{user}"},
        params=params or None,
    )


def test_a_reader_who_leaves_the_group_sees_the_stream_end_with_a_reason(moving):
    reader = reader_of(moving, "bob")
    try:
        assert reader.status == 200
        reader.next("run")
        moving.set_groups("bob")  # removed from lqcd
        ended = reader.next("end", timeout=ENDS_WITHIN_S)["data"]
        assert ended["reason"] == "access_revoked"
        assert "you may no longer read run" in ended["message"]
        assert reader.next("closed", timeout=ENDS_WITHIN_S)
        # the slot goes with the stream: the server frees it as it finishes the response,
        # which may be just after the client has read the last event
        deadline = time.monotonic() + ENDS_WITHIN_S
        while moving.bus.streams_of("bob") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert moving.bus.streams_of("bob") == 0
    finally:
        reader.close()
    # and the next request is refused as for any outsider
    assert moving.call("bob", "GET", f"/runs/{moving.run_id}").status_code == 404


def test_a_stream_ends_when_the_share_is_withdrawn_and_stays_while_it_holds(moving):
    moving.call("ann", "PUT", f"/projects/{moving.pid}/shares/nuclear").raise_for_status()
    reader = reader_of(moving, "eve")
    try:
        assert reader.status == 200
        reader.next("run")
        time.sleep(3 * RECHECK_S)  # several checks pass while she may read
        moving.call("ann", "POST", f"/runs/{moving.run_id}/logs/stdout",
                    json={"offset": 0, "lines": ["still here"]}).raise_for_status()  # fmt: skip
        assert reader.next("log")["data"]["lines"][0]["text"] == "still here"
        moving.call("ann", "DELETE", f"/projects/{moving.pid}/shares/nuclear").raise_for_status()
        assert reader.next("end", timeout=ENDS_WITHIN_S)["data"]["reason"] == "access_revoked"
    finally:
        reader.close()


def test_a_waiting_long_poll_is_refused_with_a_reason_when_access_ends(moving):
    result: dict = {}

    def poll() -> None:
        result["r"] = moving.call(
            "bob", "GET", f"/runs/{moving.run_id}/updates", params={"wait": 40}, timeout=60
        )

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(2 * RECHECK_S)
    moving.set_groups("bob")
    thread.join(ENDS_WITHIN_S)
    assert not thread.is_alive(), "the long-poll kept waiting after access ended"
    r = result["r"]
    assert r.status_code == 403, r.text
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert "no longer read" in r.json()["message"]


def test_open_streams_per_user_are_capped_with_a_clear_429(moving):
    readers = [reader_of(moving, "ann") for _ in range(3)]
    try:
        assert [r.status for r in readers] == [200, 200, 200]
        for r in readers:
            r.next("run")
        extra = reader_of(moving, "ann")
        assert extra.status == 429
        body = extra.response.json()
        assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED" and body["status"] == 429
        assert "3 open live streams" in body["message"]
        assert "max_streams_per_user" in body["message"]
        # a long-poll is a stream too
        r = moving.call("ann", "GET", f"/runs/{moving.run_id}/updates", params={"wait": 0})
        assert r.status_code == 429
        # the cap is per user: bob still streams
        bobs = reader_of(moving, "bob")
        assert bobs.status == 200
        bobs.close()
        # a closed stream frees its slot
        readers.pop().close()
        deadline = time.monotonic() + ENDS_WITHIN_S
        while moving.bus.streams_of("ann") > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = reader_of(moving, "ann")
        assert again.status == 200
        readers.append(again)
    finally:
        for r in readers:
            r.close()


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"max_streams_per_user": 0}, "at least 1"),
        ({"access_recheck_interval": 0}, "(0, 30]"),
        ({"access_recheck_interval": 31}, "at least every 30 s"),
    ],
)
def test_live_settings_are_validated(settings, words):
    with pytest.raises(TraitError, match=re.escape(words)):
        LiveConfig(**settings)


def test_live_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LATTICEHUB_LIVE_MAX_STREAMS", "4")
    monkeypatch.setenv("LATTICEHUB_LIVE_RECHECK_S", "2.5")
    config = LiveConfig()
    assert (config.max_streams_per_user, config.access_recheck_interval) == (4, 2.5)
    monkeypatch.setenv("LATTICEHUB_LIVE_RECHECK_S", "soon")
    with pytest.raises(TraitError, match="LATTICEHUB_LIVE_RECHECK_S=30"):
        LiveConfig().access_recheck_interval  # noqa: B018
    monkeypatch.delenv("LATTICEHUB_LIVE_MAX_STREAMS")
    assert LiveConfig().max_streams_per_user == 10
