"""Tests of flows.mcmc against exact results.

Statistical checks run ``B`` independent chains; the error of a mean is the standard error of
the ``B`` per-chain time averages (independent by construction, so autocorrelations are
accounted for), and non-linear quantities (chi_2) get jackknife errors over chains. Every
comparison with an exact value allows ``N_SIGMA = 5`` standard errors: with fixed seeds the
tests are deterministic, and a correct sampler would fail one with probability ~6e-7.
"""

from __future__ import annotations

import math

import pytest
import torch

from flows.actions import Phi4Action, U1GaugeAction
from flows.mcmc import (
    HMCResult,
    hmc,
    independence_metropolis,
    leapfrog,
    local_metropolis_phi4,
    local_metropolis_u1,
    phi4_chain,
)
from flows.observables import plaquette

N_SIGMA = 5.0
F64 = torch.float64
# <cos theta_P> = I_1(1) / I_0(1) for 2-D U(1) at beta = 1 (finite-volume corrections are
# O((I_1/I_0)^V) < 3e-6 at V = 16, far below the statistical errors here).
PLAQUETTE_BETA1 = 0.4463899658965879


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chain_mean(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of ``values [T, B]`` from the ``B`` per-chain averages."""
    per_chain = values.mean(0)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(per_chain.numel()))


def susceptibility_jackknife(phi: torch.Tensor) -> tuple[float, float]:
    """``chi_2 = V (<m^2> - <m>^2)`` from ``phi [T, B, L, L]``, jackknife over the B chains."""
    volume = phi[0, 0].numel()
    m = phi.flatten(2).mean(2)  # [T, B]
    m1, m2 = m.mean(0), (m**2).mean(0)  # per-chain averages
    n = m1.numel()

    def chi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return volume * (b - a**2)

    full = chi(m1.mean(), m2.mean())
    jack = chi((m1.sum() - m1) / (n - 1), (m2.sum() - m2) / (n - 1))
    err = math.sqrt((n - 1) / n * float(((jack - jack.mean()) ** 2).sum()))
    return float(full), err


def assert_close_stat(value: float, err: float, exact: float, what: str) -> None:
    assert err > 0, what
    assert abs(value - exact) < N_SIGMA * err, f"{what}: {value} +- {err}, exact {exact}"


# ------------------------------------------------------------------------------------------
# independence Metropolis
# ------------------------------------------------------------------------------------------


def reference_imh(log_p: list[float], log_q: list[float], uniforms: list[float]) -> list[int]:
    """Textbook IMH loop: accept i with probability min(1, w_i / w_cur), w = p / q."""
    index = [0]
    cur = 0
    for i in range(1, len(log_p)):
        ratio = math.exp((log_p[i] - log_q[i]) - (log_p[cur] - log_q[cur]))
        if uniforms[i] < min(1.0, ratio):
            cur = i
        index.append(cur)
    return index


def gaussian_proposals(n: int, sigma: float, seed: int):
    """Proposals from N(0, sigma^2) for the target N(0, 1) (both unnormalized is fine)."""
    x = sigma * torch.randn(n, generator=gen(seed), dtype=F64)
    log_p = -0.5 * x**2
    log_q = -0.5 * (x / sigma) ** 2 - math.log(sigma)
    return x, log_p, log_q


def test_imh_perfect_proposal_accepts_everything():
    log_p = torch.randn(1000, generator=gen(1), dtype=F64)
    result = independence_metropolis(log_p, log_p.clone(), gen(2))
    assert result.acceptance == 1.0
    assert result.accepted.all()
    assert torch.equal(result.index, torch.arange(1000))
    assert result.index.dtype == torch.long


def test_imh_matches_reference_loop():
    _, log_p, log_q = gaussian_proposals(3000, 1.5, seed=3)
    g = gen(4)
    uniforms = torch.rand(3000, generator=gen(4), dtype=F64)  # what the chain will draw
    result = independence_metropolis(log_p, log_q, g)
    expected = reference_imh(log_p.tolist(), log_q.tolist(), uniforms.tolist())
    assert result.index.tolist() == expected
    assert result.acceptance == pytest.approx(
        (1 + sum(expected[i] == i for i in range(1, 3000))) / 3000
    )
    assert result.last_log_ratio == float(log_p[expected[-1]] - log_q[expected[-1]])


def test_imh_gaussian_target_second_moment():
    n = 200_000
    x, log_p, log_q = gaussian_proposals(n, 1.5, seed=5)
    result = independence_metropolis(log_p, log_q, gen(6))
    chain_x2 = x[result.index] ** 2
    # Binned error: 200 bins of 1000 steps, far longer than the IMH autocorrelation (~2).
    bins = chain_x2.view(200, 1000).mean(1)
    err = float(bins.std() / math.sqrt(200))
    assert_close_stat(float(chain_x2.mean()), err, 1.0, "<x^2> of the IMH chain")
    assert 0.5 < result.acceptance < 0.95


def test_imh_continuation_equals_one_run():
    _, log_p, log_q = gaussian_proposals(5000, 2.0, seed=7)
    full = independence_metropolis(log_p, log_q, gen(8))
    g = gen(8)
    first = independence_metropolis(log_p[:2000], log_q[:2000], g)
    second = independence_metropolis(
        log_p[2000:], log_q[2000:], g, start_log_ratio=first.last_log_ratio
    )
    # -1 in the second half means "still on the previous batch's last state".
    joined = torch.cat(
        [first.index, torch.where(second.index < 0, first.index[-1], second.index + 2000)]
    )
    assert torch.equal(joined, full.index)
    assert torch.equal(torch.cat([first.accepted, second.accepted]), full.accepted)
    assert second.last_log_ratio == full.last_log_ratio


def test_imh_start_state_can_block_acceptance():
    log_p = torch.zeros(10, dtype=F64)
    result = independence_metropolis(log_p, log_p, gen(0), start_log_ratio=1e9)
    assert torch.equal(result.index, torch.full((10,), -1))
    assert result.acceptance == 0.0


def test_imh_first_proposal_starts_chain_even_with_zero_weight():
    log_p = torch.tensor([-math.inf, 0.0, 0.0], dtype=F64)
    result = independence_metropolis(log_p, torch.zeros(3, dtype=F64), gen(0))
    assert result.index.tolist() == [0, 1, 2]


def test_imh_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        independence_metropolis(torch.zeros(3), torch.zeros(4), gen(0))
    with pytest.raises(ValueError, match="NaN"):
        independence_metropolis(torch.tensor([0.0, math.nan]), torch.zeros(2), gen(0))
    with pytest.raises(ValueError, match="torch.Generator"):
        independence_metropolis(torch.zeros(2), torch.zeros(2), generator=42)


# ------------------------------------------------------------------------------------------
# free field: local Metropolis and HMC
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def free_metropolis() -> tuple[Phi4Action, torch.Tensor]:
    action = Phi4Action(m2=0.5, lam=0.0)
    phi = phi4_chain(action, 6, 64, 100, 200, 2, 1.5, gen(10))
    return action, phi


def test_local_metropolis_free_field_equipartition(free_metropolis):
    action, phi = free_metropolis
    assert phi.shape == (200, 64, 6, 6) and phi.dtype == F64
    s = action(phi.flatten(0, 1)).view(200, 64)
    mean, err = chain_mean(s)
    assert_close_stat(mean, err, 36 / 2, "<S> (Metropolis)")


def test_local_metropolis_free_field_susceptibility(free_metropolis):
    _, phi = free_metropolis
    chi, err = susceptibility_jackknife(phi)
    assert_close_stat(chi, err, 1 / (2 * 0.5), "chi_2 (Metropolis)")


def test_hmc_free_field():
    action = Phi4Action(m2=1.0, lam=0.0)
    x0 = torch.zeros(64, 4, 4, dtype=F64)
    result = hmc(action, x0, 400, 5, 0.2, gen(11), step_jitter=0.3)
    assert isinstance(result, HMCResult)
    assert result.samples.shape == (400, 64, 4, 4)
    assert result.accepted.shape == result.delta_h.shape == (400, 64)
    assert 0.6 < result.acceptance < 1.0
    phi = result.samples[50:]
    s = action(phi.flatten(0, 1)).view(-1, 64)
    mean, err = chain_mean(s)
    assert_close_stat(mean, err, 16 / 2, "<S> (HMC)")
    chi, err = susceptibility_jackknife(phi)
    assert_close_stat(chi, err, 1 / (2 * 1.0), "chi_2 (HMC)")
    # <exp(-dH)> = 1 holds in equilibrium for a reversible, area-preserving integrator.
    mean, err = chain_mean(torch.exp(-result.delta_h[50:]))
    assert_close_stat(mean, err, 1.0, "<exp(-dH)>")


def test_metropolis_and_hmc_agree_interacting():
    """The quartic term of the local update against HMC (autograd of the full action)."""
    action = Phi4Action(m2=0.5, lam=0.5)
    phi_m = phi4_chain(action, 4, 64, 50, 150, 2, 1.5, gen(12), observable=action)
    result = hmc(action, torch.zeros(64, 4, 4, dtype=F64), 200, 5, 0.2, gen(13), action, 0.3)
    a_mean, a_err = chain_mean(phi_m)
    b_mean, b_err = chain_mean(result.samples[50:])
    assert abs(a_mean - b_mean) < N_SIGMA * math.hypot(a_err, b_err), (a_mean, b_mean)


# ------------------------------------------------------------------------------------------
# HMC integrator
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "shape"),
    [(Phi4Action(m2=-1.0, lam=1.0), (8, 6, 6)), (U1GaugeAction(beta=2.0), (8, 2, 6, 6))],
)
def test_leapfrog_is_reversible(action, shape):
    x0 = torch.randn(shape, generator=gen(20), dtype=F64)
    p0 = torch.randn(shape, generator=gen(21), dtype=F64)
    x1, p1 = leapfrog(action, x0, p0, 20, 0.05)
    x2, p2 = leapfrog(action, x1, -p1, 20, 0.05)
    assert (x2 - x0).abs().max() < 1e-10
    assert (p2 + p0).abs().max() < 1e-10
    assert (x1 - x0).abs().max() > 0.1  # it did move


@pytest.mark.parametrize(
    ("action", "shape"),
    [(Phi4Action(m2=-1.0, lam=1.0), (16, 6, 6)), (U1GaugeAction(beta=2.0), (16, 2, 6, 6))],
)
def test_leapfrog_energy_error_scales_as_step_squared(action, shape):
    x0 = 0.5 * torch.randn(shape, generator=gen(22), dtype=F64)
    p0 = torch.randn(shape, generator=gen(23), dtype=F64)

    def energy(x, p):
        return action(x) + 0.5 * (p**2).flatten(1).sum(1)

    errors = []
    for eps, n in ((0.1, 10), (0.05, 20), (0.025, 40)):  # fixed trajectory length 1
        x, p = leapfrog(action, x0, p0, n, eps)
        errors.append(float((energy(x, p) - energy(x0, p0)).abs().mean()))
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 3.0 < coarse / fine < 5.0, errors  # ~4 for a second-order integrator


def test_hmc_u1_plaquette():
    action = U1GaugeAction(beta=1.0)
    x0 = torch.zeros(64, 2, 4, 4, dtype=F64)
    result = hmc(action, x0, 300, 5, 0.2, gen(30), observable=plaquette)
    assert result.samples.shape == (300, 64)
    assert result.final.abs().max() <= math.pi  # angles are wrapped
    mean, err = chain_mean(result.samples[50:])
    assert_close_stat(mean, err, PLAQUETTE_BETA1, "<cos theta_P> (HMC)")


def test_hmc_is_reproducible_and_keeps_dtype():
    action = Phi4Action(m2=0.5, lam=0.1)
    x0 = torch.zeros(4, 4, 4, dtype=torch.float32)
    a = hmc(action, x0, 5, 3, 0.2, gen(31))
    b = hmc(action, x0, 5, 3, 0.2, gen(31))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.accepted, b.accepted)
    assert a.samples.dtype == a.delta_h.dtype == torch.float32
    assert torch.equal(x0, torch.zeros_like(x0))  # input untouched


# ------------------------------------------------------------------------------------------
# local Metropolis for U(1)
# ------------------------------------------------------------------------------------------


def test_local_metropolis_u1_plaquette():
    action = U1GaugeAction(beta=1.0)
    g = gen(40)
    links, _ = local_metropolis_u1(action, torch.zeros(64, 2, 4, 4, dtype=F64), 30, 2.0, g)
    values = []
    for _ in range(200):
        links, acceptance = local_metropolis_u1(action, links, 1, 2.0, g)
        values.append(plaquette(links))
    assert links.abs().max() <= math.pi  # angles are wrapped
    mean, err = chain_mean(torch.stack(values))
    assert_close_stat(mean, err, PLAQUETTE_BETA1, "<cos theta_P> (local U(1))")
    assert 0.3 < acceptance < 0.9


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    phi4 = Phi4Action(m2=0.5, lam=0.0)
    u1 = U1GaugeAction(beta=1.0)
    with pytest.raises(ValueError, match="even"):
        local_metropolis_phi4(phi4, torch.zeros(2, 5, 5, dtype=F64), 1, 0.5, gen(0))
    with pytest.raises(ValueError, match="Phi4Action"):
        local_metropolis_phi4(u1, torch.zeros(2, 4, 4, dtype=F64), 1, 0.5, gen(0))
    with pytest.raises(ValueError, match="step_size"):
        local_metropolis_phi4(phi4, torch.zeros(2, 4, 4, dtype=F64), 1, 0.0, gen(0))
    with pytest.raises(ValueError, match="step_size"):
        hmc(phi4, torch.zeros(2, 4, 4, dtype=F64), 1, 1, -0.1, gen(0))
    with pytest.raises(ValueError, match="Action"):
        hmc(lambda x: x.sum(), torch.zeros(2, 4, 4, dtype=F64), 1, 1, 0.1, gen(0))
    with pytest.raises(ValueError, match="floating"):
        hmc(phi4, torch.zeros(2, 4, 4, dtype=torch.long), 1, 1, 0.1, gen(0))
    with pytest.raises(ValueError, match="torch.Generator"):
        hmc(phi4, torch.zeros(2, 4, 4, dtype=F64), 1, 1, 0.1, None)
    with pytest.raises(ValueError, match="step_jitter"):
        hmc(phi4, torch.zeros(2, 4, 4, dtype=F64), 1, 1, 0.1, gen(0), step_jitter=1.0)
    with pytest.raises(ValueError, match="U1GaugeAction"):
        local_metropolis_u1(phi4, torch.zeros(2, 2, 4, 4, dtype=F64), 1, 0.5, gen(0))
    with pytest.raises(ValueError, match="even L"):
        local_metropolis_u1(u1, torch.zeros(2, 2, 5, 5, dtype=F64), 1, 0.5, gen(0))
    with pytest.raises(ValueError, match=r"\[B, 2, L, L\]"):
        local_metropolis_u1(u1, torch.zeros(2, 3, 4, 4, dtype=F64), 1, 0.5, gen(0))
    with pytest.raises(ValueError, match="n_meas"):
        phi4_chain(phi4, 4, 2, 0, 0, 1, 0.5, gen(0))
