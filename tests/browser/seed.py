"""Test data for the dashboard: many runs fast (bulk SQL), and a small realistic project."""

from __future__ import annotations

import math
import random
import time
import uuid

from hub_ext.experiments.store import SqlStore, blocks
from hub_ext.experiments.store import schema as t
from hub_ext.experiments.store.entities import Metric, Param, RunStatus, Tag

STATUSES = ("FINISHED", "FINISHED", "FINISHED", "FAILED", "KILLED", "RUNNING")
CODE = {
    "commit": "9f3c2e1d4b5a69788f0e1d2c3b4a59687f6e5d4c",
    "branch": "main",
    "remote": "git@example.org:lqcd/flows.git",
    "diff_truncated": False,
}
DIFF = "--- a/flows/train.py\n+++ b/flows/train.py\n@@ -10 +10 @@\n-lr = 1e-3\n+lr = 3e-3\n"
ENVIRONMENT = {
    "python": "3.11.2",
    "host": "node07",
    "torch": "2.13.0+cpu",
    "packages": ["numpy==2.1.0", "torch==2.13.0"],
    "group": "lqcd",
}
FAILURE = {
    "type": "FloatingPointError",
    "message": "loss became NaN at step 1650",
    "traceback": (
        "Traceback (most recent call last):\n"
        '  File "flows/train.py", line 212, in train\n'
        "    raise FloatingPointError(...)\n"
        "FloatingPointError: loss became NaN at step 1650\n"
    ),
    "exit_code": 1,
}


def bulk_runs(store: SqlStore, project_id: int, n: int, *, user: str = "ann") -> None:
    """Insert ``n`` runs with params L, lr, seed and latest metrics loss, ess in one go.

    Run i has ``L = 4 + 4 * (i % 3)`` and ``loss = (i % 100) / 100``, so filters have a
    known answer: ``metrics.loss < 0.5 and params.L = '8'`` matches the runs with
    ``i % 3 == 1`` and ``i % 100 < 50``.
    """
    now = int(time.time() * 1000)
    runs, params, metrics, tags = [], [], [], []
    for i in range(n):
        run_id = uuid.uuid4().hex
        start = now - (n - i) * 60_000
        status = STATUSES[i % len(STATUSES)]
        runs.append({
            "run_id": run_id, "project_id": project_id, "name": f"scan-{i:05d}", "user_id": user,
            "status": status, "start_time": start,
            "end_time": None if status == "RUNNING" else start + 30_000 + 97 * (i % 50),
            "lifecycle_stage": "active", "artifact_uri": "", "code": "{}", "environment": "{}",
            "failure": "{}", "status_reason": "",
        })  # fmt: skip
        params += [
            {"run_id": run_id, "key": "L", "value": str(4 + 4 * (i % 3))},
            {"run_id": run_id, "key": "lr", "value": f"{0.001 * (1 + i % 5):g}"},
            {"run_id": run_id, "key": "seed", "value": str(i)},
        ]
        for key, value in (("loss", (i % 100) / 100), ("ess", 0.1 + 0.8 * ((i * 7) % 10) / 10)):
            metrics.append({"run_id": run_id, "key": key, "step": 1000, "timestamp": start,
                            "value": value, "is_nan": False})  # fmt: skip
        tags.append({"run_id": run_id, "key": "mlflow.runName", "value": f"scan-{i:05d}"})
    with store.engine.begin() as conn:
        conn.execute(t.runs.insert(), runs)
        conn.execute(t.params.insert(), params)
        conn.execute(t.latest_metrics.insert(), metrics)
        conn.execute(t.metric_blocks.insert(), [
            blocks.row(m["run_id"], blocks.point(m["key"], m["step"], m["timestamp"], m["value"]))
            for m in metrics])  # fmt: skip
        conn.execute(t.tags.insert(), tags)


def demo_project(store: SqlStore, *, name: str = "phi4-L8", runs: int = 6) -> tuple[int, list[str]]:
    """A project like a real phi^4 scan: params, metric curves, logs, code and environment."""
    rng = random.Random(7)
    project = store.create_project(
        name, owner="ann", group="lqcd", description="phi^4, L=8, affine coupling flows"
    )
    ids = []
    now = int(time.time() * 1000)
    for i in range(runs):
        lr = [1e-3, 3e-3, 1e-2][i % 3]
        layers = [8, 12][i // 3 % 2]
        status = [RunStatus.FINISHED, RunStatus.FINISHED, RunStatus.FAILED][i % 3]
        start = now - (runs - i) * 3_600_000
        run = store.create_run(
            project.id, user="ann", name=f"affine-{layers}l-lr{lr:g}", start_time=start,
            status=RunStatus.RUNNING, tags=[Tag("action", "phi4")],
        )  # fmt: skip
        store.log_batch(run.id, params=[
            Param("action", "phi4"), Param("L", "8"), Param("m2", "-4.0"), Param("lam", "8.0"),
            Param("n_layers", str(layers)), Param("hidden", "[16, 16]"), Param("lr", f"{lr:g}"),
            Param("batch_size", "256"), Param("seed", str(i)),
        ])  # fmt: skip
        points = []
        for step in range(0, 2001, 25):
            decay = math.exp(-step * lr / 4)
            loss = 2.0 * decay + 0.05 + 0.02 * rng.random()
            ess = min(0.95, (1 - decay) * (0.6 + 0.05 * layers / 4)) + 0.01 * rng.random()
            points += [
                Metric("loss", loss, start + step * 100, step),
                Metric("ess", ess, start + step * 100, step),
                Metric("acceptance", min(0.99, ess + 0.1), start + step * 100, step),
            ]
        store.log_batch(run.id, metrics=points)
        lines = [f"step {s:5d}  loss {2.0 * math.exp(-s * lr / 4) + 0.05:.4f}"
                 for s in range(0, 2001, 100)]  # fmt: skip
        store.append_logs(run.id, "stdout", 0, lines, start)
        failed = status == RunStatus.FAILED
        store.update_run(
            run.id,
            status=status,
            end_time=start + 200_000 + 1000 * i,
            code={**CODE, "dirty": i == 0, "diff": DIFF if i == 0 else ""},
            environment=ENVIRONMENT,
            failure=FAILURE if failed else {},
            status_reason=f"{FAILURE['type']}: {FAILURE['message']}" if failed else "",
        )
        ids.append(run.id)
    return project.id, ids
