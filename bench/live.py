"""Live-stream lag: writers log lines, readers follow them over SSE, long-poll, or polling.

Runs the experiments service (SQLite, stand-in Hub auth) in its own process, then in one
client process: ``--runs`` writers, each appending a line every ``--interval`` seconds with
its send time in the text, and ``--readers`` readers per run. Lag = time a reader got the
line - time the writer sent it. Peer, side by side: readers that poll the log API once per
``--poll`` seconds (what MLflow's REST API leaves a dashboard to do: it has no live stream).

    .venv/bin/python bench/live.py --runs 50 --readers 10 --seconds 20

Goal (issue "Live tracking and the dashboard"): p95 lag < 1 s at 50 runs x 10 readers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hub import free_port  # noqa: E402

HEADERS = {"Authorization": "token tok-ann", "Content-Type": "application/json"}


class Stats:
    """Lags in seconds, plus request counts."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.requests = 0
        self.errors = 0

    def line(self, text: str, now: float) -> None:
        """Record the lag of one received line (its text holds the send time)."""
        sent = float(text.split(" ", 2)[1])
        self.lags.append(now - sent)

    def summary(self, expected: int) -> dict:
        """Percentiles of the lag and the counts."""
        lags = sorted(self.lags)
        if not lags:
            return {"received": 0, "expected": expected}
        return {
            "received": len(lags),
            "expected": expected,
            "p50_s": round(statistics.median(lags), 4),
            "p95_s": round(lags[int(0.95 * (len(lags) - 1))], 4),
            "max_s": round(lags[-1], 4),
            "requests": self.requests,
            "errors": self.errors,
        }


async def writer(client, api: str, run_id: str, seconds: float, interval: float) -> int:
    # runs are not synchronised: each starts at its own phase of the interval
    await asyncio.sleep(random.uniform(0, interval))
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = json.dumps({"offset": sent, "lines": [f"t {time.time():.6f} step {sent}"]})
        await client.fetch(f"{api}/runs/{run_id}/logs/stdout", method="POST", headers=HEADERS,
                           body=body, request_timeout=30)  # fmt: skip
        sent += 1
        await asyncio.sleep(interval)
    return sent


async def sse_reader(api: str, run_id: str, stats: Stats, until: float) -> None:
    buffer = b""

    def on_chunk(chunk: bytes) -> None:
        nonlocal buffer
        now = time.time()
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            fields = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line)
            if fields.get(b"event") == b"log":
                for line in json.loads(fields[b"data"])["lines"]:
                    stats.line(line["text"], now)

    stats.requests += 1
    request = HTTPRequest(
        f"{api}/runs/{run_id}/stream", headers=HEADERS, streaming_callback=on_chunk,
        request_timeout=until - time.monotonic() + 5,
    )  # fmt: skip
    try:
        await AsyncHTTPClient().fetch(request)
    except (TimeoutError, HTTPClientError, OSError):
        pass


async def long_poll_reader(client, api: str, run_id: str, stats: Stats, until: float) -> None:
    offset = 0
    while time.monotonic() < until:
        stats.requests += 1
        try:
            r = await client.fetch(
                f"{api}/runs/{run_id}/updates?stdout={offset}&wait=10&logs=1",
                headers=HEADERS, request_timeout=20,
            )  # fmt: skip
        except (HTTPClientError, OSError):
            stats.errors += 1
            continue
        now = time.time()
        body = json.loads(r.body)
        for line in body["stdout"]["lines"]:
            stats.line(line["text"], now)
        offset = body["stdout"]["next_offset"]


async def polling_reader(
    client, api: str, run_id: str, stats: Stats, until: float, every: float
) -> None:
    offset = 0
    while time.monotonic() < until:
        stats.requests += 1
        r = await client.fetch(
            f"{api}/runs/{run_id}/logs/stdout?offset={offset}", headers=HEADERS,
            request_timeout=20,
        )  # fmt: skip
        now = time.time()
        body = json.loads(r.body)
        for line in body["items"]:
            stats.line(line["text"], now)
        offset = body["next_offset"]
        await asyncio.sleep(every)


async def scenario(api: str, args: argparse.Namespace, mode: str) -> dict:
    AsyncHTTPClient.configure(None, max_clients=args.runs * (args.readers + 1) + 10)
    client = AsyncHTTPClient()
    runs = []
    project = f"live-{mode}-{time.time_ns()}"
    await client.fetch(f"{api}/projects", method="POST", headers=HEADERS,
                       body=json.dumps({"name": project, "group": "lqcd"}))  # fmt: skip
    for _ in range(args.runs):
        r = await client.fetch(f"{api}/runs", method="POST", headers=HEADERS,
                               body=json.dumps({"project": project}))  # fmt: skip
        runs.append(json.loads(r.body)["id"])
    stats = Stats()
    until = time.monotonic() + args.seconds + 3
    readers = []
    for run_id in runs:
        for _ in range(args.readers):
            if mode == "sse":
                readers.append(sse_reader(api, run_id, stats, until))
            elif mode == "long-poll":
                readers.append(long_poll_reader(client, api, run_id, stats, until))
            else:
                readers.append(polling_reader(client, api, run_id, stats, until, args.poll))
    reader_tasks = [asyncio.ensure_future(r) for r in readers]
    await asyncio.sleep(1.0)  # let every reader connect
    written = await asyncio.gather(
        *(writer(client, api, r, args.seconds, args.interval) for r in runs)
    )
    await asyncio.sleep(2.5)
    for task in reader_tasks:
        task.cancel()
    await asyncio.gather(*reader_tasks, return_exceptions=True)
    return stats.summary(sum(written) * args.readers)


def main() -> None:
    # readers cancelled at the end of a mode would each log a traceback
    logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--readers", type=int, default=10, help="readers per run")
    parser.add_argument("--seconds", type=float, default=20.0, help="writing time per mode")
    parser.add_argument("--interval", type=float, default=0.5, help="s between a run's lines")
    parser.add_argument("--poll", type=float, default=1.0, help="s between polls (peer)")
    parser.add_argument("--modes", default="sse,long-poll,polling")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        service = subprocess.Popen(
            [sys.executable, "-m", "tests.service.standalone",
             f"sqlite:///{tmp}/tracking.sqlite", str(port), f"{tmp}/blobs"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert service.stdout.readline().strip() == "ready"
            api = f"http://127.0.0.1:{port}/services/experiments/api/v1"
            results = {}
            for mode in args.modes.split(","):
                results[mode] = asyncio.run(scenario(api, args, mode))
                print(json.dumps({"mode": mode, **results[mode]}), flush=True)
        finally:
            service.terminate()
            service.wait(10)
    print(
        f"\n{args.runs} runs x {args.readers} readers, a line every {args.interval} s per run, "
        f"{args.seconds:g} s per mode"
    )
    print(f"{'mode':<10} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'lines':>8} {'requests':>9}")
    for mode, r in results.items():
        print(f"{mode:<10} {r.get('p50_s', '-'):>8} {r.get('p95_s', '-'):>8} "
              f"{r.get('max_s', '-'):>8} {r['received']:>8} {r.get('requests', 0):>9}")  # fmt: skip
    if "sse" in results and "polling" in results and results["sse"].get("p95_s"):
        ratio = results["polling"]["p95_s"] / results["sse"]["p95_s"]
        print(f"p95 lag, polling every {args.poll:g} s / SSE: {ratio:.1f}x")


if __name__ == "__main__":
    main()
