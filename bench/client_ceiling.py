"""How fast the unmodified mlflow client can call at all, whatever the server.

`log_metric` against the experiments app in this process (no Hub, no proxy, stand-in auth),
so the server's share is small; ``--profile`` prints where the client spends its time.

``--null-server`` instead answers every request with ``{}`` from another process at once, so
the rate is the client's alone: the most any server could get from this client here.
``--batch N`` logs N-metric ``log_batch`` calls instead of single ``log_metric`` calls.

    .venv/bin/python bench/client_ceiling.py [--n 300] [--batch 1000] [--null-server] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import multiprocessing
import os
import pstats
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tornado.httpserver import HTTPServer  # noqa: E402

from hub_ext.experiments.app import make_app  # noqa: E402
from hub_ext.experiments.blobs import BlobStore  # noqa: E402
from hub_ext.experiments.store import SqlStore  # noqa: E402
from tests.hub import free_port  # noqa: E402
from tests.service.conftest import FakeHubAuth  # noqa: E402

#: Points per metric-history page (what the mlflow client asks for).
PAGE = 25_000


def _null_server(port: int, history: int) -> None:
    """Answer every request with ``{}``, or history pages of ``history`` points in all."""
    import json

    from tornado.ioloop import IOLoop
    from tornado.web import Application, RequestHandler

    points = [{"key": "loss", "value": 0.5, "timestamp": 1, "step": k} for k in range(PAGE)]
    page = json.dumps({"metrics": points})[:-1]  # serialized once, outside the client's clock

    class Null(RequestHandler):
        def _answer(self, *_: str) -> None:
            self.set_header("Content-Type", "application/json")
            if self.request.path.endswith("metrics/get-history"):
                done = int(self.get_argument("page_token", "0") or 0) + PAGE
                more = f', "next_page_token": "{done}"' if done < history else ""
                self.finish(page + more + "}")
                return
            self.finish("{}")

        get = post = patch = put = delete = _answer

    Application([(r"/.*", Null)]).listen(port, "127.0.0.1")
    IOLoop.current().start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="calls to time")
    parser.add_argument("--batch", type=int, default=0, help="metrics per log_batch (0: single)")
    parser.add_argument("--null-server", action="store_true", help="server answers {} at once")
    parser.add_argument(
        "--history", type=int, default=0, help="with --null-server: read a history of N points"
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.null_server:
        _run_against_null_server(args)
        return
    work = tempfile.mkdtemp(prefix="lhbench-ceiling-")
    store = SqlStore(f"sqlite:///{work}/tracking.sqlite")
    port = free_port()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = make_app(
            store=store, prefix="/services/experiments/", hub_auth=FakeHubAuth(),
            group_lookup=lambda name: [], log=logging.getLogger("bench"),
            blobs=BlobStore(f"{work}/blobs"),
        )  # fmt: skip
        HTTPServer(app).listen(port, "127.0.0.1")
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    time.sleep(0.5)
    os.environ["MLFLOW_TRACKING_TOKEN"] = "tok-ann"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}/services/experiments")
    run = client.create_run(client.create_experiment("ceiling")).info.run_id
    profile = cProfile.Profile() if args.profile else None
    _time_calls(client, run, args, profile, "in-process server")


def _wait_for_port(port: int, timeout: float) -> None:
    """Until the server in the other process accepts connections (its start is not timed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the null server did not listen on port {port} in {timeout} s"
                ) from None
            time.sleep(0.05)


def _run_against_null_server(args: argparse.Namespace) -> None:
    port = free_port()
    server = multiprocessing.Process(target=_null_server, args=(port, args.history), daemon=True)
    server.start()
    try:
        _wait_for_port(port, timeout=30.0)
        os.environ["MLFLOW_TRACKING_TOKEN"] = "tok-any"
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        profile = cProfile.Profile() if args.profile else None
        if args.history:
            start = time.perf_counter()
            got = client.get_metric_history("0" * 32, "loss")
            seconds = time.perf_counter() - start
            print(f"unmodified mlflow client, null server: get_metric_history of {len(got):,} "
                  f"points in {seconds:.2f} s")  # fmt: skip
            return
        _time_calls(client, "0" * 32, args, profile, "null server in another process")
    finally:
        server.terminate()


def _time_calls(client, run: str, args: argparse.Namespace, profile, where: str) -> None:  # noqa: ANN001
    from mlflow.entities import Metric

    if profile:
        profile.enable()
    start = time.perf_counter()
    for i in range(args.n):
        if args.batch:
            stamp = int(time.time() * 1000)
            metrics = [Metric("loss", 1.0, stamp, i * args.batch + k) for k in range(args.batch)]
            client.log_batch(run, metrics=metrics)
        else:
            client.log_metric(run, "loss", 1.0, step=i)
    rate = args.n / (time.perf_counter() - start)
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
    if args.batch:
        print(f"unmodified mlflow client, {where}: {rate * args.batch:,.0f} metrics/s "
              f"in {args.batch}-metric log_batch calls")  # fmt: skip
    else:
        print(f"unmodified mlflow client, {where}: {rate:.0f} log_metric calls/s")


if __name__ == "__main__":
    main()
