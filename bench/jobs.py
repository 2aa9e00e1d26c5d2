"""Jobs API on the real local Slurm: submit latency, status propagation, squeue calls per poll.

Peers, side by side in one run: plain ``sbatch --parsable`` from the command line (the floor
for submission latency), and per-job status polling (``squeue -j ID`` once per job and poll,
as simple job tools do) against latticehub's one ``squeue`` call per poll for all jobs.

    .venv/bin/python bench/jobs.py --jobs 100

Needs the one-node Slurm that ``scripts/services.sh start`` brings up. Every job it submits is
named ``lh-...`` or ``lhbench-...`` and is cancelled at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub_ext.experiments.jobs.executors import SlurmExecutor, run_command  # noqa: E402
from tests.service.test_jobs_local import Service  # noqa: E402

LIMITS = {
    "lqcd": {
        "executors": ["slurm"],
        "partitions": ["debug"],
        "max_jobs": 1000,
        "max_cpus": 1,
        "max_mem": "1G",
        "max_time": "0:30:00",
    }
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sbatch_floor(n: int, tmp: Path) -> list[float]:
    """Plain ``sbatch --parsable`` latency (the peer), then cancel those jobs."""
    script = tmp / "peer.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=lhbench-peer\n#SBATCH --mem=64M\nsleep 600\n"
    )
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["sbatch", "--parsable", str(script)], check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    subprocess.run(["scancel", "--name=lhbench-peer"], check=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=int, default=100, help="jobs to submit (queued behind 2 CPUs)"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="latticehub poll interval, s")
    parser.add_argument("--changes", type=int, default=10, help="state changes to time")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    print(f"$ {shlex.join(sys.orig_argv)}")
    tmp = Path(tempfile.mkdtemp(prefix="lhbench-jobs-"))

    peer = sbatch_floor(min(args.jobs, 50), tmp)
    calls: list[tuple[float, str]] = []

    async def counting_run(argv, timeout=30):
        calls.append((time.monotonic(), argv[0]))
        return await run_command(argv, timeout)

    svc = Service(
        tmp, [sys.executable, "-c", "import time; time.sleep(600)"], validate_config=False,
        executors={"slurm": SlurmExecutor(run=counting_run)}, limits=LIMITS,
    )  # fmt: skip
    svc.loop.call_soon_threadsafe(svc.poller.cancel)
    svc.poller = None

    async def start_poller():
        svc.poller = asyncio.ensure_future(svc.manager.run_forever(args.poll))

    asyncio.run_coroutine_threadsafe(start_poller(), svc.loop).result(10)
    body = {"project": "bench-jobs", "group": "lqcd", "config": {},
            "resources": {"executor": "slurm", "cpus": 1, "mem": "64M", "time": 30}}  # fmt: skip
    submit_s, ids = [], []
    try:
        for i in range(args.jobs):
            t0 = time.perf_counter()
            r = svc.call("POST", "/jobs", json=body)
            submit_s.append(time.perf_counter() - t0)
            if r.status_code != 201 or not r.json().get("external_id"):
                raise SystemExit(f"submission {i} failed: {r.status_code} {r.text[:300]}")
            ids.append(r.json())
            if (i + 1) % 20 == 0:
                print(f"  submitted {i + 1}/{args.jobs}", flush=True)

        # status propagation: change a job's state in Slurm itself; time until the API shows it
        lag = []
        for job in ids[-args.changes :]:
            t0 = time.monotonic()
            subprocess.run(["scancel", job["external_id"]], check=True)
            deadline = t0 + 30
            while time.monotonic() < deadline:
                if svc.call("GET", f"/jobs/{job['id']}").json()["state"] == "KILLED":
                    lag.append(time.monotonic() - t0)
                    break
                time.sleep(0.05)
        window_start = time.monotonic()
        time.sleep(5 * args.poll)
        window = [c for t, c in calls if t >= window_start]
        squeue_per_poll = window.count("squeue") / 5
    finally:
        svc.stop()
        subprocess.run(["scancel", "--name=lhbench-peer"], check=False)
        for job in ids:
            subprocess.run(["scancel", job["external_id"]], check=False, capture_output=True)

    active = len(ids) - len(lag)
    results = {
        "jobs": args.jobs,
        "poll_interval_s": args.poll,
        "submit_ms": {"p50": 1000 * pct(submit_s, 0.5), "p95": 1000 * pct(submit_s, 0.95)},
        "sbatch_cli_ms": {"p50": 1000 * pct(peer, 0.5), "p95": 1000 * pct(peer, 0.95)},
        "status_lag_s": {"p50": pct(lag, 0.5), "p95": pct(lag, 0.95), "max": max(lag)},
        "squeue_calls_per_poll": squeue_per_poll,
        "per_job_polling_calls_per_poll": active,
    }
    print(f"\nsubmission, {args.jobs} jobs (API call -> Slurm job id in the answer)")
    print(f"  latticehub POST /jobs   p50 {results['submit_ms']['p50']:7.1f} ms   "
          f"p95 {results['submit_ms']['p95']:7.1f} ms   (goal p95 < 200 ms)")  # fmt: skip
    print(f"  sbatch --parsable (CLI) p50 {results['sbatch_cli_ms']['p50']:7.1f} ms   "
          f"p95 {results['sbatch_cli_ms']['p95']:7.1f} ms")  # fmt: skip
    ratio = results["submit_ms"]["p50"] / max(results["sbatch_cli_ms"]["p50"], 1e-9)
    print(f"  ratio API / CLI (p50)   {ratio:7.2f}x")
    print(f"\nstatus propagation ({len(lag)} scancels in Slurm -> KILLED visible in the API)")
    lag_s = results["status_lag_s"]
    print(f"  p50 {lag_s['p50']:.2f} s   p95 {lag_s['p95']:.2f} s   max {lag_s['max']:.2f} s"
          "   (goal < 5 s)")  # fmt: skip
    print(f"\nsqueue calls per poll with {active} active jobs: latticehub {squeue_per_poll:.1f}, "
          f"per-job polling {active}")  # fmt: skip
    results["command"] = shlex.join(sys.orig_argv)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
