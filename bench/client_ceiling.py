"""How fast the unmodified mlflow client can call at all, whatever the server.

`log_metric` against the experiments app in this process (no Hub, no proxy, stand-in auth),
so the server's share is small; ``--profile`` prints where the client spends its time.

    .venv/bin/python bench/client_ceiling.py [--n 300] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
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
    if profile:
        profile.enable()
    start = time.perf_counter()
    for i in range(args.n):
        client.log_metric(run, "loss", 1.0, step=i)
    rate = args.n / (time.perf_counter() - start)
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
    print(f"unmodified mlflow client, in-process server: {rate:.0f} log_metric calls/s")


if __name__ == "__main__":
    main()
