"""Ingest into the experiments service on PostgreSQL: one replica, then two, one run.

    .venv/bin/python bench/replicas.py [--writers 16] [--seconds 10] [--pg-url URL]

Each replica is its own process (the service's app with the tests' stand-in Hub auth, its
LISTEN/NOTIFY bridge on, as ``ExperimentsApp.start`` does on PostgreSQL) over one fresh
database. The writers are recorded runs of the project's client (``ActiveRun``: per-step
``log_metric`` calls, compact batches), spread round robin over the replicas; the figure is
the points readable once every run has finished, per second. Traffic goes only to
127.0.0.1. The PostgreSQL server is ``$LATTICEHUB_TEST_PG_URL`` (scripts/services.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SERVE = r"""
import asyncio, logging, sys
from tornado.httpserver import HTTPServer
from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.live import LiveBus
from hub_ext.experiments.replicas import ReplicaBridge
from hub_ext.experiments.store import SqlStore
from tests.service.fakehub import PREFIX, FakeHubAuth

async def serve(url, port, blobs):
    store = SqlStore(url)
    bus = LiveBus()
    bridge = ReplicaBridge(bus, store.engine).attach()
    app = make_app(store=store, prefix=PREFIX, hub_auth=FakeHubAuth(),
                   group_lookup=lambda name: [], log=logging.getLogger("replica"),
                   blobs=BlobStore(blobs), live=bus)
    HTTPServer(app, max_body_size=4 * 1024 * 1024).listen(port, "127.0.0.1")
    task = asyncio.ensure_future(bridge.run_forever())
    await asyncio.get_running_loop().run_in_executor(None, bridge.listening.wait, 30)
    print("ready", flush=True)
    await task

asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def fresh_database(admin_url: str) -> str:
    """A new database on the server of ``admin_url``; its URL."""
    import secrets

    import sqlalchemy as sa

    name = f"lh_bench_{secrets.token_hex(4)}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def start_replicas(db_url: str, count: int, work: Path) -> tuple[list[subprocess.Popen], list]:
    from tests.hub import free_port

    procs, urls = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i in range(count):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, db_url, str(port), str(work / "blobs")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"replica {i} did not start")
        procs.append(proc)
        urls.append(f"http://127.0.0.1:{port}/services/experiments")
    return procs, urls


def ingest(urls: list[str], writers: int, seconds: float) -> float:
    """Points/s from ``writers`` recorded runs spread over ``urls``, every point read back."""
    import tracking_goals

    from latticehub.client import TrackingClient

    clients = [TrackingClient(url, "tok-ann") for url in urls]
    project = clients[0].project(f"ingest-{len(urls)}", "lqcd")["id"]
    return tracking_goals.writers_rate(clients, project, writers, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16, help="recorded runs writing at once")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds each run logs")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "LATTICEHUB_TEST_PG_URL",
            "postgresql://latticehub:latticehub@127.0.0.1:5432/latticehub",
        ),
        help="a PostgreSQL URL whose user may create databases",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lhbench-replicas-"))
    rates = {}
    for count in (1, 2):
        db_url = fresh_database(args.pg_url)
        procs, urls = start_replicas(db_url, count, work)
        try:
            rates[count] = ingest(urls, args.writers, args.seconds)
            print(f"{count} replica(s): {rates[count]:,.0f} metrics/s "
                  f"({args.writers} writers, {args.seconds:g} s)", flush=True)  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    print(f"ratio 2 replicas / 1: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
