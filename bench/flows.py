"""Flow training: latticehub's trainer against a plain eager PyTorch reference (phi^4, 2D).

The reference is the phi^4 normalizing-flow example of Albergo et al., "Introduction to
Normalizing Flows for Lattice Field Theory" (arXiv:2101.08176), written here from its
specification as straightforward eager code: real scalar field on an L x L periodic lattice,
``S = sum_x [sum_mu (phi(x+mu) - phi(x))^2 + m2 phi^2 + lam phi^4]`` with m2 = -4, lam = 8,
standard normal prior, 16 real-NVP affine couplings with alternating checkerboard masks, each
conditioner Conv2d(1->8, 3x3) tanh Conv2d(8->8) tanh Conv2d(8->2) tanh with circular padding,
reverse-KL loss, Adam lr 1e-3, batch 64, 2500 steps, float32, no compile. latticehub runs as
``python -m flows.train`` in a subprocess, one after the other (never concurrently).

    python bench/flows.py [time-to-quality] [--device cpu|cuda] [--threads N] [--quick]
    python bench/flows.py throughput --L 64 --batch 4096 [--steps 50] [--extra "--amp bf16"]
    python bench/flows.py layer --device cuda [--L 64 --batch 4096]

time-to-quality (default): training wall time (interpreter start, imports, model construction
and the final evaluation excluded; latticehub's ``wall_s`` from its summary), steps, steps/s,
and the quality after training, measured the same way for both: N fresh samples (``--eval-
samples``, 8192) through an independence Metropolis-Hastings chain (``flows.mcmc``) for the
acceptance rate, and the ESS ``(sum w)^2 / (N sum w^2)`` (``flows.stats.ess``). latticehub
runs with its recommended defaults for the action and lattice (``--action phi4 --L 8``).

throughput: steps/s of both at ``--L`` and ``--batch`` over ``--steps`` after ``--warmup``
steps (latticehub's from its own per-interval rates in ``OUT/run/metrics.jsonl``, so the
warm-up, compile included, is not counted), and peak GPU memory on CUDA.

layer: one coupling layer (hidden [8, 8]) at ``--L`` and ``--batch``, forward and forward +
backward per call, with PyTorch's conditioner and with the fused Triton kernels of
``flows.fused`` (where they can run).

``--threads N`` sets ``torch.set_num_threads`` for the reference and ``OMP_NUM_THREADS`` for the
subprocess. ``--json FILE`` writes every number. Prints the command line first, so the figures
can be quoted with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows import mcmc, stats  # noqa: E402

# The tutorial's physics point and training recipe.
M2, LAM = -4.0, 8.0
N_LAYERS, HIDDEN, KERNEL = 16, 8, 3
REF_LR, REF_BATCH, REF_STEPS = 1e-3, 64, 2500

#: Environment that would make the subprocess join a data-parallel group or a tracking run.
_FOREIGN_ENV = (
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
    "LATTICEHUB_RUN_ID", "LATTICEHUB_TOKEN", "JUPYTERHUB_API_TOKEN",
)  # fmt: skip


# -- the reference: plain eager PyTorch from the tutorial's specification ---------------------
def phi4_action(phi: torch.Tensor) -> torch.Tensor:
    """``S[phi]`` per configuration of a ``[B, L, L]`` batch (periodic boundaries)."""
    kinetic = (torch.roll(phi, -1, 1) - phi) ** 2 + (torch.roll(phi, -1, 2) - phi) ** 2
    return (kinetic + M2 * phi**2 + LAM * phi**4).sum(dim=(1, 2))


class Coupling(nn.Module):
    """Affine coupling: sites where mask = 1 are frozen and condition the others."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)
        pad = {"padding": KERNEL // 2, "padding_mode": "circular"}
        self.net = nn.Sequential(
            nn.Conv2d(1, HIDDEN, KERNEL, **pad),
            nn.Tanh(),
            nn.Conv2d(HIDDEN, HIDDEN, KERNEL, **pad),
            nn.Tanh(),
            nn.Conv2d(HIDDEN, 2, KERNEL, **pad),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det dy/dx|)`` per configuration."""
        frozen = self.mask * x
        out = self.net(frozen.unsqueeze(1))
        s = (1 - self.mask) * out[:, 0]
        t = (1 - self.mask) * out[:, 1]
        y = frozen + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, s.sum(dim=(1, 2))


class ReferenceFlow(nn.Module):
    """Standard normal prior pushed through 16 checkerboard couplings."""

    def __init__(self, L: int):  # noqa: N803
        super().__init__()
        i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
        layers = []
        for k in range(N_LAYERS):
            mask = ((i + j + k) % 2 == 0).float()
            layers.append(Coupling(mask))
        self.layers = nn.ModuleList(layers)
        self.L = L

    def sample(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` configurations and their log density ``log q``."""
        z = torch.randn(n, self.L, self.L, device=device)
        log_q = -0.5 * (z**2).sum(dim=(1, 2)) - 0.5 * self.L**2 * math.log(2 * math.pi)
        x = z
        for layer in self.layers:
            x, log_det = layer(x)
            log_q = log_q - log_det
        return x, log_q


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_train(
    L: int,
    batch: int,
    steps: int,
    device: torch.device,
    seed: int,
    warmup: int = 0,  # noqa: N803
) -> dict[str, Any]:
    """Train the reference; the clock covers the ``steps`` after ``warmup`` untimed steps."""
    torch.manual_seed(seed)
    flow = ReferenceFlow(L).to(device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=REF_LR)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    history = []

    def step() -> None:
        x, log_q = flow.sample(batch, device)
        loss = (log_q + phi4_action(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    wall = time.perf_counter() - start
    result = {
        "steps": steps,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 3),
        "loss": history[-1],
        "flow": flow,
    }
    if device.type == "cuda":
        result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return result


@torch.no_grad()
def reference_quality(flow: ReferenceFlow, n: int, device: torch.device, seed: int) -> dict:
    """Acceptance and ESS of ``n`` fresh samples, with the project's IMH chain and ESS."""
    torch.manual_seed(seed)
    log_ps, log_qs = [], []
    for start in range(0, n, 4096):
        x, log_q = flow.sample(min(4096, n - start), device)
        log_ps.append(-phi4_action(x))
        log_qs.append(log_q)
    log_p = torch.cat(log_ps).double().cpu()
    log_q = torch.cat(log_qs).double().cpu()
    log_w = log_p - log_q
    if not torch.isfinite(log_w).all():
        return {"ess": 0.0, "acceptance": 0.0, "error": "non-finite weights"}
    chain = mcmc.independence_metropolis(log_p, log_q)
    return {
        "ess": round(stats.ess(log_w.numpy()), 6),
        "acceptance": round(chain.acceptance, 6),
        "samples": n,
    }


# -- latticehub: python -m flows.train in a subprocess ------------------------------------
def latticehub_train(
    flags: list[str], threads: int | None, ranks: int = 1
) -> tuple[dict[str, Any], Path]:
    """Run the trainer (under torchrun when ``ranks`` > 1); return its summary and output dir."""
    out = Path(tempfile.mkdtemp(prefix="lhbench-flows-"))
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    cmd = [sys.executable, *(launcher if ranks > 1 else []), "-m", "flows.train", *flags]
    cmd += ["--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    print(f"  $ {shlex.join(['python', *cmd[1:]])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"flows.train failed (exit {proc.returncode}):\n{proc.stdout}")
    return json.loads(lines[-1]), out


def rate_after_warmup(out: Path, warmup: int) -> float:
    """Steps/s after step ``warmup`` from the trainer's per-interval rates (metrics.jsonl)."""
    records = [json.loads(ln) for ln in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "steps_per_s" in r]
    seconds, steps, previous = 0.0, 0, 0
    for r in records:
        if previous >= warmup:
            seconds += (r["step"] - previous) / r["steps_per_s"]
            steps += r["step"] - previous
        previous = r["step"]
    if steps == 0:
        raise SystemExit(f"no progress records after step {warmup} in {out}/run/metrics.jsonl")
    return steps / seconds


# -- modes ----------------------------------------------------------------------------------
def row(name: str, r: dict[str, Any], keys: list[tuple[str, str, str]]) -> str:
    cells = []
    for key, _, fmt in keys:
        value = r.get(key)
        cells.append(format(value, fmt) if isinstance(value, int | float) else "-".rjust(10))
    return f"  {name:11s} " + " ".join(cells)


def header(keys: list[tuple[str, str, str]]) -> str:
    return f"  {'':11s} " + " ".join(f"{title:>10s}" for _, title, _ in keys)


def time_to_quality(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    ref_steps = args.ref_steps or (100 if args.quick else REF_STEPS)
    n_eval = args.eval_samples or (1024 if args.quick else 8192)
    L = args.L or 8  # noqa: N806

    print(f"\n== reference: eager PyTorch, {ref_steps} steps, batch {REF_BATCH}, lr {REF_LR}")
    ref = reference_train(L, REF_BATCH, ref_steps, device, args.seed)
    ref.update(reference_quality(ref.pop("flow"), n_eval, device, args.seed + 7))
    print(f"  trained in {ref['wall_s']:.1f} s", flush=True)

    print("\n== latticehub: python -m flows.train (recommended defaults)", flush=True)
    flags = ["--action", "phi4", "--L", str(L), "--device", device.type]
    flags += ["--eval_samples", str(n_eval)]
    flags += (["--steps", "100"] if args.quick else []) + shlex.split(args.extra)
    lh, _ = latticehub_train(flags, args.threads)
    lh = {k: v for k, v in lh.items() if k not in ("observables", "tau_int", "log_z")}

    keys = [
        ("wall_s", "wall s", "10.2f"),
        ("steps", "steps", "10d"),
        ("steps_per_s", "steps/s", "10.1f"),
        ("acceptance", "accept", "10.3f"),
        ("ess", "ESS", "10.3f"),
    ]
    print(f"\ntime to quality, phi^4 L={L}, m2={M2}, lam={LAM}, {device.type}, "
          f"quality from {n_eval} fresh samples (IMH acceptance, ESS)")  # fmt: skip
    print(header(keys))
    print(row("reference", ref, keys))
    print(row("latticehub", lh, keys))

    speedup = ref["wall_s"] / lh["wall_s"]
    d_acc = lh["acceptance"] - ref["acceptance"]
    ratios = {
        "wall reference/latticehub": speedup,
        "acceptance latticehub-reference": d_acc,
        "acceptance latticehub/reference": lh["acceptance"] / max(ref["acceptance"], 1e-12),
        "ess latticehub/reference": lh["ess"] / max(ref["ess"], 1e-12),
    }
    print("\n== ratios")
    print(f"  wall time reference / latticehub      {speedup:8.2f}x")
    print(f"  acceptance latticehub - reference     {d_acc:+8.3f}"
          f"  ({lh['acceptance']:.3f} vs {ref['acceptance']:.3f})")  # fmt: skip
    print(f"  ESS latticehub / reference            {ratios['ess latticehub/reference']:8.2f}")
    target = 3 if device.type == "cpu" else 10
    goal = f"same or better acceptance in <= 1/{target} of the reference wall time"
    met = d_acc >= 0 and speedup >= target
    note = "  (quick run: smoke test, not a measurement)" if args.quick else ""
    print(f"\n{'CPU' if device.type == 'cpu' else 'CUDA'} goal: {goal}: "
          f"{'met' if met else 'not met'}{note}")  # fmt: skip
    return {
        "L": L,
        "eval_samples": n_eval,
        "reference": ref,
        "latticehub": lh,
        "ratios": ratios,
        "goal": goal,
        "goal_met": met,
    }


def throughput(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    L = args.L or (8 if args.quick else 64)  # noqa: N806
    batch = args.batch or (64 if args.quick else 4096)
    steps = args.steps or (20 if args.quick else 50)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 10)

    print(f"\n== reference: eager PyTorch, L={L}, batch {batch}, {warmup} + {steps} steps")
    ref = reference_train(L, batch, steps, device, args.seed, warmup=warmup)
    ref.pop("flow")
    print(f"  {ref['steps_per_s']:.2f} steps/s", flush=True)

    print(f"\n== latticehub: python -m flows.train, {warmup} + {steps} steps", flush=True)
    # The user's flags first; the measurement's own flags last (they win).
    flags = ["--action", "phi4", "--L", str(L), "--device", device.type, *shlex.split(args.extra)]
    flags += ["--batch_size", str(batch), "--steps", str(warmup + steps)]
    flags += ["--log_every", str(max(warmup, 1)), "--checkpoint_every", "0"]
    flags += ["--eval_samples", "0"]
    summary, out = latticehub_train(flags, args.threads)
    lh = {
        "steps": steps,
        "steps_per_s": round(rate_after_warmup(out, warmup), 3),
        "steps_per_s_incl_warmup": summary["steps_per_s"],
    }
    if "peak_gpu_mem_gb" in summary:
        lh["peak_gpu_mem_gb"] = summary["peak_gpu_mem_gb"]
    print(f"  {lh['steps_per_s']:.2f} steps/s", flush=True)

    keys = [("steps_per_s", "steps/s", "10.2f")]
    if device.type == "cuda":
        keys.append(("peak_gpu_mem_gb", "peak GiB", "10.3f"))
    extra = f", latticehub flags: {args.extra}" if args.extra else ""
    print(f"\nthroughput, phi^4 L={L}, batch {batch}, {steps} steps after {warmup} warm-up, "
          f"{device.type}{extra}")  # fmt: skip
    print(header(keys))
    print(row("reference", ref, keys))
    print(row("latticehub", lh, keys))
    ratios = {"steps/s latticehub/reference": lh["steps_per_s"] / ref["steps_per_s"]}
    print("\n== ratios")
    print(f"  steps/s latticehub / reference        {ratios['steps/s latticehub/reference']:8.2f}x")
    if device.type == "cuda" and "peak_gpu_mem_gb" in lh:
        mem = lh["peak_gpu_mem_gb"] / max(ref["peak_gpu_mem_gb"], 1e-12)
        ratios["peak memory latticehub/reference"] = mem
        print(f"  peak GPU memory latticehub / reference {mem:7.2f}")
    if args.quick:
        print("  (quick run: smoke test, not a measurement)")
    return {
        "L": L,
        "batch": batch,
        "warmup": warmup,
        "reference": ref,
        "latticehub": lh,
        "ratios": ratios,
    }


def scaling(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Data-parallel throughput: 1 rank against ``--ranks`` ranks, ``--batch`` samples per rank."""
    L = args.L or (8 if args.quick else 64)  # noqa: N806
    batch = args.batch or (64 if args.quick else 4096)
    steps = args.steps or (20 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 5)
    results: dict[str, Any] = {}
    for ranks in (1, args.ranks):
        print(f"\n== latticehub, {ranks} rank(s), L={L}, batch {batch} per rank", flush=True)
        flags = ["--action", "phi4", "--L", str(L), "--device", device.type]
        # Same code path on both sides: CUDA graphs are single-process only.
        flags += ["--cuda_graph", "false", *shlex.split(args.extra)]
        flags += ["--batch_size", str(batch), "--steps", str(warmup + steps)]
        flags += ["--log_every", str(max(warmup, 1)), "--checkpoint_every", "0"]
        flags += ["--eval_samples", "0"]
        summary, out = latticehub_train(flags, args.threads, ranks=ranks)
        rate = rate_after_warmup(out, warmup)
        results[str(ranks)] = {
            "ranks": ranks,
            "steps_per_s": round(rate, 3),
            "samples_per_s": round(rate * batch * ranks, 1),
            "peak_gpu_mem_gb": summary.get("peak_gpu_mem_gb"),
        }
        print(f"  {rate:.2f} steps/s, {rate * batch * ranks:.0f} samples/s", flush=True)
    one, many = results["1"], results[str(args.ranks)]
    speedup = many["samples_per_s"] / one["samples_per_s"]
    print(f"\n== ratios\n  samples/s {args.ranks} ranks / 1 rank      {speedup:8.2f}x"
          f"  (ideal {args.ranks}x; goal >= {0.9 * args.ranks:.1f}x)")  # fmt: skip
    return {"L": L, "batch_per_rank": batch, "runs": results, "speedup": speedup}


def memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Largest lattice one GPU trains at ``--batch``: double L until a step runs out of memory."""
    from flows.config import RANGES, make_config
    from flows.train import Trainer

    batch = args.batch or 64
    L, rows = args.L or 128, []  # noqa: N806
    while L <= RANGES["L"][1]:  # the largest L flows.train accepts
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            config = {"action": "phi4", "L": L, "batch_size": batch, "device": device.type}
            trainer = Trainer(make_config({**config, "cuda_graph": False, "steps": 10}))
            for _ in range(2):
                trainer.train_step()
            sync(device)
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append({"L": L, "batch": batch, "peak_gpu_mem_gb": round(peak, 2), "fits": True})
            print(f"  L={L:5d} batch {batch}: peak {peak:7.2f} GiB", flush=True)
            del trainer
        except torch.cuda.OutOfMemoryError:
            rows.append({"L": L, "batch": batch, "fits": False})
            print(f"  L={L:5d} batch {batch}: out of memory", flush=True)
            break
        L *= 2  # noqa: N806
    largest = max((r["L"] for r in rows if r["fits"]), default=None)
    limit = " (the largest L flows.train accepts)" if largest == RANGES["L"][1] else ""
    print(f"\nlargest lattice trained at batch {batch}: L={largest}{limit}")
    return {"rows": rows, "largest_L": largest}


def layer(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One phi^4 coupling layer, forward and forward + backward: PyTorch against fused kernels."""
    from flows import fused
    from flows.transforms import AffineCoupling, ConvNet, checkerboard

    L = args.L or (8 if args.quick else 64)  # noqa: N806
    batch = args.batch or (64 if args.quick else 4096)
    calls = 3 if args.quick else 10
    torch.manual_seed(args.seed)
    coupling = AffineCoupling(checkerboard((L, L), 1), ConvNet(1, [8, 8], 2)).to(device)
    x = torch.randn(batch, L, L, device=device, requires_grad=True)

    def forward() -> None:
        with torch.no_grad():
            coupling(x)

    def forward_backward() -> None:
        y, log_det = coupling(x)
        (y.sum() + log_det.sum()).backward()

    def per_call_ms(fn: Callable[[], None]) -> float:
        fn()  # compiles the kernels, warms the allocator
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        return (time.perf_counter() - start) / calls * 1e3

    kinds = ["torch"] + (["triton"] if fused.available(device) else [])
    rows = {}
    print(f"\none coupling layer, hidden [8, 8], L={L}, batch {batch}, {calls} calls each")
    for kind in kinds:
        coupling.kernels = kind
        rows[kind] = {
            "forward_ms": per_call_ms(forward),
            "fwd_bwd_ms": per_call_ms(forward_backward),
        }
        print(f"  {kind:7s} forward {rows[kind]['forward_ms']:8.2f} ms   forward + backward "
              f"{rows[kind]['fwd_bwd_ms']:8.2f} ms", flush=True)  # fmt: skip
    if "triton" in rows:
        ratio = rows["torch"]["fwd_bwd_ms"] / rows["triton"]["fwd_bwd_ms"]
        print(f"  forward + backward, torch / fused: {ratio:.2f}x")
    else:
        print("  (fused kernels not available here: needs CUDA and triton, or TRITON_INTERPRET=1)")
    return {"L": L, "batch": batch, "layer": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode",
        nargs="?",
        default="time-to-quality",
        choices=("time-to-quality", "throughput", "scaling", "memory", "layer"),
    )
    parser.add_argument("--ranks", type=int, default=2, help="scaling: data-parallel ranks")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="default: cuda when a GPU is visible, else cpu",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for both (torch.set_num_threads / OMP_NUM_THREADS)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 60 s on CPU)")
    parser.add_argument(
        "--L",
        type=int,
        default=None,
        help="lattice extent (time-to-quality 8; throughput 64, quick 8)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="throughput batch for both (4096; quick 64)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="throughput: timed steps after the warm-up (50; quick 20)",
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="throughput: untimed warm-up steps (10; quick 3)"
    )
    parser.add_argument(
        "--ref-steps",
        type=int,
        default=None,
        help=f"time-to-quality: reference steps ({REF_STEPS}; quick 100)",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="time-to-quality: fresh samples for the quality (8192; quick 1024)",
    )
    parser.add_argument(
        "--extra", default="", help='more flows.train flags, e.g. "--amp bf16 --compile true"'
    )
    parser.add_argument("--seed", type=int, default=0, help="reference seed")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = parser.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is visible")
    if args.mode == "scaling" and device.type == "cuda" and torch.cuda.device_count() < args.ranks:
        parser.error(
            f"scaling --ranks {args.ranks} needs {args.ranks} visible GPUs, found "
            f"{torch.cuda.device_count()}: lower --ranks, or run on a machine with more GPUs"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(f"torch {torch.__version__}, {device.type} ({hardware}), "
          f"{torch.get_num_threads()} threads, python {platform.python_version()}")  # fmt: skip

    modes = {
        "time-to-quality": time_to_quality,
        "throughput": throughput,
        "scaling": scaling,
        "memory": memory,
        "layer": layer,
    }
    run = modes[args.mode]
    results = run(args, device)
    if args.json:
        record = {
            "command": shlex.join(sys.orig_argv),
            "mode": args.mode,
            "device": device.type,
            "hardware": hardware,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d"),
            **results,
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
