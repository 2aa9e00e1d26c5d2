"""Exact sampling and measurement with a trained flow: IMH chain, ESS, observables, ln Z."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from flows.actions import Action
from flows.models import Flow
from flows.observables import primary_observables


@torch.no_grad()
def draw(
    flow: Flow, action: Action, n: int, seed: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` flow samples with ``log q`` and ``log p = -S`` (on the flow's device, in chunks)."""
    param = next(flow.parameters())
    generator = torch.Generator(param.device)
    generator.manual_seed(seed)
    xs, log_qs, log_ps = [], [], []
    for start in range(0, n, chunk):
        x, log_q = flow.sample(min(chunk, n - start), generator=generator)
        xs.append(x)
        log_qs.append(log_q)
        log_ps.append(-action(x))
    return torch.cat(xs), torch.cat(log_qs), torch.cat(log_ps)


def measure_chain(field: str, cfgs: torch.Tensor, index: torch.Tensor) -> dict[str, Any]:
    """Observables with autocorrelation-aware errors along an IMH chain."""
    from flows import stats

    volume = cfgs[0].numel() if field == "scalar" else cfgs[0, 0].numel()
    prim = {k: v.double().cpu()[index.cpu()] for k, v in primary_observables(field, cfgs).items()}
    results: dict[str, list[float]] = {}
    taus: dict[str, float] = {}
    for name, series in prim.items():
        g = stats.gamma_method(series.numpy())
        results[name] = [g.mean, g.error]
        taus[name] = g.tau_int
    if field == "scalar":
        data = torch.stack([prim["M"] / volume, prim["M"] ** 2 / volume**2], dim=1).numpy()
        chi = stats.jackknife(data, lambda m: volume * (m[..., 1] - m[..., 0] ** 2), n_bins=50)
        results["chi2"] = [float(chi[0]), float(chi[1])]
    else:
        results["chi_t"] = [v / volume for v in results["Q2"]]
    return {"observables": results, "tau_int": taus}


def evaluate(
    flow: Flow, action: Action, n: int, seed: int = 0, save_to: Path | None = None
) -> dict[str, Any]:
    """Draw ``n`` fresh samples; return ESS, IMH acceptance, tau_int, observables and ln Z.

    With ``save_to`` the first 1024 states of the exact chain are saved there (the same format
    as ``flows.sample --save``: usable as ``forward_kl_data``).
    """
    from flows import mcmc, stats

    if n < 100:
        return {}
    training = flow.training
    flow.eval()
    try:
        x, log_q, log_p = draw(flow, action, n, seed)
    finally:
        flow.train(training)
    log_w = (log_p - log_q).double().cpu()
    if not torch.isfinite(log_w).all():
        return {"ess": 0.0, "acceptance": 0.0, "error": "non-finite weights: training diverged"}
    chain = mcmc.independence_metropolis(log_p.double().cpu(), log_q.double().cpu())
    measured = measure_chain(action.field, x, chain.index)
    if save_to is not None:
        keep = chain.index[:1024].to(x.device)
        torch.save({"configs": x[keep].cpu(), "action": action.to_dict()}, save_to)
    lz, lz_err = stats.log_z(log_w.numpy())
    return {
        "ess": round(stats.ess(log_w.numpy()), 6),
        "acceptance": round(chain.acceptance, 6),
        "samples": n,
        **measured,
        "log_z": [lz, lz_err if math.isfinite(lz_err) else None],
    }
