"""Tests of flows.stats against exactly known answers (all seeded, each well under a second)."""

import math

import numpy as np
import pytest
import torch

from flows import stats

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

DIM, SIGMA_Q = 4, 1.3  # target exp(-x^2/2) in DIM dimensions, proposal N(0, SIGMA_Q^2)
LOG_Z_EXACT = 0.5 * DIM * math.log(2 * math.pi)
# E_q[w^2] / Z^2 per dimension for these two Gaussians (integrate exp(-x^2) / q analytically).
W2_RATIO = SIGMA_Q / math.sqrt(2) / math.sqrt(1 - 1 / (2 * SIGMA_Q**2))
REL_VAR_W = W2_RATIO**DIM - 1  # relative variance of the weights, 0.44


def gaussian_is_samples(n, seed):
    """Samples x ~ N(0, SIGMA_Q^2 I) and log w = -S(x) - log q(x) with S = x^2/2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, SIGMA_Q, size=(n, DIM))
    r2 = (x**2).sum(1)
    log_q = -0.5 * r2 / SIGMA_Q**2 - 0.5 * DIM * math.log(2 * math.pi * SIGMA_Q**2)
    return x, -0.5 * r2 - log_q


def ar1(rho, n, seed, n_chains=None):
    """Stationary AR(1) x_t = rho x_{t-1} + eps_t, eps ~ N(0, 1); var = 1 / (1 - rho^2)."""
    rng = np.random.default_rng(seed)
    shape = () if n_chains is None else (n_chains,)
    eps = rng.standard_normal((n,) + shape)
    x = np.empty_like(eps)
    x[0] = eps[0] / math.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + eps[t]
    return x


# ---------------------------------------------------------------------------------------------
# ess, log_mean_exp
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 1e4, -1e4, 123.456])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_ess_equal_weights_is_one(shift, n):
    assert stats.ess(np.full(n, shift)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.0, 1e4, -1e4])
@pytest.mark.parametrize("n", [2, 10, 500])
def test_ess_one_dominant_weight_is_one_over_n(shift, n):
    log_w = np.full(n, -1e3) + shift
    log_w[n // 2] = shift
    assert stats.ess(log_w) == pytest.approx(1.0 / n, rel=1e-12)


@pytest.mark.parametrize("shift", [1e4, -1e4, 37.5])
def test_ess_invariant_under_shift_and_matches_formula(shift):
    _, log_w = gaussian_is_samples(5000, seed=1)
    w = np.exp(log_w)
    direct = w.sum() ** 2 / (w.size * (w**2).sum())
    assert stats.ess(log_w) == pytest.approx(direct, rel=1e-10)
    assert stats.ess(log_w + shift) == pytest.approx(direct, rel=1e-10)
    # For these Gaussians ESS -> Z^2 / E[w^2] = 1 / (1 + relative variance).
    assert direct == pytest.approx(1 / (1 + REL_VAR_W), rel=0.05)


def test_ess_accepts_torch():
    _, log_w = gaussian_is_samples(1000, seed=2)
    assert stats.ess(torch.tensor(log_w, dtype=torch.float32)) == pytest.approx(
        stats.ess(log_w), rel=1e-5
    )


@pytest.mark.parametrize("shift", [0.0, 1e4, -1e4])
def test_log_mean_exp(shift):
    x = np.array([0.0, 1.0, 2.0, -3.0])
    expected = math.log(np.mean(np.exp(x))) + shift
    assert stats.log_mean_exp(x + shift) == pytest.approx(expected, rel=1e-14, abs=1e-10)


# ---------------------------------------------------------------------------------------------
# log_z, reweight
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [0.0, 1e3, -1e3])
def test_log_z_gaussian_within_errors(seed, shift):
    _, log_w = gaussian_is_samples(20000, seed)
    est, err = stats.log_z(log_w + shift)
    assert abs(est - shift - LOG_Z_EXACT) < 4 * err
    assert 0 < err < 0.05


@pytest.mark.parametrize("n", [2000, 8000, 32000])
def test_log_z_error_scales_as_one_over_sqrt_n(n):
    # Delta method: err(ln Z) = sqrt(var(w) / N) / E[w] = sqrt(REL_VAR_W / N).
    _, log_w = gaussian_is_samples(n, seed=n)
    _, err = stats.log_z(log_w, n_bins=100)
    assert err * math.sqrt(n / REL_VAR_W) == pytest.approx(1.0, abs=0.3)


def test_log_z_huge_log_weights_do_not_overflow():
    _, log_w = gaussian_is_samples(5000, seed=3)
    est, err = stats.log_z(log_w * 1.0 + 2e3)
    assert math.isfinite(est) and math.isfinite(err)
    est0, err0 = stats.log_z(log_w)
    assert est == pytest.approx(est0 + 2e3, abs=1e-9)
    assert err == pytest.approx(err0, rel=1e-8)


def test_log_z_one_bin_dominating_is_finite():
    log_w = np.zeros(100)
    log_w[:5] = 800.0  # the first bin carries all the weight; leaving it out needs care
    est, err = stats.log_z(log_w, n_bins=20)
    assert est == pytest.approx(800 + math.log(5 / 100), abs=1e-12)
    assert math.isfinite(err) and err > 100  # an honest, huge error


@pytest.mark.parametrize(
    ("obs_fn", "exact"),
    [
        (lambda x: x[:, 0] ** 2, 1.0),
        (lambda x: (x**2).sum(1), float(DIM)),
        (lambda x: x[:, 1], 0.0),
        (lambda x: x[:, 0] ** 4, 3.0),
    ],
)
def test_reweight_gaussian_target(obs_fn, exact):
    x, log_w = gaussian_is_samples(40000, seed=5)
    est, err = stats.reweight(obs_fn(x), log_w)
    assert abs(est - exact) < 4 * err
    # The proposal expectation differs: reweighting actually moved the estimate.
    naive = obs_fn(x).mean()
    if exact != 0.0:
        assert abs(naive - exact) > 10 * err


def test_reweight_equal_weights_is_mean_and_standard_error():
    rng = np.random.default_rng(6)
    o = rng.normal(size=300)
    est, err = stats.reweight(o, np.full(300, 7.0), n_bins=300)
    assert est == pytest.approx(o.mean(), rel=1e-12)
    assert err == pytest.approx(o.std(ddof=1) / math.sqrt(300), rel=1e-10)


@pytest.mark.parametrize("shift", [1e4, -1e4])
def test_reweight_shift_invariant_and_matches_direct_ratio(shift):
    x, log_w = gaussian_is_samples(3000, seed=7)
    o = x[:, 0] ** 2
    w = np.exp(log_w)
    est, err = stats.reweight(o, log_w)
    assert est == pytest.approx((w * o).sum() / w.sum(), rel=1e-12)
    est2, err2 = stats.reweight(o, log_w + shift)
    assert est2 == pytest.approx(est, rel=1e-10)
    assert err2 == pytest.approx(err, rel=1e-8)


def brute_force_jackknife(obs, log_w, n_bins):
    """Leave-one-bin-out ln mean(w) and <O>_w by explicit deletion (float64 exp is safe here)."""
    w = np.exp(log_w)
    bins = np.array_split(np.arange(w.size), n_bins)
    keep = [np.setdiff1d(np.arange(w.size), b) for b in bins]
    lz = np.array([math.log(w[k].mean()) for k in keep])
    rw = np.array([(w[k] * obs[k]).sum() / w[k].sum() for k in keep])

    def err(v):
        return math.sqrt((n_bins - 1) / n_bins * ((v - v.mean()) ** 2).sum())

    return err(lz), err(rw)


@pytest.mark.parametrize(("n", "n_bins", "spread"), [(100, 7, 1.0), (103, 10, 3.0), (60, 60, 2.0)])
@pytest.mark.parametrize("dominant", [False, True])
def test_jackknife_errors_match_brute_force(n, n_bins, spread, dominant):
    rng = np.random.default_rng(n + n_bins)
    log_w = spread * rng.standard_normal(n)
    if dominant:
        log_w[0] = 30.0  # the first bin holds essentially all the weight
    obs = rng.normal(size=n) + log_w
    lz_err, rw_err = brute_force_jackknife(obs, log_w, n_bins)
    assert stats.log_z(log_w, n_bins=n_bins)[1] == pytest.approx(lz_err, rel=1e-9)
    assert stats.reweight(obs, log_w, n_bins=n_bins)[1] == pytest.approx(rw_err, rel=1e-9)


def test_reweight_dominant_sample():
    log_w = np.full(50, -1e4)
    log_w[17] = 0.0
    est, _ = stats.reweight(np.arange(50.0), log_w)
    assert est == pytest.approx(17.0)


# ---------------------------------------------------------------------------------------------
# gamma_method
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8, 0.9])
def test_gamma_method_ar1(rho):
    n = 100_000
    x = ar1(rho, n, seed=int(100 * rho))
    res = stats.gamma_method(x)
    tau = (1 + rho) / (2 * (1 - rho))
    assert res.n == n and res.window >= 1
    assert abs(res.tau_int - tau) < max(4 * res.tau_int_error, 0.02)
    assert res.tau_int == pytest.approx(tau, rel=0.15)
    true_error = math.sqrt(2 * tau / (1 - rho**2) / n)
    assert res.error == pytest.approx(true_error, rel=0.12)
    assert abs(res.mean) < 4 * res.error
    # Madras-Sokal: relative error of tau ~ sqrt((4W + 2) / N).
    assert res.tau_int_error == pytest.approx(
        res.tau_int * math.sqrt((4 * res.window + 2 - 4 * res.tau_int) / n), rel=1e-12
    )


def test_gamma_method_iid_gives_half_and_naive_error():
    x = np.random.default_rng(11).normal(3.0, 2.0, size=50_000)
    res = stats.gamma_method(x)
    assert res.tau_int == pytest.approx(0.5, abs=0.03)
    assert res.error == pytest.approx(x.std() / math.sqrt(x.size), rel=0.05)
    assert res.mean == pytest.approx(x.mean())


def test_gamma_method_error_has_correct_coverage():
    # 300 independent short AR(1) chains: the pulls (mean - 0) / error must have unit width.
    # Without the autocorrelation (error = std / sqrt(N)) the width would be 3.
    chains = ar1(0.8, 4000, seed=12, n_chains=300)
    pulls = np.array([(r := stats.gamma_method(chains[:, i])).mean / r.error for i in range(300)])
    assert pulls.std() == pytest.approx(1.0, abs=0.2)
    assert abs(pulls.mean()) < 0.25


@pytest.mark.parametrize("value", [3.7, 0.1, 0.0, -1e6])
def test_gamma_method_constant_series(value):
    res = stats.gamma_method(np.full(100, value))
    assert res == stats.GammaResult(
        mean=pytest.approx(value), error=0.0, tau_int=0.5, tau_int_error=0.0, window=0, n=100
    )


def test_gamma_method_larger_s_tau_gives_larger_window():
    x = ar1(0.9, 20000, seed=13)
    assert stats.gamma_method(x, s_tau=3.0).window > stats.gamma_method(x, s_tau=1.0).window


def test_gamma_method_accepts_torch():
    x = ar1(0.5, 2000, seed=14)
    assert stats.gamma_method(torch.from_numpy(x)) == stats.gamma_method(x)


# ---------------------------------------------------------------------------------------------
# jackknife, bootstrap
# ---------------------------------------------------------------------------------------------


def variance_of_means(m):
    return m[..., 0] - m[..., 1] ** 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jackknife_and_bootstrap_of_variance(seed):
    mu, sigma, n = 2.0, 1.5, 20000
    x = np.random.default_rng(seed).normal(mu, sigma, size=n)
    data = np.stack([x**2, x], axis=1)
    est, err = stats.jackknife(data, variance_of_means, n_bins=50)
    assert est == pytest.approx(x.var(), rel=1e-10)
    assert abs(est - sigma**2) < 4 * err
    # Gaussian data: var(sample variance) = 2 sigma^4 / N.
    assert err == pytest.approx(math.sqrt(2 / n) * sigma**2, rel=0.3)
    b_est, b_err = stats.bootstrap(data, variance_of_means, n_boot=2000, seed=seed, n_bins=50)
    assert b_est == est
    assert b_err == pytest.approx(err, rel=0.1)


def test_jackknife_delete_one_mean_is_standard_error():
    x = np.random.default_rng(20).normal(size=257)
    est, err = stats.jackknife(x, n_bins=x.size)
    assert est == pytest.approx(x.mean(), rel=1e-12)
    assert err == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=1e-10)


@pytest.mark.parametrize("n_bins", [2, 8, 25])
def test_jackknife_binned_mean_is_std_of_bin_means(n_bins):
    x = np.random.default_rng(21).normal(size=(200, 3))
    est, err = stats.jackknife(x, lambda m: m[..., 1], n_bins=n_bins)
    bins = x[:, 1].reshape(n_bins if 200 % n_bins == 0 else -1, -1).mean(1)
    assert est == pytest.approx(x[:, 1].mean())
    assert err == pytest.approx(bins.std(ddof=1) / math.sqrt(n_bins), rel=1e-10)


def test_jackknife_uneven_bins_keep_all_samples():
    x = np.arange(23.0)
    est, err = stats.jackknife(x, n_bins=5)
    assert est == pytest.approx(11.0)
    assert err > 0


def test_bootstrap_is_reproducible_and_seed_dependent():
    x = np.random.default_rng(22).normal(size=(1000, 2))
    a = stats.bootstrap(x, lambda m: m[0] * m[1], seed=5)
    assert a == stats.bootstrap(x, lambda m: m[0] * m[1], seed=5)
    assert a[1] != stats.bootstrap(x, lambda m: m[0] * m[1], seed=6)[1]


def test_jackknife_accepts_torch_and_matches_numpy():
    x = np.random.default_rng(23).normal(size=(500, 2))
    f = variance_of_means
    assert stats.jackknife(torch.from_numpy(x), f) == pytest.approx(stats.jackknife(x, f))


# ---------------------------------------------------------------------------------------------
# bias-corrected ML estimator
# ---------------------------------------------------------------------------------------------


def test_bias_corrected_estimate_small_example():
    est, err = stats.bias_corrected_estimate([1.0, 3.0], [2.0, 4.0, 6.0], [1.0, 4.0, 4.0])
    # mean(pred_u) = 2, mean(O - O_ML) = mean([1, 0, 2]) = 1
    assert est == pytest.approx(3.0)
    assert err == pytest.approx(math.sqrt(2.0 / 2 + 1.0 / 3))


def test_bias_corrected_estimate_is_unbiased_for_a_biased_predictor():
    true_mean, n_rep, n_u, n_l = 1.0, 1000, 1000, 100
    rng = np.random.default_rng(30)
    o_u = rng.normal(true_mean, 1.0, size=(n_rep, n_u))
    o_l = rng.normal(true_mean, 1.0, size=(n_rep, n_l))
    # Deliberately biased, noisy predictor: E[O_ML] = 0.8 * 1 + 0.3 = 1.1.
    pred_u = 0.8 * o_u + 0.3 + 0.2 * rng.standard_normal(o_u.shape)
    pred_l = 0.8 * o_l + 0.3 + 0.2 * rng.standard_normal(o_l.shape)
    res = np.array(
        [stats.bias_corrected_estimate(pred_u[i], o_l[i], pred_l[i]) for i in range(n_rep)]
    )
    est, err = res[:, 0], res[:, 1]
    std_error_of_mean = est.std() / math.sqrt(n_rep)
    assert abs(est.mean() - true_mean) < 4 * std_error_of_mean
    naive = pred_u.mean(axis=1)
    assert abs(naive.mean() - true_mean) > 50 * std_error_of_mean
    pulls = (est - true_mean) / err
    assert pulls.std() == pytest.approx(1.0, abs=0.1)


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------

GOOD = np.arange(40.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: stats.ess([]), "empty"),
        (lambda: stats.ess([0.0, np.nan]), "NaN"),
        (lambda: stats.ess([0.0, np.inf]), "NaN or infinite"),
        (lambda: stats.ess(np.zeros((3, 2))), r"shape \[N\]"),
        (lambda: stats.log_mean_exp([]), "empty"),
        (lambda: stats.log_z([1.0]), "at least 2 samples"),
        (lambda: stats.log_z(GOOD, n_bins=1), "n_bins must be an integer >= 2"),
        (lambda: stats.log_z(GOOD, n_bins=2.5), "n_bins"),
        (lambda: stats.reweight(GOOD, GOOD[:-1]), "obs has 40, log_w has 39"),
        (lambda: stats.reweight(GOOD, np.r_[GOOD[:-1], np.nan]), "log_w contains NaN"),
        (lambda: stats.reweight([], []), "empty"),
        (lambda: stats.gamma_method(np.arange(5.0)), "at least 10 samples"),
        (lambda: stats.gamma_method(np.r_[GOOD, np.nan]), "NaN"),
        (lambda: stats.gamma_method(GOOD, s_tau=0.0), "s_tau"),
        (lambda: stats.jackknife(np.zeros((0, 2))), "empty"),
        (lambda: stats.jackknife(np.zeros((4, 2, 2))), r"\[N\] or \[N, k\]"),
        (lambda: stats.jackknife(GOOD, lambda m: np.array([m, m])), "one number"),
        (lambda: stats.bootstrap(GOOD, n_boot=1), "n_boot"),
        (lambda: stats.bootstrap(["a", "b"]), "numeric"),
        (lambda: stats.bias_corrected_estimate(GOOD, GOOD, GOOD[:3]), "obs_labeled has 40"),
        (lambda: stats.bias_corrected_estimate([], GOOD, GOOD), "pred_unlabeled is empty"),
        (lambda: stats.bias_corrected_estimate([1.0], GOOD, GOOD), "at least 2"),
        (lambda: stats.bias_corrected_estimate(GOOD, GOOD, np.r_[GOOD[:-1], np.nan]), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
