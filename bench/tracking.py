"""Tracking throughput: the unmodified mlflow client against `mlflow server` and `experiments`.

One run, one after the other, same machine, same client (mlflow-skinny from the test
extras). The MLflow server (SQLite backend, as in its quickstart) runs from its own virtual
environment (`.venv-mlflow`, made on first use with `pip install mlflow==<pinned>`); the
experiments service runs behind a real JupyterHub and configurable-http-proxy, SQLite store
(with ``--postgres``, each server on a new PostgreSQL database, dropped afterwards).

    .venv/bin/python bench/tracking.py [--single 300] [--batches 30] [--writers 32]
    .venv/bin/python bench/tracking.py --goals-only --postgres postgresql://u:pw@127.0.0.1/db

Prints, for each workload, both figures and the ratio experiments/MLflow:
single log_metric calls/s, metrics/s in 1000-metric batches, search_runs latency with a
filter at 1k and 10k runs (100k for experiments), get_metric_history of 100k points (1M
for experiments), and metrics/s of concurrent writers. Bulk population for the search and
history workloads goes straight into each store (it is not what is measured).
Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = ROOT / ".venv-mlflow"

import tracking_goals as tg  # noqa: E402

from tests.hub import HubProcess, free_port  # noqa: E402


def ensure_mlflow_server(postgres: bool = False) -> Path:
    """The ``mlflow`` executable of the benchmark's own environment (made if missing).

    ``postgres``: with psycopg 3 in it too (MLflow's PostgreSQL backend).
    """
    exe = MLFLOW_VENV / "bin" / "mlflow"
    pip = str(MLFLOW_VENV / "bin" / "pip")
    if not exe.exists():
        print(f"making {MLFLOW_VENV} with mlflow=={MLFLOW_VERSION} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([pip, "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True)
    if postgres and not list((MLFLOW_VENV / "lib").glob("python*/site-packages/psycopg")):
        subprocess.run([pip, "install", "-q", "psycopg[binary]>=3.2"], check=True)
    return exe


def wait_http(url: str, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


class Target:
    """One tracking server as the mlflow client sees it."""

    def __init__(self, name: str, uri: str, token: str | None, populate: callable):
        self.name, self.uri, self.token, self.populate = name, uri, token, populate

    def client(self):  # noqa: D102
        from mlflow.tracking import MlflowClient

        if self.token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.token
        else:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        return MlflowClient(tracking_uri=self.uri)


def single_calls(target: Target, n: int) -> float:
    client = target.client()
    exp = client.create_experiment(f"single-{secrets.token_hex(3)}")
    run = client.create_run(exp).info.run_id
    start = time.perf_counter()
    for i in range(n):
        client.log_metric(run, "loss", 1.0 / (i + 1), step=i)
    return n / (time.perf_counter() - start)


def batches(target: Target, n: int) -> float:
    from mlflow.entities import Metric

    client = target.client()
    exp = client.create_experiment(f"batch-{secrets.token_hex(3)}")
    run = client.create_run(exp).info.run_id
    stamp = int(time.time() * 1000)
    start = time.perf_counter()
    for b in range(n):
        metrics = [Metric("loss", float(i), stamp, b * 1000 + i) for i in range(1000)]
        client.log_batch(run, metrics=metrics)
    return n * 1000 / (time.perf_counter() - start)


def writers(target: Target, count: int, seconds: float) -> float:
    from mlflow.entities import Metric

    client = target.client()
    exp = client.create_experiment(f"writers-{secrets.token_hex(3)}")
    runs = [client.create_run(exp).info.run_id for _ in range(count)]
    done = [0] * count
    failed = [0] * count
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        c = target.client()
        stamp = int(time.time() * 1000)
        step = 0
        while time.monotonic() < stop:
            try:
                c.log_batch(
                    runs[i], metrics=[Metric("m", 1.0, stamp, step + j) for j in range(1000)]
                )
            except Exception:  # counted: a refused batch is not throughput
                failed[i] += 1
                continue
            step += 1000
            done[i] += 1000

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if sum(failed):
        print(f"  ({sum(failed)} batches refused by {target.name} under load)", flush=True)
    return sum(done) / (time.perf_counter() - start)


def search_latency(target: Target, experiment_id: str, repeats: int = 7) -> float:
    client = target.client()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        client.search_runs(
            [experiment_id], "metrics.loss < 0.5 and params.L = '8'", max_results=100
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def history_seconds(target: Target, run_id: str) -> tuple[float, int]:
    client = target.client()
    start = time.perf_counter()
    points = client.get_metric_history(run_id, "loss")
    return time.perf_counter() - start, len(points)


# -- bulk population straight into the stores -----------------------------------------
MLFLOW_POPULATE = r"""
import sys, time, uuid
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.entities import Metric, Param, RunTag
uri, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqlAlchemyStore(uri, "/tmp/mlflow-bench-artifacts")
exp = store.create_experiment(f"{kind}-{uuid.uuid4().hex[:6]}")
stamp = int(time.time() * 1000)
if kind == "runs":
    for i in range(n):
        run = store.create_run(exp, "bench", stamp, [], f"r{i}")
        store.log_batch(run.info.run_id, [Metric("loss", (i % 100) / 100, stamp, 0)],
                        [Param("L", "8" if i % 2 else "16")], [])
    print(exp)
else:
    run = store.create_run(exp, "bench", stamp, [], "history")
    for start in range(0, n, 1000):
        store.log_batch(run.info.run_id,
                        [Metric("loss", float(i), stamp, i) for i in range(start, start + 1000)],
                        [], [])
    print(run.info.run_id)
"""


def populate_mlflow(db_uri: str, kind: str, n: int) -> str:
    out = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), "-c", MLFLOW_POPULATE, db_uri, kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def populate_experiments(db_uri: str, kind: str, n: int, owner: str) -> str:
    """Bulk rows through SQL (runs: one param and one metric each), then ``ANALYZE``."""
    from array import array

    import sqlalchemy as sa

    from hub_ext.experiments.store import SqlStore, blocks
    from hub_ext.experiments.store import schema as t
    from latticehub.columnar import MetricColumns

    store = SqlStore(db_uri)
    project = store.create_project(f"{kind}-{secrets.token_hex(3)}", owner=owner, group=None)
    stamp = int(time.time() * 1000)
    with store.engine.begin() as conn:
        if kind == "runs":
            for start in range(0, n, 5000):
                ids = [uuid.uuid4().hex for _ in range(start, min(n, start + 5000))]
                conn.execute(t.runs.insert(), [
                    {"run_id": r, "project_id": project.id, "name": f"r{start + i}",
                     "user_id": owner, "status": "FINISHED", "start_time": stamp + start + i,
                     "lifecycle_stage": "active", "artifact_uri": ""}
                    for i, r in enumerate(ids)])  # fmt: skip
                conn.execute(t.params.insert(), [
                    {"run_id": r, "key": "L", "value": "8" if (start + i) % 2 else "16"}
                    for i, r in enumerate(ids)])  # fmt: skip
                rows = [{"run_id": r, "key": "loss", "step": 0, "timestamp": stamp,
                         "value": ((start + i) % 100) / 100, "is_nan": False}
                        for i, r in enumerate(ids)]  # fmt: skip
                conn.execute(t.metric_blocks.insert(), [
                    blocks.row(r["run_id"], blocks.point("loss", 0, stamp, r["value"]))
                    for r in rows])  # fmt: skip
                conn.execute(t.latest_metrics.insert(), rows)
            result = str(project.id)
        else:
            run = uuid.uuid4().hex
            conn.execute(t.runs.insert().values(
                run_id=run, project_id=project.id, name="history", user_id=owner,
                status="FINISHED", start_time=stamp, lifecycle_stage="active",
                artifact_uri=""))  # fmt: skip
            for start in range(0, n, 500_000):
                end = min(n, start + 500_000)
                conn.execute(t.metric_blocks.insert(), [blocks.row(run, MetricColumns(
                    "loss", array("q", range(start, end)), array("q", [stamp]) * (end - start),
                    array("d", map(float, range(start, end)))))])  # fmt: skip
            result = run
    if store.engine.dialect.name == "postgresql":
        # statistics as autovacuum keeps them in a database that grew over time; without
        # them PostgreSQL plans a million fresh rows blind (seconds instead of milliseconds)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    store.close()
    return result


def goals(
    targets: list[Target],
    mlflow: dict[str, float],
    args: Any,
    exp_db: str,
    hub: Any,
    mlflow_pid: int,
) -> None:
    """Measure and print each goal of tracking at facility scale beside MLflow's figure."""
    from latticehub.client import TrackingClient

    client = TrackingClient(f"{hub.url}/services/experiments", hub.user_token("bench"))
    project = client.project(f"goals-{secrets.token_hex(3)}")["id"]
    out: list[tg.Goal] = []
    print("\n== goals: logging in the loop", flush=True)
    m_us, m_rate = tg.mlflow_async(targets[0].client())
    us, rate = tg.ours_per_call_us(client, project, args.loop_points)
    out.append(tg.Goal("log_metric in the loop", us, "us/call", "<= 2 us", us <= 2, m_us,
                       lower_is_better=True, mlflow_note="synchronous=False"))  # fmt: skip
    out.append(tg.Goal(f"{args.loop_points:,} calls, finish, all readable", rate, "points/s",
                       ">= 500x mlflow async", rate >= 500 * m_rate, m_rate,
                       mlflow_note=f"async, {tg.MLFLOW_ASYNC_POINTS:,} points"))  # fmt: skip
    print("== goals: reads", flush=True)
    run = populate_experiments(exp_db, "history", 1_000_000, "bench")
    seconds = tg.history_frame_seconds(client, run, 1_000_000)
    out.append(tg.Goal("1M points to a DataFrame", seconds, "s", "< 1 s", seconds < 1,
                       mlflow.get("history 100k points s"), lower_is_better=True,
                       mlflow_note="get_metric_history of 100k points"))  # fmt: skip
    if args.big_history:
        n = args.big_history
        pid = tg.listening_pid(int(hub.env["LATTICEHUB_EXPERIMENTS_PORT"]))
        seconds, growth, rss_growth = tg.big_history(client, exp_db, project, n, pid)
        out.append(tg.Goal(f"{n / 1e6:g}M points to a DataFrame", seconds, "s", "< 10 s",
                           seconds < 10, lower_is_better=True))  # fmt: skip
        out.append(tg.Goal("service memory growth while it sends them", growth,
                           f"x the data (24 B a point; RSS with the file pages of the "
                           f"memory-mapped database {rss_growth:.2f}x)", "<= 2x",
                           growth <= 2))  # fmt: skip
    print("== goals: the server's CPU per metric (unmodified mlflow client, log_batch)")
    pid = tg.listening_pid(int(hub.env["LATTICEHUB_EXPERIMENTS_PORT"]))
    ours_cpu = tg.server_cpu_per_metric(targets[1].client(), pid)
    theirs_cpu = tg.server_cpu_per_metric(targets[0].client(), mlflow_pid)
    out.append(tg.Goal("server CPU per ingested metric", ours_cpu, "us", "<= 1/20 of MLflow's",
                       ours_cpu * 20 <= theirs_cpu, theirs_cpu, lower_is_better=True))  # fmt: skip
    if args.table_runs:
        print(f"== goals: run tables ({args.table_runs:,} runs)", flush=True)
        table_project = int(populate_experiments(exp_db, "runs", args.table_runs, "bench"))
        out += tg.run_table_goals(client, table_project, args.table_runs)
    print("== goals: many writers", flush=True)
    rate = tg.writers_rate(client, project, args.writers, args.writer_seconds)
    out.append(tg.Goal(f"{args.writers} writers, the project's client", rate, "metrics/s",
                       ">= 200,000 metrics/s", rate >= 200_000,
                       mlflow.get(f"{args.writers} writers metrics/s"),
                       mlflow_note="client log_batch writers"))  # fmt: skip
    tg.print_goals(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300, help="single log_metric calls")
    parser.add_argument("--batches", type=int, default=30, help="1000-metric batches")
    parser.add_argument("--writers", type=int, default=32, help="concurrent writers")
    parser.add_argument("--writer-seconds", type=float, default=10.0)
    parser.add_argument(
        "--big-history", type=int, default=10_000_000, help="points of the long history (0: skip)"
    )
    parser.add_argument(
        "--table-runs", type=int, default=1_000_000, help="runs of the run-table goals (0: skip)"
    )
    parser.add_argument("--loop-points", type=int, default=200_000, help="log_metric calls")
    parser.add_argument(
        "--goals-only", action="store_true", help="skip the mlflow-client workloads"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="store the service's tracking data in a new database on this PostgreSQL server "
        "(dropped afterwards), e.g. postgresql://latticehub:latticehub@127.0.0.1:5432/latticehub;"
        " default: SQLite",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lhbench-tracking-"))
    pg_database = None
    from tests.conftest import _postgres_url

    if args.postgres:
        os.environ["LATTICEHUB_TEST_PG_URL"] = args.postgres
        exp_db, pg_database = _postgres_url()

    mlflow_exe = ensure_mlflow_server(postgres=pg_database is not None)
    mlflow_db = f"sqlite:///{work / 'mlflow.db'}"
    mlflow_pg = None
    if pg_database is not None:  # the same workload: MLflow on PostgreSQL too
        url, mlflow_pg = _postgres_url()
        mlflow_db = url.replace("postgresql://", "postgresql+psycopg://", 1)
    print(f"mlflow server's database: {mlflow_db.split('://')[0]}", flush=True)
    mlflow_port = free_port()
    mlflow_proc = subprocess.Popen(
        [str(mlflow_exe), "server", "--backend-store-uri", mlflow_db, "--host", "127.0.0.1",
         "--port", str(mlflow_port), "--workers", "1",
         "--artifacts-destination", str(work / "mlflow-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    hub = HubProcess(
        work / "hub", hub_ip="127.0.0.1", network="none", hub_id=f"bt{secrets.token_hex(3)}"
    )
    if pg_database is None:
        exp_db = f"sqlite:///{work / 'hub' / 'tracking.sqlite'}"
    hub.env["LATTICEHUB_TRACKING_DB"] = exp_db
    print(f"experiments service's database: {exp_db.split('://')[0]}", flush=True)
    try:
        wait_http(f"http://127.0.0.1:{mlflow_port}/health")
        hub.start()
        hub.create_users(["bench"])
        wait_http(f"{hub.url}/services/experiments/api/v1/openapi.json")
        targets = [
            Target("mlflow", f"http://127.0.0.1:{mlflow_port}", None,
                   lambda kind, n: populate_mlflow(mlflow_db, kind, n)),
            Target("experiments", f"{hub.url}/services/experiments", hub.user_token("bench"),
                   lambda kind, n: populate_experiments(exp_db, kind, n, "bench")),
        ]  # fmt: skip
        results: dict[str, dict[str, float]] = {t.name: {} for t in targets}
        for target in [] if args.goals_only else targets:
            r = results[target.name]
            print(f"\n== {target.name}", flush=True)
            r["single calls/s"] = single_calls(target, args.single)
            print(f"  single log_metric: {r['single calls/s']:.0f} calls/s", flush=True)
            r["batch metrics/s"] = batches(target, args.batches)
            print(f"  1000-metric batches: {r['batch metrics/s']:.0f} metrics/s", flush=True)
            for n in (1_000, 10_000) + ((100_000,) if target.name == "experiments" else ()):
                exp = target.populate("runs", n)
                key = f"search {n // 1000}k runs ms"
                r[key] = search_latency(target, exp) * 1000
                print(f"  search_runs with filter, {n} runs: {r[key]:.1f} ms", flush=True)
            for n in (100_000,) + ((1_000_000,) if target.name == "experiments" else ()):
                run = target.populate("history", n)
                seconds, count = history_seconds(target, run)
                key = f"history {n // 1000}k points s"
                r[key] = seconds
                print(f"  metric history {count} points: {seconds:.2f} s", flush=True)
            key = f"{args.writers} writers metrics/s"
            r[key] = writers(target, args.writers, args.writer_seconds)
            print(f"  {args.writers} concurrent writers: {r[key]:.0f} metrics/s", flush=True)

        print("\n== ratios experiments / mlflow (higher is better for rates, lower for times)")
        for key, value in results["mlflow"].items():
            if key in results["experiments"]:
                print(f"  {key:28s} {results['experiments'][key] / value:8.2f}")
        goals(targets, results["mlflow"], args, exp_db, hub, mlflow_proc.pid)
    finally:
        hub.stop()
        mlflow_proc.terminate()
        mlflow_proc.wait(30)
        if pg_database is not None:
            from tests.conftest import _drop

            _drop(*pg_database)
            if mlflow_pg is not None:
                _drop(*mlflow_pg)


if __name__ == "__main__":
    main()
