"""End-to-end physics checks: trained flows + exact chains against exact results and baselines.

Each check trains a small flow on the CPU, samples it, and compares with an exact finite-volume
value (free field, 2D U(1)) or an independent Markov chain (phi^4 at the tutorial couplings)
within statistical errors (autocorrelation included through the Gamma method).
"""

import math

import pytest
import torch

from flows import exact, mcmc, stats
from flows.actions import Phi4Action, topological_charge
from flows.config import make_config
from flows.evaluate import draw
from flows.models import free_field_flow
from flows.observables import plaquette
from flows.train import Trainer

pytestmark = pytest.mark.slow

SIGMAS = 4.5  # tolerance in standard errors (with 5+ comparisons at p ~ 1e-5 each)


def trained(steps, **config):
    torch.manual_seed(0)
    trainer = Trainer(make_config({"device": "cpu", "steps": steps, "log_every": 10**6, **config}))
    for _ in range(steps):
        trainer.train_step()
    return trainer


def chain_mean(values, index):
    g = stats.gamma_method(values.double()[index].numpy())
    return g.mean, g.error


def test_exact_linear_flow_has_unit_ess_and_acceptance():
    flow = free_field_flow(6, m2=0.5).double()
    x, log_q, log_p = draw(flow, Phi4Action(0.5, 0.0), 4000, seed=1)
    log_w = (log_p - log_q).numpy()
    assert stats.ess(log_w) == pytest.approx(1.0, abs=1e-9)
    assert mcmc.independence_metropolis(log_p, log_q).acceptance == 1.0
    # all weights equal Z: ln Z is exact up to rounding
    lz, _ = stats.log_z(log_w)
    assert lz == pytest.approx(exact.free_field(6, 0.5).log_z, abs=1e-8)


def test_trained_linear_flow_reaches_the_free_field():
    L, m2 = 6, 0.5
    trainer = trained(
        600,
        action="phi4",
        model="linear",
        L=L,
        m2=m2,
        lam=0.0,
        batch_size=256,
        lr=0.05,
        dtype="float64",
        warmup_steps=0,
    )
    x, log_q, log_p = draw(trainer.flow, trainer.action, 20000, seed=2)
    log_w = (log_p - log_q).numpy()
    assert stats.ess(log_w) > 0.99
    assert mcmc.independence_metropolis(log_p, log_q).acceptance > 0.95
    want = exact.free_field(L, m2)
    lz, lz_err = stats.log_z(log_w)
    assert abs(lz - want.log_z) < SIGMAS * lz_err + 1e-6
    s_mean, s_err = stats.reweight((-log_p).numpy(), log_w)
    assert abs(s_mean - want.action_mean) < SIGMAS * s_err
    m = x.flatten(1).mean(1).double()
    chi, chi_err = stats.jackknife(
        torch.stack([m, m**2], 1).numpy(), lambda v: L * L * (v[..., 1] - v[..., 0] ** 2)
    )
    assert abs(chi - want.susceptibility) < SIGMAS * chi_err


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_u1_flow_chain_reproduces_exact_plaquette_and_topology(beta):
    L = 4
    trainer = trained(
        120, action="u1", L=L, beta=beta, n_layers=8, hidden=[8], batch_size=64, lr=5e-3
    )
    x, log_q, log_p = draw(trainer.flow, trainer.action, 30000, seed=3)
    chain = mcmc.independence_metropolis(log_p.double(), log_q.double())
    assert chain.acceptance > 0.03  # the flow learned something; exactness comes from the chain
    want = exact.u1_exact(L, beta)
    p_mean, p_err = chain_mean(plaquette(x), chain.index)
    assert abs(p_mean - want.plaquette) < SIGMAS * p_err, (p_mean, p_err, want.plaquette)
    q = topological_charge(x)
    q2_mean, q2_err = chain_mean(q**2, chain.index)
    assert abs(q2_mean - want.q2) < SIGMAS * q2_err + 1e-9, (q2_mean, q2_err, want.q2)


def test_phi4_at_tutorial_couplings_agrees_with_local_metropolis():
    L, m2, lam = 8, -4.0, 8.0
    trainer = trained(300, action="phi4", L=L, m2=m2, lam=lam, n_layers=8, hidden=[8], lr=5e-3)
    x, log_q, log_p = draw(trainer.flow, trainer.action, 30000, seed=4)
    chain = mcmc.independence_metropolis(log_p.double(), log_q.double())
    assert chain.acceptance > 0.05
    abs_m = x.flatten(1).sum(1).abs()
    flow_mean, flow_err = chain_mean(abs_m / L**2, chain.index)

    gen = torch.Generator().manual_seed(5)
    samples = mcmc.phi4_chain(
        Phi4Action(m2, lam),
        L,
        n_chains=64,
        n_therm=300,
        n_meas=200,
        sweeps_between=2,
        step_size=1.0,
        generator=gen,
        observable=lambda phi: phi.flatten(1).mean(1).abs(),
    )
    per_chain = samples.mean(0)  # independent chains: plain standard error
    mc_mean = per_chain.mean().item()
    mc_err = per_chain.std().item() / math.sqrt(per_chain.numel())
    assert abs(flow_mean - mc_mean) < SIGMAS * math.hypot(flow_err, mc_err), (
        flow_mean,
        flow_err,
        mc_mean,
        mc_err,
    )


def test_forward_kl_from_exact_samples_learns_the_free_field(tmp_path):
    exact_flow = free_field_flow(4, m2=0.8).double()
    data, _ = exact_flow.sample(4096, generator=torch.Generator().manual_seed(9))
    torch.save(data, tmp_path / "samples.pt")
    trainer = trained(
        300,
        action="phi4",
        model="linear",
        L=4,
        m2=0.8,
        lam=0.0,
        batch_size=256,
        lr=0.05,
        dtype="float64",
        warmup_steps=0,
        forward_kl_data=str(tmp_path / "samples.pt"),
    )
    assert trainer.data is not None and not trainer.use_graph
    _, log_q, log_p = draw(trainer.flow, trainer.action, 8000, seed=10)
    assert stats.ess((log_p - log_q).numpy()) > 0.95
