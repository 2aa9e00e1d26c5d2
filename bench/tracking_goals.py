"""The goals of "tracking at facility scale", each beside the MLflow figure it is measured against.

Called by ``bench/tracking.py`` (one run, one machine, one after the other); not a script of
its own. Every workload here checks that what it measured is all there (each point readable)
before it prints a figure.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

#: Points a goal run logs through the MLflow client's asynchronous mode: it moves about 160
#: metrics/s end to end, so a full 200,000 would take 20 minutes; the rate is what is compared.
MLFLOW_ASYNC_POINTS = 2_000


@dataclass
class Goal:
    """One measured goal: ours, the MLflow figure, the target, and whether it is met."""

    name: str
    ours: float
    unit: str
    target: str
    met: bool
    mlflow: float | None = None
    #: for times: a smaller figure is better (the ratio printed is then MLflow's / ours)
    lower_is_better: bool = False
    #: what the MLflow figure is, where it is not the same workload
    mlflow_note: str = ""

    def line(self) -> str:
        """One printed line: name, figure, MLflow's figure and ratio, goal, met or not."""
        peer = ""
        if self.mlflow:
            ratio = self.mlflow / self.ours if self.lower_is_better else self.ours / self.mlflow
            note = f" {self.mlflow_note}" if self.mlflow_note else ""
            peer = f" | mlflow{note} {self.mlflow:,.2f} {self.unit} -> {ratio:,.1f}x better"
        mark = "MET" if self.met else "NOT MET"
        return f"  [{mark:7s}] {self.name}: {self.ours:,.2f} {self.unit}{peer} | goal {self.target}"


# -- 1. logging in the loop ----------------------------------------------------------------
def ours_per_call_us(client: Any, project_id: int, n: int = 200_000) -> tuple[float, float]:
    """µs per ``log_metric`` in the loop, and end-to-end points/s (calls, finish, all read).

    The run is recorded by :class:`latticehub.client.ActiveRun` against the real service.
    """
    from latticehub.client.active import ActiveRun

    run = client.create_run(project_id, name="goal-loop")
    active = ActiveRun(client, run)
    active._thread.start()
    start = time.perf_counter()
    for step in range(n):
        active.log_metric("loss", 1.0 / (step + 1), step=step)
    in_loop = time.perf_counter() - start
    active.finish("FINISHED")
    got = client.metric_columns(run["id"], "loss")
    total = time.perf_counter() - start
    if len(got) != n or got.steps[-1] != n - 1:
        raise RuntimeError(f"ours: {len(got)} of {n} points readable")
    return in_loop / n * 1e6, n / total


def mlflow_async(mlflow_client: Any, n: int = MLFLOW_ASYNC_POINTS) -> tuple[float, float]:
    """The same through the mlflow client's ``synchronous=False``: µs per call, points/s."""
    exp = mlflow_client.create_experiment(f"async-{secrets.token_hex(3)}")
    run_id = mlflow_client.create_run(exp).info.run_id
    start = time.perf_counter()
    for step in range(n):
        mlflow_client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step, synchronous=False)
    in_loop = time.perf_counter() - start
    mlflow_client._tracking_client.store.flush_async_logging()
    got = mlflow_client.get_metric_history(run_id, "loss")
    total = time.perf_counter() - start
    if len(got) != n:
        raise RuntimeError(f"mlflow async: {len(got)} of {n} points readable")
    return in_loop / n * 1e6, n / total


# -- 2. reads ------------------------------------------------------------------------------------
def history_frame_seconds(client: Any, run_id: str, expected: int) -> float:
    """Seconds from the request to a pandas DataFrame of the whole history (binary columns)."""
    from latticehub.client import metric_history

    start = time.perf_counter()
    frame = metric_history(run_id, "loss", client=client)
    seconds = time.perf_counter() - start
    if len(frame) != expected:
        raise RuntimeError(f"history: {len(frame)} of {expected} points")
    return seconds


# -- 3. many writers -------------------------------------------------------------------------
def writers_rate(client: Any, project_id: int, count: int, seconds: float) -> float:
    """Metrics/s from ``count`` concurrent recorded runs (the project's client), all read back.

    Each writer is a thread with its own run logging per-step points for ``seconds``; the
    rate counts the points that are readable once every run has finished. ``client`` may be
    a list of clients (replicas): runs are spread over them round robin and read back
    through the last one.
    """
    from latticehub.client.active import ActiveRun

    clients = client if isinstance(client, list) else [client]
    runs = [
        ActiveRun(clients[i % len(clients)],
                  clients[i % len(clients)].create_run(project_id, name=f"w{i}"))
        for i in range(count)
    ]  # fmt: skip
    logged = [0] * count
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        run, step = runs[i], 0
        while time.monotonic() < stop:
            for _ in range(1000):
                run.log_metric("loss", 0.5, step=step)
                step += 1
        logged[i] = step

    start = time.perf_counter()
    for run in runs:
        run._thread.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run in runs:
        run.finish("FINISHED")
    elapsed = time.perf_counter() - start
    held = sum(len(clients[-1].metric_columns(r.id, "loss")) for r in runs)
    if held != sum(logged):
        raise RuntimeError(f"writers: {held} of {sum(logged)} points held")
    return held / elapsed


def print_goals(goals: list[Goal]) -> None:
    """The goals block of the benchmark's output."""
    print("\n== goals (issue: tracking at facility scale)")
    for goal in goals:
        print(goal.line(), flush=True)


# -- 4. the server's own cost ------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its children (from ``/proc``)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def listening_pid(port: int) -> int:
    """The process listening on ``port`` of 127.0.0.1."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise RuntimeError(f"nothing listens on port {port}")


def server_cpu_per_metric(mlflow_client: Any, pid: int, batches: int = 100) -> float:
    """Server CPU µs per metric ingested through the unmodified mlflow client's ``log_batch``.

    What the server spends while idle (its background tasks: the job poll, heartbeat
    sweeps, worker heartbeats) is measured for 3 s first and taken off at that rate, so
    that the figure is the cost of ingesting, for either server.
    """
    from mlflow.entities import Metric

    exp = mlflow_client.create_experiment(f"cpu-{secrets.token_hex(3)}")
    run_id = mlflow_client.create_run(exp).info.run_id
    stamp = int(time.time() * 1000)
    # one batch first: what a server does once (imports, statement caches) is not per metric
    mlflow_client.log_batch(run_id, metrics=[Metric("warm", 0.0, stamp, i) for i in range(1000)])
    idle_start, idle_cpu = time.perf_counter(), cpu_seconds(pid)
    time.sleep(3)
    idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.perf_counter() - idle_start)
    start, before = time.perf_counter(), cpu_seconds(pid)
    for b in range(batches):
        metrics = [Metric("loss", float(i), stamp, b * 1000 + i) for i in range(1000)]
        mlflow_client.log_batch(run_id, metrics=metrics)
    used = cpu_seconds(pid) - before - idle_rate * (time.perf_counter() - start)
    if len(mlflow_client.get_metric_history(run_id, "loss")) != batches * 1000:
        raise RuntimeError("cpu: not every metric was stored")
    return used / (batches * 1000) * 1e6


# -- 5. a long history and the service's memory ------------------------------------------------
def big_history(client: Any, store_url: str, project_id: int, points: int, pid: int) -> tuple:
    """Seconds to a DataFrame of ``points`` points, and the service's memory growth / the data.

    The points go straight into the store (not what is measured); the service's memory is
    sampled every 10 ms while it answers. Returns ``(seconds, private growth, RSS growth)``:
    private is resident memory less file-backed pages (``rss - shared``); SQLite reads its
    file through a memory map, and the pages of the file it touched count in RSS although
    they are the OS page cache's (shared, dropped under pressure), not the service's.
    """
    from array import array

    import psutil

    from hub_ext.experiments.store import SqlStore
    from latticehub.columnar import MetricColumns

    run_id = client.create_run(project_id, name="big-history")["id"]
    store = SqlStore(store_url)
    stamp = int(time.time() * 1000)
    for start in range(0, points, 500_000):
        end = min(points, start + 500_000)
        store.log_metric_columns(run_id, [MetricColumns(
            "loss", array("q", range(start, end)), array("q", [stamp]) * (end - start),
            array("d", map(float, range(start, end))))])  # fmt: skip
    store.close()
    service = psutil.Process(pid)

    def now() -> tuple[int, int]:
        info = service.memory_info()
        return info.rss - info.shared, info.rss

    baseline = now()
    peak = list(baseline)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            private, rss = now()
            peak[0], peak[1] = max(peak[0], private), max(peak[1], rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        seconds = history_frame_seconds(client, run_id, points)
    finally:
        done.set()
        sampler.join()
    data = points * 24
    return seconds, (peak[0] - baseline[0]) / data, (peak[1] - baseline[1]) / data


# -- 6. run tables -----------------------------------------------------------------------------
def median_ms(call: Any, repeats: int = 5) -> float:
    """Median wall milliseconds of ``call()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def run_table_goals(client: Any, project_id: int, runs: int) -> list[Goal]:
    """Filtered first page, top-10 by a metric and 10% of the runs into a DataFrame.

    The project holds ``runs`` runs with ``params.L`` 8 or 16 and ``metrics.loss`` =
    (i % 100) / 100, so ``metrics.loss < 0.1`` matches a tenth of them.
    """
    from latticehub.client import runs_dataframe

    scale = f"{runs / 1e6:g}M runs"
    first = median_ms(lambda: client.search_runs_page(
        project_id, filter="metrics.loss < 0.5 and params.L = '8'", max_results=100))  # fmt: skip
    top = median_ms(lambda: client.search_runs_page(
        project_id, order_by=["metrics.loss DESC"], max_results=10))  # fmt: skip
    page = client.search_runs_page(project_id, order_by=["metrics.loss DESC"], max_results=10)
    if [r["metrics"]["loss"]["value"] for r in page.items] != [0.99] * 10:
        raise RuntimeError("top-10 by loss is not the ten highest losses")
    start = time.perf_counter()
    frame = runs_dataframe(project_id, filter="metrics.loss < 0.1", client=client)
    seconds = time.perf_counter() - start
    if len(frame) != runs // 10:
        raise RuntimeError(f"run table: {len(frame)} of {runs // 10} runs")
    return [
        Goal(f"{scale}: filtered first page (100 runs)", first, "ms", "< 100 ms", first < 100,
             lower_is_better=True),
        Goal(f"{scale}: top-10 by a metric", top, "ms", "< 100 ms", top < 100,
             lower_is_better=True),
        Goal(f"{scale}: {len(frame):,} matching runs into a DataFrame", seconds, "s", "< 2 s",
             seconds < 2, lower_is_better=True),
    ]  # fmt: skip
