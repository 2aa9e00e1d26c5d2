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
    rate counts the points that are readable once every run has finished.
    """
    from latticehub.client.active import ActiveRun

    runs = [ActiveRun(client, client.create_run(project_id, name=f"w{i}")) for i in range(count)]
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
    held = sum(len(client.metric_columns(r.id, "loss")) for r in runs)
    if held != sum(logged):
        raise RuntimeError(f"writers: {held} of {sum(logged)} points held")
    return held / elapsed


def print_goals(goals: list[Goal]) -> None:
    """The goals block of the benchmark's output."""
    print("\n== goals (issue: tracking at facility scale)")
    for goal in goals:
        print(goal.line(), flush=True)
