"""Tests of flows.exact: Bessel quadrature, free field and 2D U(1) against independent checks."""

import math

import numpy as np
import pytest
import torch

from flows import exact, stats
from flows.actions import Phi4Action, U1GaugeAction, topological_charge
from flows.observables import plaquette as plaquette_obs
from flows.observables import susceptibility

# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------


def bessel_series(n, x):
    """I_n(x) = sum_k (x/2)^(2k+n) / (k! (k+n)!) (power series, independent of quadrature)."""
    n = abs(n)
    if x == 0:
        return 1.0 if n == 0 else 0.0
    terms = [
        math.exp((2 * k + n) * math.log(x / 2) - math.lgamma(k + 1) - math.lgamma(k + n + 1))
        for k in range(300)
    ]
    return math.fsum(terms)


def chi_t_infinite_volume(beta):
    """(1/I_0) (1/2pi) int e^{beta cos phi} (phi/2pi)^2 dphi, via phi^2's Fourier series.

    On [-pi, pi], phi^2 = pi^2/3 + 4 sum_{n>=1} (-1)^n cos(n phi) / n^2, so the integral is
    [pi^2/3 I_0 + 4 sum_n (-1)^n I_n / n^2] / (4 pi^2), i.e.
    chi_t = 1/12 + (1/pi^2) sum_{n>=1} (-1)^n I_n / (n^2 I_0). No quadrature involved.
    """
    i0 = bessel_series(0, beta)
    tail = math.fsum((-1) ** n * bessel_series(n, beta) / (n**2 * i0) for n in range(1, 400))
    return 1 / 12 + tail / math.pi**2


def free_action_matrix(L, m2, dim):
    """A with S = phi^T A phi for Phi4Action(m2, lam=0), as half its autograd Hessian."""
    action = Phi4Action(m2, 0.0)
    shape = (L,) * dim

    def s(flat):
        return action(flat.reshape(1, *shape))[0]

    hess = torch.autograd.functional.hessian(s, torch.zeros(L**dim, dtype=torch.float64))
    return hess.numpy() / 2


# ---------------------------------------------------------------------------------------------
# Bessel functions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "x", "value"),
    [
        (0, 1.0, 1.2660658777520082),
        (1, 1.0, 0.5651591039924851),
        (2, 2.0, 0.6889484476987382),
        (-1, 1.0, 0.5651591039924851),
        (0, 0.0, 1.0),
        (3, 0.0, 0.0),
    ],
)
def test_bessel_known_values(n, x, value):
    assert exact.bessel_i(n, x) == pytest.approx(value, rel=1e-14, abs=1e-16)


@pytest.mark.parametrize("x", [0.1, 1.0, 5.0, 10.0, 30.0])
def test_bessel_matches_power_series_and_recurrence(x):
    orders = np.arange(0, 25)
    values = exact.bessel_i(orders, x)
    # Documented accuracy: absolute ~1e-15 exp(x) (the trapezoid sum cancels for large n).
    atol = 5e-15 * math.exp(x)
    assert (values > 1e3 * atol).sum() >= 3  # the check below is not all atol
    series = np.array([bessel_series(int(n), x) for n in orders])
    np.testing.assert_allclose(values, series, rtol=1e-13, atol=atol)
    # I_{n-1} - I_{n+1} = (2n / x) I_n
    n = orders[1:-1]
    lhs, rhs = values[:-2] - values[2:], 2 * n / x * values[1:-1]
    assert np.all(np.abs(lhs - rhs) <= 1e-12 * np.abs(rhs) + atol * (2 + 2 * n / x))
    np.testing.assert_allclose(
        exact.bessel_i(orders, x, scaled=True), values * math.exp(-x), rtol=1e-13, atol=1e-300
    )


def test_bessel_scaled_does_not_overflow():
    v = exact.bessel_i([0, 1], 5000.0, scaled=True)
    # Large x: exp(-x) I_n(x) ~ 1 / sqrt(2 pi x) (1 - (4n^2 - 1) / (8x)).
    asym = np.array([1 + 1 / 40000, 1 - 3 / 40000]) / math.sqrt(2 * math.pi * 5000)
    np.testing.assert_allclose(v, asym, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# free field
# ---------------------------------------------------------------------------------------------

FREE_CASES = [(L, 1, m2) for L in (1, 2, 3, 6) for m2 in (0.1, 1.0, 3.7)] + [
    (L, 2, m2) for L in (2, 3, 4) for m2 in (0.05, 0.7, 2.0)
]


@pytest.mark.parametrize(("L", "dim", "m2"), FREE_CASES)
def test_free_field_matches_brute_force_determinant(L, dim, m2):
    a = free_action_matrix(L, m2, dim)
    volume = L**dim
    # The action is exactly this quadratic form (lam = 0 means nothing beyond second order).
    phi = np.random.default_rng(L).normal(size=volume)
    s = Phi4Action(m2, 0.0)(torch.from_numpy(phi).reshape(1, *(L,) * dim)).item()
    assert s == pytest.approx(phi @ a @ phi, rel=1e-12)

    sign, logdet = np.linalg.slogdet(a)
    assert sign == 1
    res = exact.free_field(L, m2, dim=dim)
    assert res.volume == volume
    assert res.log_z == pytest.approx(0.5 * volume * math.log(math.pi) - 0.5 * logdet, abs=1e-10)

    cov = np.linalg.inv(2 * a)
    assert res.action_mean == pytest.approx(np.trace(a @ cov))  # <S> = tr(A C) = V / 2
    assert res.susceptibility == pytest.approx(cov.sum() / volume, rel=1e-10)

    # Covariance from the per-momentum variances via the unitary FFT equals (2A)^{-1}.
    var = exact.free_field_covariance_eigenvalues(L, m2, dim=dim)
    assert var.shape == (L,) * dim
    basis = np.eye(volume).reshape((volume,) + (L,) * dim)
    axes = tuple(range(1, dim + 1))
    cols = np.fft.ifftn(var * np.fft.fftn(basis, axes=axes, norm="ortho"), axes=axes, norm="ortho")
    np.testing.assert_allclose(cols.real.reshape(volume, volume), cov, atol=1e-12)


@pytest.mark.parametrize("m2", [0.3, 2.0])
def test_free_field_log_z_by_direct_quadrature(m2):
    # 1D, L = 2: S = m2 (a^2 + b^2) + 2 (a - b)^2, integrated on a grid (Lebesgue measure).
    x = np.linspace(-12, 12, 1201)
    a, b = np.meshgrid(x, x, indexing="ij")
    s = m2 * (a**2 + b**2) + 2 * (a - b) ** 2
    z = np.exp(-s).sum() * (x[1] - x[0]) ** 2
    assert exact.free_field(2, m2, dim=1).log_z == pytest.approx(math.log(z), rel=1e-10)
    assert exact.free_field(1, m2, dim=1).log_z == pytest.approx(0.5 * math.log(math.pi / m2))


@pytest.mark.parametrize(("L", "m2", "dim"), [(8, 0.5, 2), (16, 0.2, 1)])
def test_free_field_exact_sampling_and_importance_sampling(L, m2, dim):
    """Sample as a linear flow would; check <S>, chi_2 and ln Z with flows.stats."""
    res = exact.free_field(L, m2, dim=dim)
    var = exact.free_field_covariance_eigenvalues(L, m2, dim=dim)
    # With the exact variances log w = -S - log q is constant and equals ln Z.
    volume = L**dim
    assert res.log_z == pytest.approx(
        0.5 * volume * math.log(2 * math.pi) + 0.5 * np.log(var).sum(), rel=1e-12
    )
    # A deliberately wrong "flow": variances 1.2x too large.
    q_var = 1.2 * var
    n = 20000
    rng = np.random.default_rng(L)
    axes = tuple(range(1, dim + 1))
    z = rng.standard_normal((n,) + (L,) * dim)
    phi = np.fft.ifftn(
        np.sqrt(q_var) * np.fft.fftn(z, axes=axes, norm="ortho"), axes=axes, norm="ortho"
    ).real
    phi_t = torch.from_numpy(phi)
    s = Phi4Action(m2, 0.0)(phi_t).numpy()
    phi_p = np.fft.fftn(phi, axes=axes, norm="ortho")
    log_q = (
        -0.5 * (np.abs(phi_p) ** 2 / q_var).sum(axis=axes) - 0.5 * np.log(2 * np.pi * q_var).sum()
    )
    log_w = -s - log_q
    est, err = stats.log_z(log_w)
    assert abs(est - res.log_z) < 4 * err
    s_mean, s_err = stats.reweight(s, log_w)
    assert abs(s_mean - res.action_mean) < 4 * s_err
    assert abs(s.mean() - res.action_mean) > 10 * s_err  # unweighted: 1.2 V / 2
    w = torch.from_numpy(np.exp(log_w - log_w.max()))
    chi = susceptibility(phi_t, w).item()
    assert chi == pytest.approx(res.susceptibility, rel=0.05)


# ---------------------------------------------------------------------------------------------
# 2D U(1)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 10.0, 50.0])
def test_u1_single_plaquette_lattice(beta):
    res = exact.u1_exact(1, beta)
    assert res.volume == 1
    assert res.log_z - 2 * math.log(2 * math.pi) == pytest.approx(beta, abs=1e-12)
    assert res.plaquette == pytest.approx(1.0, abs=1e-12)  # theta_P = 0 identically
    assert res.q2 == 0.0 and res.chi_t == 0.0


@pytest.mark.parametrize("L", [2, 3, 5, 16, 64])
def test_u1_zero_beta(L):
    # Uniform links: any V - 1 plaquettes are independent and uniform, so <cos> = 0 and
    # <Q^2> = V <(phi / 2pi)^2> = V / 12 (pairwise independence, V >= 3).
    res = exact.u1_exact(L, 0.0)
    assert res.log_z == pytest.approx(2 * L * L * math.log(2 * math.pi), rel=1e-14)
    assert res.plaquette == pytest.approx(0.0, abs=1e-14)
    assert res.q2 == pytest.approx(L * L / 12, rel=1e-12)


@pytest.mark.parametrize("L", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0, 10.0])
def test_u1_plaquette_is_derivative_of_log_z(L, beta):
    h = 1e-4
    deriv = (exact.u1_exact(L, beta + h).log_z - exact.u1_exact(L, beta - h).log_z) / (2 * h)
    assert exact.u1_exact(L, beta).plaquette == pytest.approx(deriv / L**2, abs=1e-7)


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0, 10.0])
def test_u1_infinite_volume_limits(beta):
    ratio = bessel_series(1, beta) / bessel_series(0, beta)
    chi_inf = chi_t_infinite_volume(beta)
    sizes = [2, 4, 8, 16, 32, 64]
    results = [exact.u1_exact(L, beta) for L in sizes]
    plaq_dev = [abs(r.plaquette - ratio) for r in results]
    chi_dev = [abs(r.chi_t - chi_inf) for r in results]
    assert plaq_dev[-1] < 1e-12 and chi_dev[-1] < 1e-11
    # Finite-volume effects shrink with L (up to rounding once they are gone).
    assert all(b <= a + 1e-14 for a, b in zip(plaq_dev, plaq_dev[1:], strict=False))
    assert all(b <= a + 1e-14 for a, b in zip(chi_dev, chi_dev[1:], strict=False))
    assert chi_dev[0] > 1e-6 or beta < 0.6  # the smallest lattice is visibly different


@pytest.mark.parametrize(("L", "beta"), [(2, 0.5), (2, 1.0), (3, 1.0)])
def test_u1_against_importance_sampling_with_uniform_links(L, beta):
    """Uniform links as proposal (q = (2pi)^{-2V}) with the real action and charge."""
    n = 400_000
    gen = torch.Generator().manual_seed(L * 100 + int(10 * beta))
    links = (torch.rand((n, 2, L, L), generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    volume = L * L
    log_w = (-U1GaugeAction(beta)(links)).numpy() + 2 * volume * math.log(2 * math.pi)
    q = topological_charge(links).numpy()
    np.testing.assert_allclose(q, np.round(q), atol=1e-9)  # geometric charge is an integer
    res = exact.u1_exact(L, beta)
    for value, obs in [(res.q2, q**2), (res.plaquette, plaquette_obs(links).numpy())]:
        est, err = stats.reweight(obs, log_w)
        assert abs(est - value) < 4 * err, (value, est, err)
    est, err = stats.log_z(log_w)
    assert abs(est - res.log_z) < 4 * err
    # The finite-volume q2 differs clearly from V * chi_t(infinite volume) on 2x2.
    if L == 2:
        _, q2_err = stats.reweight(q**2, log_w)
        assert abs(volume * chi_t_infinite_volume(beta) - res.q2) > 10 * q2_err


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: exact.free_field(4, 0.0), "m2 > 0"),
        (lambda: exact.free_field(4, -1.0), "diverges"),
        (lambda: exact.free_field(4, float("nan")), "finite"),
        (lambda: exact.free_field(0, 1.0), "L must be a positive integer"),
        (lambda: exact.free_field(2.5, 1.0), "L must be a positive integer"),
        (lambda: exact.free_field(4, 1.0, dim=0), "dim must be a positive integer"),
        (lambda: exact.free_field_covariance_eigenvalues(4, -0.5), "m2 > 0"),
        (lambda: exact.u1_exact(0, 1.0), "L must be a positive integer"),
        (lambda: exact.u1_exact(4, -1.0), "beta must be >= 0"),
        (lambda: exact.u1_exact(4, float("inf")), "beta must be a finite number"),
        (lambda: exact.u1_exact(4, 1e4), "beta <= 500"),
        (lambda: exact.bessel_i(0.5, 1.0), "integer orders"),
        (lambda: exact.bessel_i(1, -2.0), "x must be >= 0"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
