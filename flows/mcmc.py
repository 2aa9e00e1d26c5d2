"""Markov chain Monte Carlo samplers: flow-based independence Metropolis, local Metropolis, HMC.

Field layouts are those of :mod:`flows.actions` (scalar ``[B, L, L]``, U(1) link angles
``[B, 2, L, L]``). Every sampler runs ``B`` independent chains at once, draws its randomness only
from the ``torch.Generator`` it is given (so a run is reproducible from the generator's seed), and
creates every tensor with the device and dtype of its input.

* :func:`independence_metropolis` turns a sequence of flow proposals (with their model log
  densities) into an exact Markov chain for ``exp(-S)``: the caller gathers configurations or
  observables with the returned ``index``.
* :func:`local_metropolis_phi4` / :func:`phi4_chain`: checkerboard Metropolis for
  :class:`~flows.actions.Phi4Action`.
* :func:`local_metropolis_u1`: Metropolis on U(1) links in four sets that share no plaquette.
* :func:`hmc`: Hybrid Monte Carlo with leapfrog and autograd forces, for any differentiable
  :class:`~flows.actions.Action` (U(1) angles are treated as unconstrained reals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from flows.actions import Action, Phi4Action, U1GaugeAction, plaquette_angles, wrap

__all__ = [
    "HMCResult",
    "IMHResult",
    "hmc",
    "independence_metropolis",
    "leapfrog",
    "local_metropolis_phi4",
    "local_metropolis_u1",
    "phi4_chain",
]


# --------------------------------------------------------------------------------------------
# Independence Metropolis-Hastings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IMHResult:
    """Outcome of :func:`independence_metropolis` over ``N`` proposals.

    Attributes:
        index: ``LongTensor [N]``, the proposal the chain sits on after step ``i``. ``-1`` means
            the chain still sits on the state it was started from (only possible when
            ``start_log_ratio`` was given); replace it by that state, e.g. prepend the previous
            batch's last configuration and gather with ``index + 1``.
        accepted: ``bool [N]``, whether proposal ``i`` was accepted.
        acceptance: fraction of accepted proposals.
        last_log_ratio: ``log_p - log_q`` of the state the chain ends on; pass it as
            ``start_log_ratio`` to continue the chain with the next batch of proposals.
    """

    index: torch.Tensor
    accepted: torch.Tensor
    acceptance: float
    last_log_ratio: float


def independence_metropolis(
    log_p: torch.Tensor,
    log_q: torch.Tensor,
    generator: torch.Generator | None = None,
    start_log_ratio: float | None = None,
) -> IMHResult:
    """Run the independence Metropolis-Hastings chain over a sequence of flow proposals.

    Proposal ``i`` (drawn independently from the flow, with model log density ``log_q[i]``) is
    accepted with probability ``min(1, exp(r_i - r_cur))``, ``r = log_p - log_q``, where ``cur``
    is the state the chain currently sits on. ``log_p = -S`` needs no normalization.

    Randomness: exactly ``N`` float64 uniforms ``u = torch.rand(N, generator=generator,
    dtype=torch.float64, device=generator.device)`` are drawn, and proposal ``i`` is accepted
    iff ``log(u[i]) < r_i - r_cur``. Drawing the uniforms for two halves one after the other
    gives the same numbers as one draw, so a chain continued with ``start_log_ratio`` equals one
    run over all proposals. With ``generator=None`` torch's global generator is used (only
    reproducible through ``torch.manual_seed``).

    The sequential scan runs in a tight Python loop over float64 values (about 0.1 us per step:
    ~0.1-0.2 s for ``N = 1e6``); everything else is vectorized.

    Args:
        log_p: ``[N]`` target log densities (``-S``) of the proposals, in proposal order.
        log_q: ``[N]`` flow log densities of the same proposals.
        generator: source of the uniforms; its device must be that of ``log_p``.
        start_log_ratio: ``log_p - log_q`` of the state the chain starts on (the
            ``last_log_ratio`` of the previous batch). ``None`` starts the chain on proposal 0,
            which then counts as accepted.

    Returns:
        The :class:`IMHResult` (``index`` and ``accepted`` on ``log_p``'s device).

    Raises:
        ValueError: if the inputs are not matching non-empty 1-D tensors, contain NaN, or the
            generator is on another device.
    """
    if not isinstance(log_p, torch.Tensor) or not isinstance(log_q, torch.Tensor):
        raise ValueError(
            "log_p and log_q must be torch tensors of shape [N]; convert with torch.as_tensor"
        )
    if log_p.dim() != 1 or log_p.shape != log_q.shape or log_p.numel() == 0:
        raise ValueError(
            f"log_p and log_q must be non-empty 1-D tensors of the same length, got shapes "
            f"{tuple(log_p.shape)} and {tuple(log_q.shape)}; flatten the proposal batch first"
        )
    if log_p.device != log_q.device:
        raise ValueError(
            f"log_p is on {log_p.device} but log_q on {log_q.device}; move both to one device"
        )
    device = log_p.device
    _check_generator(generator, device, required=False)
    if start_log_ratio is not None and math.isnan(start_log_ratio):
        raise ValueError("start_log_ratio is NaN; pass the last_log_ratio of a previous run")

    ratio_t = log_p.detach().to(torch.float64) - log_q.detach().to(torch.float64)
    if torch.isnan(ratio_t).any():
        raise ValueError(
            "log_p - log_q contains NaN (e.g. inf - inf or a NaN action); drop or fix those "
            "proposals before running the chain"
        )
    n = ratio_t.numel()
    uniforms = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    log_u = torch.log(uniforms).cpu().numpy().tolist()
    ratio = ratio_t.cpu().numpy().tolist()
    if start_log_ratio is None:
        # The chain starts on proposal 0 (its uniform is drawn anyway, to keep draws aligned).
        index_np, accepted_np, last = _imh_scan(ratio[1:], log_u[1:], ratio[0])
        index_np = np.concatenate([np.zeros(1, dtype=np.int64), index_np + 1])
        accepted_np = np.concatenate([np.ones(1, dtype=np.bool_), accepted_np])
    else:
        index_np, accepted_np, last = _imh_scan(ratio, log_u, float(start_log_ratio))
    index = torch.from_numpy(index_np).to(device)
    accepted = torch.from_numpy(accepted_np).to(device)
    return IMHResult(
        index=index,
        accepted=accepted,
        acceptance=float(accepted_np.mean()),
        last_log_ratio=last,
    )


def _imh_scan(
    ratio: list[float], log_u: list[float], start: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """The sequential part of the chain: accept ``i`` iff ``log_u[i] < ratio[i] - current``."""
    n = len(ratio)
    accepted = np.zeros(n, dtype=np.bool_)
    current = start
    acc_positions = []
    append = acc_positions.append
    for i, (r, lu) in enumerate(zip(ratio, log_u, strict=True)):
        if lu < r - current:
            current = r
            append(i)
    positions = np.asarray(acc_positions, dtype=np.int64)
    accepted[positions] = True
    # index[i] = last accepted position <= i (or -1): a running maximum of accepted positions.
    marks = np.where(accepted, np.arange(n, dtype=np.int64), np.int64(-1))
    index = np.maximum.accumulate(marks)
    return index, accepted, float(current)


# --------------------------------------------------------------------------------------------
# Local Metropolis for phi^4
# --------------------------------------------------------------------------------------------


def local_metropolis_phi4(
    action: Phi4Action,
    phi: torch.Tensor,
    n_sweeps: int,
    step_size: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """Checkerboard local Metropolis sweeps for ``phi^4`` on ``B`` independent chains.

    One sweep updates all even sites (``sum(x) % 2 == 0``) at once, then all odd sites; sites of
    one parity are never neighbours on a periodic lattice with even extents, so their
    accept/reject decisions are independent. Each site proposes ``phi + step_size * U(-1, 1)``
    and is accepted with probability ``min(1, exp(-dS))``, where the exact local change is
    ``dS = (m2 + 2d)(phi'^2 - phi^2) + lam (phi'^4 - phi^4) - 2 (phi' - phi) n``, ``n`` the sum
    of the ``2d`` neighbours. Each half-sweep draws two full-shape tensors from ``generator``.

    Args:
        action: the :class:`~flows.actions.Phi4Action`.
        phi: ``[B, L, L]`` (or ``[B, L, ..., L]``) start configurations, every extent even; not
            modified.
        n_sweeps: number of full sweeps, ``>= 0``.
        step_size: half-width of the uniform proposal, ``> 0``.
        generator: source of randomness, on ``phi``'s device.

    Returns:
        ``(phi_new, acceptance)``: the configurations after ``n_sweeps`` sweeps and the fraction
        of accepted site updates (``nan`` for ``n_sweeps == 0``).

    Raises:
        ValueError: on a non-``Phi4Action`` action, odd extents, a bad shape, dtype, step size,
            sweep count or generator.
    """
    if not isinstance(action, Phi4Action):
        raise ValueError(
            f"local_metropolis_phi4 needs a flows.actions.Phi4Action, got "
            f"{type(action).__name__}; use hmc() for other actions"
        )
    _check_field(phi, "phi", min_dim=2)
    _check_positive(step_size, "step_size")
    _check_count(n_sweeps, "n_sweeps")
    _check_generator(generator, phi.device)
    for extent in phi.shape[1:]:
        if extent % 2:
            raise ValueError(
                f"checkerboard updates need even lattice extents, got shape "
                f"{tuple(phi.shape[1:])}; use an even L (or hmc() for odd L)"
            )

    lattice_dims = tuple(range(1, phi.dim()))
    n_dim = len(lattice_dims)
    even = _parity_mask(phi.shape[1:], phi.device)
    masks = (even, ~even)
    quad = action.m2 + 2 * n_dim
    lam = action.lam

    phi = phi.detach().clone()
    n_accepted = 0
    n_proposed = 0
    for _ in range(n_sweeps):
        for mask in masks:
            neighbours = torch.zeros_like(phi)
            for d in lattice_dims:
                neighbours += torch.roll(phi, 1, d) + torch.roll(phi, -1, d)
            shift = torch.rand(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
            new = phi + step_size * (2 * shift - 1)
            old2, new2 = phi * phi, new * new
            d_s = quad * (new2 - old2) + lam * (new2 * new2 - old2 * old2)
            d_s = d_s - 2 * (new - phi) * neighbours
            u = torch.rand(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
            accept = (torch.log(u) < -d_s) & mask
            phi = torch.where(accept, new, phi)
            n_accepted += int(accept.sum())
            n_proposed += int(mask.sum()) * phi.shape[0]
    acceptance = n_accepted / n_proposed if n_proposed else math.nan
    return phi, acceptance


def phi4_chain(
    action: Phi4Action,
    L: int,  # noqa: N803 (lattice size is L in physics)
    n_chains: int,
    n_therm: int,
    n_meas: int,
    sweeps_between: int,
    step_size: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    observable: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``n_chains`` checkerboard Metropolis chains from a cold start and collect samples.

    The chains start at ``phi = 0``, run ``n_therm`` thermalization sweeps, then
    ``n_meas`` times: ``sweeps_between`` sweeps followed by a measurement.

    Args:
        action: the :class:`~flows.actions.Phi4Action`.
        L: lattice extent (even), 2-D lattice ``[L, L]``.
        n_chains: number of independent chains ``B``.
        n_therm: thermalization sweeps, ``>= 0``.
        n_meas: number of measurements, ``>= 1``.
        sweeps_between: sweeps before each measurement, ``>= 1``.
        step_size: proposal half-width, ``> 0``.
        generator: source of randomness; its device is the device of the chains.
        dtype: floating dtype of the field.
        observable: optional ``f(phi [B, L, L]) -> Tensor [B, ...]``; if given, its values are
            stored instead of the configurations (keeps memory small for long runs).

    Returns:
        ``[n_meas, n_chains, L, L]`` configurations, or ``[n_meas, n_chains, ...]`` observable
        values.

    Raises:
        ValueError: on bad sizes, counts, step size, action or generator.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError("phi4_chain needs an explicit torch.Generator (for reproducibility)")
    _check_count(n_chains, "n_chains", minimum=1)
    _check_count(n_therm, "n_therm")
    _check_count(n_meas, "n_meas", minimum=1)
    _check_count(sweeps_between, "sweeps_between", minimum=1)
    _check_count(L, "L", minimum=2)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype such as torch.float64, got {dtype}")
    phi = torch.zeros((n_chains, L, L), dtype=dtype, device=generator.device)
    phi, _ = local_metropolis_phi4(action, phi, n_therm, step_size, generator)
    samples = []
    for _ in range(n_meas):
        phi, _ = local_metropolis_phi4(action, phi, sweeps_between, step_size, generator)
        samples.append(phi if observable is None else observable(phi).detach())
    return torch.stack(samples)


# --------------------------------------------------------------------------------------------
# Local Metropolis for U(1)
# --------------------------------------------------------------------------------------------


def local_metropolis_u1(
    action: U1GaugeAction,
    links: torch.Tensor,
    n_sweeps: int,
    step_size: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """Local Metropolis sweeps for 2-D U(1) Wilson gauge theory on ``B`` independent chains.

    Link ``theta_0(x)`` enters the plaquettes at ``x`` (sign ``+``) and ``x - e1`` (sign ``-``);
    ``theta_1(x)`` enters those at ``x`` (``-``) and ``x - e0`` (``+``). The links of one
    direction ``mu`` on the lattice rows of one parity of the *other* coordinate therefore share
    no plaquette, and one sweep updates the four sets ``(mu, parity)`` one after another. Each
    link proposes ``theta + step_size * U(-1, 1)`` and is accepted with probability
    ``min(1, exp(-dS))``, ``dS = -beta sum_P [cos(theta_P') - cos(theta_P)]`` over its two
    plaquettes. Returned angles are wrapped to ``[-pi, pi)``.

    Args:
        action: the :class:`~flows.actions.U1GaugeAction`.
        links: ``[B, 2, L, L]`` link angles, ``L`` even; not modified.
        n_sweeps: number of sweeps, ``>= 0``.
        step_size: proposal half-width, ``> 0`` (``pi`` proposes uniformly on the circle).
        generator: source of randomness, on ``links``' device.

    Returns:
        ``(links_new, acceptance)`` (``nan`` acceptance for ``n_sweeps == 0``).

    Raises:
        ValueError: on a non-``U1GaugeAction`` action, bad shape or odd ``L``, bad step size,
            sweep count or generator.
    """
    if not isinstance(action, U1GaugeAction):
        raise ValueError(
            f"local_metropolis_u1 needs a flows.actions.U1GaugeAction, got "
            f"{type(action).__name__}; use hmc() for other actions"
        )
    _check_field(links, "links", min_dim=4)
    if links.dim() != 4 or links.shape[1] != 2 or links.shape[2] != links.shape[3]:
        raise ValueError(f"links must have shape [B, 2, L, L], got {tuple(links.shape)}")
    if links.shape[2] % 2:
        raise ValueError(
            f"the U(1) update sets need an even L, got L={links.shape[2]}; use an even L "
            f"(or hmc() for odd L)"
        )
    _check_positive(step_size, "step_size")
    _check_count(n_sweeps, "n_sweeps")
    _check_generator(generator, links.device)

    beta = action.beta
    size = links.shape[2]
    coord = torch.arange(size, device=links.device)
    # mu = 0 links: select rows by the parity of x1 (tensor dim 3); mu = 1 by that of x0.
    row_parity = (coord % 2 == 0).expand(size, size)  # [x0, x1] -> x1 even
    col_parity = row_parity.transpose(0, 1)  # [x0, x1] -> x0 even
    sets = (
        (0, row_parity),
        (0, ~row_parity),
        (1, col_parity),
        (1, ~col_parity),
    )

    links = links.detach().clone()
    n_accepted = 0
    n_proposed = 0
    shape = links.shape[:1] + links.shape[2:]
    for _ in range(n_sweeps):
        for mu, mask in sets:
            plaq = plaquette_angles(links)
            if mu == 0:
                first, s_first = plaq, 1.0
                second, s_second = torch.roll(plaq, 1, 2), -1.0  # plaquette at x - e1
            else:
                first, s_first = plaq, -1.0
                second, s_second = torch.roll(plaq, 1, 1), 1.0  # plaquette at x - e0
            shift = torch.rand(shape, generator=generator, dtype=links.dtype, device=links.device)
            delta = step_size * (2 * shift - 1)
            d_cos = (
                torch.cos(first + s_first * delta)
                - torch.cos(first)
                + torch.cos(second + s_second * delta)
                - torch.cos(second)
            )
            d_s = -beta * d_cos
            u = torch.rand(shape, generator=generator, dtype=links.dtype, device=links.device)
            accept = (torch.log(u) < -d_s) & mask
            links[:, mu] = torch.where(accept, wrap(links[:, mu] + delta), links[:, mu])
            n_accepted += int(accept.sum())
            n_proposed += int(mask.sum()) * links.shape[0]
    acceptance = n_accepted / n_proposed if n_proposed else math.nan
    return wrap(links), acceptance


# --------------------------------------------------------------------------------------------
# Hybrid Monte Carlo
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HMCResult:
    """Outcome of :func:`hmc` over ``n_traj`` trajectories of ``B`` chains.

    Attributes:
        samples: ``[n_traj, B, ...]``: the configurations after each trajectory (accept or
            reject), or the values of ``observable`` on them when one was given.
        final: ``[B, ...]`` configurations after the last trajectory (to continue the chains).
        accepted: ``bool [n_traj, B]`` per-chain Metropolis decisions.
        delta_h: ``[n_traj, B]`` energy violations ``H_end - H_start`` of the trajectories
            (``<exp(-delta_h)> = 1`` is a standard check of an HMC run).
        acceptance: fraction of accepted trajectories over all chains.
    """

    samples: torch.Tensor
    final: torch.Tensor
    accepted: torch.Tensor
    delta_h: torch.Tensor
    acceptance: float


def leapfrog(
    action: Action,
    x: torch.Tensor,
    p: torch.Tensor,
    n_steps: int,
    step_size: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate Hamilton's equations for ``H = S(x) + p^2 / 2`` with the leapfrog scheme.

    Time reversible and volume preserving: integrating ``(x, p)`` forward, negating the
    momentum and integrating again returns to ``(x, -p)`` up to rounding.

    Args:
        action: the (differentiable) action; forces are ``-grad action(x).sum()``.
        x: ``[B, ...]`` positions.
        p: momenta, same shape.
        n_steps: number of leapfrog steps, ``>= 1``.
        step_size: step size ``> 0`` (trajectory length ``n_steps * step_size``).

    Returns:
        ``(x, p)`` at the end of the trajectory (detached).
    """
    _check_count(n_steps, "n_steps", minimum=1)
    _check_positive(step_size, "step_size")
    if x.shape != p.shape:
        raise ValueError(f"x and p must have the same shape, got {x.shape} and {p.shape}")
    x = x.detach()
    p = p.detach() - 0.5 * step_size * _grad(action, x)
    for step in range(n_steps):
        x = x + step_size * p
        weight = 1.0 if step < n_steps - 1 else 0.5
        p = p - weight * step_size * _grad(action, x)
    return x, p


def hmc(
    action: Action,
    x0: torch.Tensor,
    n_traj: int,
    n_steps: int,
    step_size: float,
    generator: torch.Generator,
    observable: Callable[[torch.Tensor], torch.Tensor] | None = None,
    step_jitter: float = 0.0,
) -> HMCResult:
    """Hybrid Monte Carlo with leapfrog trajectories on ``B`` independent chains.

    Each trajectory draws Gaussian momenta (``torch.randn`` of ``x0``'s shape), integrates
    ``n_steps`` leapfrog steps with forces from autograd of ``action(x).sum()`` (the action is a
    sum of per-configuration terms, so this gives each chain its own force), and accepts per
    chain with probability ``min(1, exp(-dH))`` (one uniform per chain). Works for any
    differentiable :class:`~flows.actions.Action`; U(1) link angles move as unconstrained
    reals (the action is periodic) and are wrapped to ``[-pi, pi)`` after each trajectory.

    A fixed trajectory length ``tau = n_steps * step_size`` is not ergodic for modes whose
    frequency ``omega`` has ``omega tau`` near a multiple of ``pi`` (for a Gaussian mode the
    trajectory then maps ``x`` to ``+-x`` whatever the momentum). ``step_jitter > 0`` draws the
    step size of each trajectory uniformly from ``step_size * (1 +- step_jitter)`` (one draw
    per trajectory, shared by the chains), which removes these resonances; use it for
    free-field or weakly coupled runs.

    Random draws per trajectory, in order: momenta (``torch.randn`` of the batch shape), one
    uniform for the step size (only if ``step_jitter > 0``), ``B`` uniforms for accept/reject.

    Memory: ``samples`` holds ``n_traj`` copies of the batch; pass ``observable`` (e.g.
    ``flows.observables.plaquette``) to store only its values for long runs.

    Args:
        action: the action.
        x0: ``[B, ...]`` start configurations (floating dtype); not modified.
        n_traj: number of trajectories, ``>= 1``.
        n_steps: leapfrog steps per trajectory, ``>= 1``.
        step_size: leapfrog step size, ``> 0``.
        generator: source of randomness, on ``x0``'s device.
        observable: optional ``f(x [B, ...]) -> Tensor [B, ...]`` stored instead of configs.
        step_jitter: relative half-width of the per-trajectory step size draw, in ``[0, 1)``.

    Returns:
        The :class:`HMCResult`.

    Raises:
        ValueError: on a non-action, bad shapes/dtypes, counts, step size or generator.
    """
    if not isinstance(action, Action):
        raise ValueError(
            f"hmc needs a flows.actions.Action (e.g. Phi4Action or U1GaugeAction), got "
            f"{type(action).__name__}"
        )
    _check_field(x0, "x0", min_dim=2)
    _check_count(n_traj, "n_traj", minimum=1)
    _check_count(n_steps, "n_steps", minimum=1)
    _check_positive(step_size, "step_size")
    _check_generator(generator, x0.device)
    if not isinstance(step_jitter, int | float) or not 0 <= step_jitter < 1:
        raise ValueError(
            f"step_jitter must be a number in [0, 1) (e.g. 0.2 for +-20%), got {step_jitter!r}"
        )

    is_u1 = action.field == "u1"
    batch = x0.shape[0]
    expand = (batch,) + (1,) * (x0.dim() - 1)
    x = wrap(x0.detach()) if is_u1 else x0.detach().clone()
    with torch.no_grad():
        s_x = action(x)
    samples, accepted_all, delta_all = [], [], []
    for _ in range(n_traj):
        p = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        h_start = s_x + 0.5 * (p * p).flatten(1).sum(1)
        eps = step_size
        if step_jitter > 0:
            jitter = torch.rand((1,), generator=generator, dtype=x.dtype, device=x.device)
            eps = step_size * (1 + step_jitter * (2 * float(jitter) - 1))
        x_new, p_new = leapfrog(action, x, p, n_steps, eps)
        with torch.no_grad():
            s_new = action(x_new)
        h_end = s_new + 0.5 * (p_new * p_new).flatten(1).sum(1)
        delta_h = h_end - h_start
        u = torch.rand((batch,), generator=generator, dtype=x.dtype, device=x.device)
        accept = torch.log(u) < -delta_h  # NaN delta_h (diverged trajectory) is rejected
        if is_u1:
            x_new = wrap(x_new)
        x = torch.where(accept.view(expand), x_new, x)
        s_x = torch.where(accept, s_new, s_x)
        accepted_all.append(accept)
        delta_all.append(delta_h)
        samples.append(x if observable is None else observable(x).detach())
    accepted = torch.stack(accepted_all)
    return HMCResult(
        samples=torch.stack(samples),
        final=x,
        accepted=accepted,
        delta_h=torch.stack(delta_all),
        acceptance=float(accepted.to(x.dtype).mean()),
    )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _grad(action: Action, x: torch.Tensor) -> torch.Tensor:
    """``d action(x).sum() / dx``, also inside a ``torch.no_grad`` block."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(action(xg).sum(), xg)
    return grad


def _parity_mask(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Boolean mask of the even sites ``sum(x) % 2 == 0`` of a lattice of ``shape``."""
    total = torch.zeros(shape, dtype=torch.long, device=device)
    for d, extent in enumerate(shape):
        view = [1] * len(shape)
        view[d] = extent
        total = total + torch.arange(extent, device=device).view(view)
    return total % 2 == 0


def _check_field(x: torch.Tensor, name: str, min_dim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(
            f"{name} must have a floating dtype (e.g. torch.float64), got {x.dtype}; "
            f"convert with .to(torch.float64)"
        )
    if x.dim() < min_dim or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty batch [B, ...] with at least {min_dim} dims, got "
            f"shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)"
        )


def _check_positive(value: float, name: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_count(value: int, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_generator(
    generator: torch.Generator | None, device: torch.device, required: bool = True
) -> None:
    if generator is None and not required:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator, got {type(generator).__name__}; "
            f"create one with torch.Generator(device).manual_seed(seed)"
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data on {device}; create it with "
            f"torch.Generator(device={str(device)!r}).manual_seed(seed)"
        )
