"""Draw from a trained flow, run the exact chain and measure: ``python -m flows.sample``.

``python -m flows.sample --checkpoint OUT/checkpoint.pt --n 100000`` prints progress on stderr
and one JSON line on stdout: ESS, IMH acceptance, tau_int per observable, observables with
autocorrelation-aware errors and ``ln Z`` with its error. ``--save FILE`` keeps the chain's
configurations (``torch.save`` of a dict with ``configs`` and ``index``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from flows.actions import make_action
from flows.config import ConfigError, make_config
from flows.evaluate import draw, measure_chain
from flows.models import build_flow
from flows.train import load_checkpoint, resolve_device


def parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m flows.sample", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from flows.train")
    p.add_argument("--n", type=int, default=10000, help="number of flow proposals (e.g. 100000)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the proposals")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--chunk", type=int, default=4096, help="proposals drawn per batch")
    p.add_argument("--save", type=Path, help="write the chain's configurations here")
    return p


def run(args: argparse.Namespace) -> dict:
    """Sample, chain and measure as the flags say; return the summary."""
    from flows import mcmc, stats

    if args.n < 100:
        raise ConfigError(f"--n must be >= 100 for error estimates, got {args.n}")
    state = load_checkpoint(args.checkpoint)
    config = make_config(state["config"])
    device = resolve_device(args.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    flow = build_flow(config.to_dict()).to(device, dtype)
    flow.load_state_dict(state["model"])
    flow.eval()
    action = make_action(config.to_dict())
    xs, lqs, lps = [], [], []
    for start in range(0, args.n, args.chunk):
        size = min(args.chunk, args.n - start)
        x, lq, lp = draw(flow, action, size, seed=args.seed * 7919 + start, chunk=size)
        xs.append(x.cpu())
        lqs.append(lq.double().cpu())
        lps.append(lp.double().cpu())
        print(f"sampled {start + size}/{args.n}", file=sys.stderr, flush=True)
    x, log_q, log_p = torch.cat(xs), torch.cat(lqs), torch.cat(lps)
    chain = mcmc.independence_metropolis(log_p, log_q)
    log_w = (log_p - log_q).numpy()
    lz, lz_err = stats.log_z(log_w)
    summary = {
        "checkpoint": str(args.checkpoint),
        "steps_trained": state["step"],
        "samples": args.n,
        "ess": stats.ess(log_w),
        "acceptance": chain.acceptance,
        **measure_chain(action.field, x, chain.index),
        "log_z": [lz, lz_err],
    }
    if args.save:
        torch.save({"configs": x, "index": chain.index, "config": config.to_dict()}, args.save)
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 2 on bad flags or a missing checkpoint."""
    args = parser().parse_args(argv)
    try:
        summary = run(args)
    except ConfigError as e:
        print(f"flows.sample: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
