"""Statistics for Monte Carlo chains and importance sampling with flow samples.

All functions accept numpy arrays, torch tensors (any device, any float dtype) or sequences;
they convert to float64 numpy internally and return plain Python floats or small frozen
dataclasses. Inputs must be finite: NaN or infinite values raise :class:`ValueError`.

Conventions:

* Importance weights are given as logarithms,
  ``log_w = -S(x) - log q(x)`` for samples ``x ~ q`` (the flow), so that ``w = exp(log_w)`` is
  the unnormalized ratio ``exp(-S) / q``. Everything is computed in log space, so
  ``|log_w|`` of order ``1e4`` neither overflows nor underflows.
* Binned resampling splits the samples, in order, into ``n_bins`` contiguous bins of
  (almost) equal size (as ``numpy.array_split`` does: sizes differ by at most one, no sample
  is dropped). Binning keeps the jackknife / bootstrap errors valid for autocorrelated Markov
  chain data as long as the bins are much longer than the autocorrelation time; for
  independent samples (flow samples) any number of bins works, and ``n_bins = N`` gives the
  classic delete-one jackknife.
* Errors are one standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Default number of jackknife / bootstrap bins.
DEFAULT_N_BINS = 20

#: Shortest series :func:`gamma_method` accepts.
MIN_GAMMA_LENGTH = 10

ArrayLike = Any  # numpy array, torch tensor, or a (nested) sequence of numbers


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------


def _as_float_array(x: ArrayLike, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    """Convert to a finite float64 numpy array with one of the allowed ``ndim`` and ``N >= 1``."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from e
    if arr.ndim not in ndim:
        shapes = " or ".join({1: "[N]", 2: "[N, k]"}.get(d, f"{d}-d") for d in ndim)
        raise ValueError(
            f"{name} must have shape {shapes} (samples along axis 0), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one sample")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))
        raise ValueError(
            f"{name} contains NaN or infinite values (at sample indices {idx[:5].tolist()}"
            f"{' ...' if idx.size > 5 else ''}); remove or fix those samples first"
        )
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have one entry per sample, but {desc} samples")


def _resolve_bins(n: int, n_bins: int) -> int:
    """Validate ``n_bins`` and cap it at the number of samples."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if n < 2:
        raise ValueError(f"need at least 2 samples for a resampling error, got {n}")
    return int(min(n_bins, n))


def _logsumexp(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """``log(sum(exp(x)))`` without overflow; ``-inf`` entries contribute nothing."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def _jackknife_error(loo: np.ndarray) -> float:
    """Jackknife error from the leave-one-bin-out estimates ``loo``."""
    n = loo.shape[0]
    return float(math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))


# ---------------------------------------------------------------------------------------------
# importance sampling
# ---------------------------------------------------------------------------------------------


def log_mean_exp(log_w: ArrayLike) -> float:
    """Return ``log(mean(exp(log_w)))``, computed without overflow.

    Args:
        log_w: values, shape ``[N]``.

    Returns:
        The log of the mean of the exponentials.
    """
    lw = _as_float_array(log_w, "log_w")
    return float(_logsumexp(lw) - math.log(lw.size))


def ess(log_w: ArrayLike) -> float:
    """Normalized effective sample size of importance weights.

    ``ESS = (sum w)^2 / (N sum w^2)``, evaluated as
    ``exp(2 logsumexp(log_w) - logsumexp(2 log_w) - log N)``: it lies in ``[1/N, 1]``, equals 1
    for equal weights and ``1/N`` when one weight dominates, and does not change when a
    constant is added to ``log_w`` (so the unknown ``log Z`` does not matter).

    Args:
        log_w: log importance weights ``-S(x) - log q(x)``, shape ``[N]``.

    Returns:
        The normalized effective sample size.
    """
    lw = _as_float_array(log_w, "log_w")
    value = math.exp(2 * _logsumexp(lw) - _logsumexp(2 * lw) - math.log(lw.size))
    return float(min(value, 1.0))


def _bin_layout(n: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and sizes of ``n_bins`` contiguous bins, as ``numpy.array_split`` makes."""
    base, extra = divmod(n, n_bins)
    sizes = np.full(n_bins, base, dtype=np.int64)
    sizes[:extra] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return starts, sizes


def _bin_logsumexp(lw: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin logsumexp ``[n_bins]``, bin sizes, and ``exp(lw - own bin's logsumexp)``."""
    starts, sizes = _bin_layout(lw.size, n_bins)
    bin_max = np.maximum.reduceat(lw, starts)
    shifted = np.exp(lw - np.repeat(bin_max, sizes))
    lse = np.log(np.add.reduceat(shifted, starts)) + bin_max
    in_bin_weights = np.exp(lw - np.repeat(lse, sizes))  # sums to 1 within each bin
    return lse, sizes.astype(np.float64), in_bin_weights


def _leave_one_out_lse(bin_lse: np.ndarray) -> np.ndarray:
    """``log(sum_{c != b} exp(bin_lse[c]))`` for each bin ``b``, without cancellation.

    ``total + log1p(-p_b)`` with ``p_b = exp(bin_lse[b] - total)`` is accurate while
    ``p_b <= 1/2``; at most one bin can exceed that, and it is summed directly.
    """
    total = _logsumexp(bin_lse)
    p = np.exp(bin_lse - total)
    with np.errstate(divide="ignore"):
        out = total + np.log1p(-np.minimum(p, 0.5))
    for b in np.flatnonzero(p > 0.5):
        out[b] = _logsumexp(np.delete(bin_lse, b))
    return out


def log_z(log_w: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> tuple[float, float]:
    """Importance-sampling estimate of ``ln Z`` and its jackknife error.

    With samples ``x ~ q`` and ``log_w = -S(x) - log q(x)``,
    ``Z = E_q[exp(-S) / q] = E_q[w]``, estimated by ``ln mean(w)``. The error comes from a
    binned jackknife of ``ln mean(w)``, computed entirely in log space. (The estimator is
    biased low by ``O(1/N)``, ``~ var(w) / (2 N mean(w)^2)``, much less than the error for
    any useful sample.)

    Args:
        log_w: log importance weights, shape ``[N]``, ``N >= 2``.
        n_bins: jackknife bins (capped at ``N``).

    Returns:
        ``(ln Z estimate, error)``.
    """
    lw = _as_float_array(log_w, "log_w")
    nb = _resolve_bins(lw.size, n_bins)
    estimate = float(_logsumexp(lw) - math.log(lw.size))
    bin_lse, sizes, _ = _bin_logsumexp(lw, nb)
    loo = _leave_one_out_lse(bin_lse) - np.log(lw.size - sizes)
    return estimate, _jackknife_error(loo)


def reweight(obs: ArrayLike, log_w: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> tuple[float, float]:
    """Self-normalized importance-sampling estimate of ``<O>`` and its jackknife error.

    ``<O> = sum_i w_i O_i / sum_i w_i`` with ``w = exp(log_w)``; the error comes from a binned
    jackknife of this ratio (which accounts for the fluctuations of the normalization). All
    sums are done with log-space shifts, so the result does not depend on constant offsets of
    ``log_w`` and does not overflow.

    Args:
        obs: per-sample observable ``O(x_i)``, shape ``[N]``.
        log_w: log importance weights ``-S(x) - log q(x)`` of the same samples, shape ``[N]``.
        n_bins: jackknife bins (capped at ``N``).

    Returns:
        ``(estimate of <O>, error)``.
    """
    o = _as_float_array(obs, "obs")
    lw = _as_float_array(log_w, "log_w")
    _check_same_length(obs=o, log_w=lw)
    nb = _resolve_bins(o.size, n_bins)
    bin_lse, _, in_bin_weights = _bin_logsumexp(lw, nb)
    starts, _ = _bin_layout(o.size, nb)
    # Weighted mean of O inside each bin (weights normalized within the bin).
    bin_mean = np.add.reduceat(in_bin_weights * o, starts)
    total = _logsumexp(bin_lse)
    p = np.exp(bin_lse - total)  # share of the total weight in each bin
    estimate = float(np.sum(p * bin_mean))
    # Leave bin b out: (sum_c p_c m_c - p_b m_b) / (1 - p_b). Exact subtraction is safe for
    # p_b <= 1/2; at most one bin has more, and it is recomputed directly.
    small = np.minimum(p, 0.5)
    loo = (estimate - small * bin_mean) / (1 - small)
    for b in np.flatnonzero(p > 0.5):
        rest_lse = np.delete(bin_lse, b)
        loo[b] = np.sum(np.exp(rest_lse - _logsumexp(rest_lse)) * np.delete(bin_mean, b))
    return estimate, _jackknife_error(loo)


# ---------------------------------------------------------------------------------------------
# Markov chains: Wolff's Gamma method
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaResult:
    """Result of :func:`gamma_method` for one primary observable.

    Attributes:
        mean: sample mean.
        error: error of the mean including autocorrelations,
            ``sqrt(2 tau_int var / N)``.
        tau_int: integrated autocorrelation time (0.5 for uncorrelated data).
        tau_int_error: its statistical error (Madras-Sokal approximation).
        window: the automatically chosen summation window ``W``.
        n: number of samples.
    """

    mean: float
    error: float
    tau_int: float
    tau_int_error: float
    window: int
    n: int


def _autocovariance(delta: np.ndarray, max_lag: int) -> np.ndarray:
    """``Gamma(t) = 1/(N-t) sum_i delta_i delta_{i+t}`` for ``t = 0..max_lag`` (via FFT)."""
    n = delta.size
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(delta, size)
    acf = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1]
    return acf / (n - np.arange(max_lag + 1))


def gamma_method(series: ArrayLike, s_tau: float = 1.5) -> GammaResult:
    """Error of the mean of a Markov chain with U. Wolff's automatic windowing.

    Implements the Gamma method of U. Wolff, Comput. Phys. Commun. 156 (2004) 143, for one
    primary observable:

    1. ``Gamma(t) = 1/(N-t) sum_i (a_i - abar)(a_{i+t} - abar)`` (FFT, ``O(N log N)``);
    2. ``tau_int(W) = 1/2 + sum_{t=1}^W Gamma(t) / Gamma(0)``;
    3. the window ``W`` is the first ``W >= 1`` with ``g(W) = exp(-W/tau_W) - tau_W/sqrt(W N) < 0``,
       where ``tau_W = s_tau / ln((2 tau_int(W) + 1) / (2 tau_int(W) - 1))`` (and ``tau_W`` is
       tiny when ``tau_int(W) <= 1/2``): this balances the truncation bias ``~exp(-W/tau)``
       against the statistical error ``~sqrt(W/N)``, assuming ``tau ~ s_tau * tau_exp``;
    4. the bias of ``Gamma`` from subtracting the sample mean is corrected,
       ``Gamma(t) += C(W)/N`` with ``C(W) = Gamma(0) + 2 sum_{t=1}^W Gamma(t)``;
    5. ``error = sqrt(C(W) / N) = sqrt(2 tau_int Gamma(0) / N)`` and
       ``tau_int_error = tau_int * sqrt(4 (W + 1/2 - tau_int) / N)``.

    A constant series gives ``tau_int = 0.5``, ``error = 0`` and ``window = 0``.

    Args:
        series: the observable along the chain, in Monte Carlo order, shape ``[N]`` with
            ``N >= MIN_GAMMA_LENGTH`` (10).
        s_tau: Wolff's ``S_tau`` (``tau`` / ``tau_exp`` guess); 1 to 2 works for most chains,
            larger values give larger windows.

    Returns:
        A :class:`GammaResult`.

    Raises:
        ValueError: if the series is not one-dimensional, contains NaN/inf, is shorter than
            ``MIN_GAMMA_LENGTH``, if ``s_tau <= 0``, or if the window does not close before
            ``N/2`` (the chain is too short for its autocorrelation time).
    """
    a = _as_float_array(series, "series")
    n = a.size
    if n < MIN_GAMMA_LENGTH:
        raise ValueError(
            f"gamma_method needs a series of at least {MIN_GAMMA_LENGTH} samples to estimate an "
            f"autocorrelation time, got {n}; run a longer chain"
        )
    if not (math.isfinite(s_tau) and s_tau > 0):
        raise ValueError(f"s_tau must be a positive number (typically 1 to 2), got {s_tau}")
    mean = float(a.mean())
    delta = a - mean
    max_w = n // 2
    gamma = _autocovariance(delta, max_w)
    if np.ptp(a) == 0 or gamma[0] <= 0:
        # Constant series: no fluctuations, no autocorrelation.
        return GammaResult(mean, 0.0, 0.5, 0.0, 0, n)

    tau_w_int = 0.5 + np.cumsum(gamma[1:]) / gamma[0]  # tau_int(W) for W = 1..max_w
    w = np.arange(1, max_w + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_w = np.where(
            tau_w_int > 0.5,
            s_tau / np.log((2 * tau_w_int + 1) / (2 * tau_w_int - 1)),
            1e-300,
        )
        g = np.exp(-w / tau_w) - tau_w / np.sqrt(w * n)
    closed = np.flatnonzero(g < 0)
    if closed.size == 0:
        raise ValueError(
            f"the automatic window did not close before W = N/2 = {max_w}: the series of {n} "
            "samples is too short compared with its autocorrelation time; run a longer chain "
            "(or bin the data first)"
        )
    window = int(w[closed[0]])
    c_w = gamma[0] + 2 * gamma[1 : window + 1].sum()
    gamma_corr = gamma[: window + 1] + c_w / n
    c_w = gamma_corr[0] + 2 * gamma_corr[1:].sum()
    if c_w <= 0:
        raise ValueError(
            "the estimated variance of the mean is not positive (pathological "
            "autocorrelation function); check the series or run a longer chain"
        )
    tau_int = c_w / (2 * gamma_corr[0])
    tau_err = tau_int * math.sqrt(max(4 * (window + 0.5 - tau_int), 0.0) / n)
    return GammaResult(
        mean=mean,
        error=float(math.sqrt(c_w / n)),
        tau_int=float(tau_int),
        tau_int_error=float(tau_err),
        window=window,
        n=n,
    )


# ---------------------------------------------------------------------------------------------
# jackknife and bootstrap for derived quantities
# ---------------------------------------------------------------------------------------------


def _call(func: Callable[[np.ndarray], Any], means: np.ndarray) -> float:
    value = np.asarray(func(means), dtype=np.float64)
    if value.size != 1:
        raise ValueError(
            f"func must return one number per call, got shape {value.shape}; func is called "
            "with the means of the primary observables, shape data.shape[1:], not with bins"
        )
    return float(value.reshape(()))


def _binned_sums(data: ArrayLike, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated data, per-bin sums ``[n_bins, ...]`` and bin sizes ``[n_bins]``."""
    x = _as_float_array(data, "data", ndim=(1, 2))
    nb = _resolve_bins(x.shape[0], n_bins)
    starts, sizes = _bin_layout(x.shape[0], nb)
    return x, np.add.reduceat(x, starts, axis=0), sizes.astype(np.float64)


def jackknife(
    data: ArrayLike,
    func: Callable[[np.ndarray], Any] = np.mean,
    n_bins: int = DEFAULT_N_BINS,
) -> tuple[float, float]:
    """Binned jackknife estimate and error of a function of means.

    Calling convention: ``data`` holds the primary observables per sample, shape ``[N]`` (one
    observable) or ``[N, k]`` (``k`` observables measured on the same samples). ``func`` maps
    the *means* of the primary observables, an array of shape ``data.shape[1:]`` (a 0-d array
    for ``[N]`` data, ``[k]`` otherwise), to one number. It is called once on the full-sample
    means and once per bin on the leave-that-bin-out means; it does not need to be vectorized.
    For example, the variance ``<x^2> - <x>^2`` is::

        jackknife(np.stack([x**2, x], axis=1), lambda m: m[..., 0] - m[..., 1] ** 2)

    Args:
        data: primary observables, ``[N]`` or ``[N, k]``, ``N >= 2``.
        func: derived quantity as a function of the means (default: the mean itself).
        n_bins: number of contiguous bins (capped at ``N``); bins must be longer than the
            autocorrelation time for Markov chain data.

    Returns:
        ``(func(means of all samples), jackknife error)``.
    """
    x, sums, sizes = _binned_sums(data, n_bins)
    n = x.shape[0]
    total = sums.sum(axis=0)
    estimate = _call(func, total / n)
    shape = (-1,) + (1,) * (x.ndim - 1)
    loo_means = (total[None] - sums) / (n - sizes).reshape(shape)
    loo = np.array([_call(func, m) for m in loo_means])
    return estimate, _jackknife_error(loo)


def bootstrap(
    data: ArrayLike,
    func: Callable[[np.ndarray], Any] = np.mean,
    n_boot: int = 1000,
    seed: int | np.random.Generator | None = 0,
    n_bins: int = DEFAULT_N_BINS,
) -> tuple[float, float]:
    """Binned (block) bootstrap estimate and error of a function of means.

    Same calling convention as :func:`jackknife`: ``func`` receives the means of the primary
    observables (shape ``data.shape[1:]``) and returns one number. Each bootstrap replica
    draws ``n_bins`` bins with replacement and averages the samples they contain.

    Args:
        data: primary observables, ``[N]`` or ``[N, k]``, ``N >= 2``.
        func: derived quantity as a function of the means (default: the mean itself).
        n_boot: number of bootstrap replicas, ``>= 2``.
        seed: seed or ``numpy.random.Generator``; the default 0 makes the result reproducible.
        n_bins: number of contiguous bins (capped at ``N``).

    Returns:
        ``(func(means of all samples), standard deviation over the replicas)``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    x, sums, sizes = _binned_sums(data, n_bins)
    estimate = _call(func, sums.sum(axis=0) / x.shape[0])
    rng = np.random.default_rng(seed)
    nb = sizes.size
    picks = rng.integers(0, nb, size=(int(n_boot), nb))
    shape = (-1,) + (1,) * (x.ndim - 1)
    boot_means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1).reshape(shape)
    values = np.array([_call(func, m) for m in boot_means])
    return estimate, float(values.std(ddof=1))


# ---------------------------------------------------------------------------------------------
# bias-corrected machine-learning estimator
# ---------------------------------------------------------------------------------------------


def bias_corrected_estimate(
    pred_unlabeled: ArrayLike, obs_labeled: ArrayLike, pred_labeled: ArrayLike
) -> tuple[float, float]:
    """Bias-corrected estimate of ``<O>`` from a cheap predictor ``O_ML`` (regression).

    .. important::
        The labeled configurations used here for the bias correction must NOT have been used to
        fit (train, tune or select) the predictor. On its training data a predictor is
        correlated with the fluctuations of ``O``, the mean of ``O - O_ML`` there is not an
        unbiased estimate of ``<O - O_ML>``, and the "corrected" result and its error are
        biased. Split the expensively measured configurations into a training set and a
        separate bias-correction set.

    The estimator of Yoon, Bhattacharya and Gupta, Phys. Rev. D 100, 014504 (2019):
    ``O_hat = mean_unlabeled(O_ML) + mean_labeled(O - O_ML)``, with error
    ``sqrt(var(O_ML)_unlabeled / N_u + var(O - O_ML)_labeled / N_l)`` (sample variances with
    ``ddof = 1``). ``O_hat`` is unbiased for any predictor, however poor; a good predictor
    makes ``var(O - O_ML)`` small. The error formula assumes that all samples are independent
    (e.g. flow samples or well-separated Markov chain configurations) and that the unlabeled
    and labeled sets are disjoint; for autocorrelated chains bin the data first.

    Args:
        pred_unlabeled: predictor ``O_ML`` on the unlabeled configurations, ``[N_u]``,
            ``N_u >= 2``.
        obs_labeled: the exact observable ``O`` on the labeled bias-correction configurations,
            ``[N_l]``, ``N_l >= 2``.
        pred_labeled: the predictor on the same labeled configurations, ``[N_l]``.

    Returns:
        ``(O_hat, error)``.
    """
    pu = _as_float_array(pred_unlabeled, "pred_unlabeled")
    ol = _as_float_array(obs_labeled, "obs_labeled")
    pl = _as_float_array(pred_labeled, "pred_labeled")
    _check_same_length(obs_labeled=ol, pred_labeled=pl)
    for name, arr in (("pred_unlabeled", pu), ("obs_labeled", ol)):
        if arr.size < 2:
            raise ValueError(f"{name} needs at least 2 samples for a variance, got {arr.size}")
    diff = ol - pl
    estimate = float(pu.mean() + diff.mean())
    error = math.sqrt(pu.var(ddof=1) / pu.size + diff.var(ddof=1) / diff.size)
    return estimate, float(error)
