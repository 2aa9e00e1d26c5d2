"""Observables measured on batches of configurations (layouts as in :mod:`flows.actions`).

Per-configuration ("primary") observables return shape ``[B]`` (or ``[B, ...]`` for
correlators); ensemble quantities that are non-linear in expectation values (connected
correlator, susceptibility) are functions of ensemble means, so that jackknife and bootstrap
in :mod:`flows.stats` propagate their errors.
"""

from __future__ import annotations

import torch

from flows.actions import plaquette_angles, topological_charge


def magnetization(phi: torch.Tensor) -> torch.Tensor:
    """Total field ``M = sum_x phi(x)`` per configuration."""
    return phi.flatten(1).sum(1)


def abs_magnetization(phi: torch.Tensor) -> torch.Tensor:
    """``|M|`` per configuration."""
    return magnetization(phi).abs()


def two_point(phi: torch.Tensor) -> torch.Tensor:
    """Volume-averaged ``C(y) = (1/V) sum_x phi(x) phi(x+y)`` per configuration, ``[B, L, L]``.

    Computed with an FFT (``O(V log V)`` instead of ``O(V^2)``).
    """
    dims = tuple(range(1, phi.dim()))
    f = torch.fft.fftn(phi, dim=dims)
    volume = phi[0].numel()
    return torch.fft.ifftn(f.conj() * f, dim=dims).real / volume


def connected_correlator(phi: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``G_c(y) = <C(y)> - <phi>^2`` over the batch (optionally reweighted), shape ``[L, L]``."""
    w = _normalized(weights, phi)
    mean_c = torch.einsum("b,b...->...", w, two_point(phi))
    mean_phi = (w * phi.flatten(1).mean(1)).sum()
    return mean_c - mean_phi**2


def susceptibility(phi: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Two-point susceptibility ``chi_2 = sum_y G_c(y) = V (<m^2> - <m>^2)``, ``m = M / V``."""
    w = _normalized(weights, phi)
    volume = phi[0].numel()
    m = phi.flatten(1).mean(1)
    return volume * ((w * m**2).sum() - (w * m).sum() ** 2)


def plaquette(links: torch.Tensor) -> torch.Tensor:
    """Mean ``cos(theta_P)`` per configuration."""
    return torch.cos(plaquette_angles(links)).mean(dim=(1, 2))


def wilson_loop(links: torch.Tensor, r: int, t: int) -> torch.Tensor:
    """Mean ``Re W(r, t)`` of ``r x t`` rectangles (r along direction 0), per configuration."""
    if r < 1 or t < 1:
        raise ValueError(f"Wilson loop extents must be >= 1, got r={r}, t={t}")
    t0, t1 = links[:, 0], links[:, 1]
    # Sum of r consecutive direction-0 links starting at x, and t direction-1 links.
    bottom = sum(torch.roll(t0, -k, 1) for k in range(r))
    left = sum(torch.roll(t1, -k, 2) for k in range(t))
    angle = bottom + torch.roll(left, -r, 1) - torch.roll(bottom, -t, 2) - left
    return torch.cos(angle).mean(dim=(1, 2))


def topological_susceptibility(
    links: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``chi_t = <Q^2> / V`` (``<Q> = 0`` by parity)."""
    w = _normalized(weights, links)
    volume = links[0, 0].numel()
    return (w * topological_charge(links) ** 2).sum() / volume


def primary_observables(field: str, cfg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-configuration observables for the chain summaries, by field kind."""
    if field == "scalar":
        volume = cfg[0].numel()
        m = magnetization(cfg)
        return {"M": m, "absM": m.abs(), "M2_over_V": m**2 / volume}
    if field == "u1":
        q = topological_charge(cfg)
        return {"plaquette": plaquette(cfg), "Q": q, "Q2": q**2}
    raise ValueError(f"unknown field kind {field!r}")


def _normalized(weights: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        n = like.shape[0]
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    return weights / weights.sum()
