"""Live streams and heartbeats of the experiments service behind the real Hub and proxy."""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = [pytest.mark.docker]


@pytest.fixture
def hub(make_hub):
    hub = make_hub()
    hub.env["LATTICEHUB_HEARTBEAT_TIMEOUT"] = "3"
    hub.start()
    hub.create_users(["ann", "bob"])
    hub.create_group("lqcd", ["ann"])
    hub.create_group("nuclear", ["bob"])
    hub.wait_experiments()
    return hub


class Events:
    """Server-sent events from one streaming response, read in order."""

    def __init__(self, response: requests.Response):
        self.lines = response.iter_lines(chunk_size=1, decode_unicode=True)

    def next(self, wanted: str, timeout: float) -> dict:
        """The next event called ``wanted`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        event: dict = {}
        for raw in self.lines:
            if raw == "":
                if event.get("event") == wanted:
                    return json.loads(event["data"])
                event = {}
            elif not raw.startswith(":"):
                key, _, value = raw.partition(": ")
                event[key] = value
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no {wanted!r} event within {timeout} s")


def test_stream_through_the_proxy_and_a_silent_run_becomes_lost(hub):
    headers = {"Authorization": f"token {hub.user_token('ann')}"}
    api = hub.experiments
    requests.post(
        f"{api}/projects", json={"name": "live", "group": "lqcd"}, headers=headers, timeout=30
    ).raise_for_status()
    run = requests.post(f"{api}/runs", json={"project": "live"}, headers=headers, timeout=30)
    run_id = run.json()["id"]
    with requests.get(
        f"{api}/runs/{run_id}/stream", headers=headers, stream=True, timeout=30
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = Events(stream)
        assert events.next("run", 10)["status"] == "RUNNING"
        sent = time.monotonic()
        requests.post(
            f"{api}/runs/{run_id}/logs/stdout",
            json={"offset": 0, "lines": ["through the proxy"]},
            headers=headers,
            timeout=30,
        ).raise_for_status()
        got = events.next("log", 10)
        assert got["lines"][0]["text"] == "through the proxy"
        # not held back by proxy buffering until the next 15 s keep-alive
        assert time.monotonic() - sent < 10
        # one heartbeat, then silence: the service's sweeper marks the run LOST
        requests.patch(
            f"{api}/runs/{run_id}", json={"heartbeat": int(time.time() * 1000)},
            headers=headers, timeout=30,
        ).raise_for_status()  # fmt: skip
        lost = events.next("run", 30)
        while lost["status"] != "LOST":
            lost = events.next("run", 30)
        assert "no heartbeat" in lost["status_reason"]
        timeline = events.next("timeline", 10)
        assert [e["kind"] for e in timeline["items"]] == ["lost"]
    bob = {"Authorization": f"token {hub.user_token('bob')}"}
    r = requests.get(f"{api}/runs/{run_id}/stream", headers=bob, timeout=30)
    assert r.status_code == 404
