"""Exact finite-volume results on periodic lattices, for testing samplers and flows.

Two solvable cases of the actions in :mod:`flows.actions`:

* the free scalar field (:class:`~flows.actions.Phi4Action` with ``lam = 0``, ``m2 > 0``) on an
  ``L^d`` torus: a Gaussian integral diagonalized by Fourier modes;
* two-dimensional U(1) gauge theory with the Wilson action
  (:class:`~flows.actions.U1GaugeAction`) on an ``L x L`` torus: a character (Fourier)
  expansion of the plaquette weight reduces the ``2V``-dimensional link integral to a single
  sum over representations ``n``.

Everything is numpy only. Partition functions use the plain Lebesgue measure of the field
variables (no ``2 pi`` normalization), i.e. exactly ``Z = integral exp(-S)`` of the actions as
implemented, so ``log_z`` can be compared with importance-sampling estimates
(:func:`flows.stats.log_z`) from a normalized flow density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# free scalar field
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreeFieldExact:
    """Exact results of the free scalar field on a periodic ``L^d`` lattice.

    Attributes:
        log_z: ``ln Z``, ``Z = integral d^V phi exp(-S)`` (Lebesgue measure).
        action_mean: ``<S> = V / 2``.
        susceptibility: ``chi_2 = sum_y G_c(y) = 1 / (2 m2)`` (as in
            :func:`flows.observables.susceptibility`).
        volume: number of sites ``V = L^d``.
    """

    log_z: float
    action_mean: float
    susceptibility: float
    volume: int


def _check_lattice(L: int, dim: int) -> None:  # noqa: N803 (lattice size is L in physics)
    for name, value in (("L", L), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _free_eigenvalues(L: int, m2: float, dim: int) -> np.ndarray:  # noqa: N803
    """``lambda_p = sum_mu 4 sin^2(p_mu / 2) + m2`` on the fftn momentum grid, ``[L]*dim``."""
    _check_lattice(L, dim)
    if not (isinstance(m2, (int, float, np.floating, np.integer)) and math.isfinite(m2)):
        raise ValueError(f"m2 must be a finite number, got {m2!r}")
    if m2 <= 0:
        raise ValueError(
            f"the free field needs m2 > 0, got m2={m2}: the zero-momentum mode has eigenvalue "
            "m2, so for m2 <= 0 the Gaussian integral diverges (no exact result; use lam > 0 "
            "and a sampler instead)"
        )
    p = 2 * np.pi * np.fft.fftfreq(L)  # p = 2 pi n / L in numpy's fft order
    s = 4 * np.sin(p / 2) ** 2
    lam = np.full((L,) * dim, float(m2))
    for mu in range(dim):
        shape = [1] * dim
        shape[mu] = L
        lam = lam + s.reshape(shape)
    return lam


def free_field_covariance_eigenvalues(L: int, m2: float, dim: int = 2) -> np.ndarray:  # noqa: N803
    """Per-momentum variances ``1 / (2 lambda_p)`` of the free field, shape ``[L] * dim``.

    The action is ``S = phi^T A phi`` with ``A = -Laplacian + m2``, so the field is Gaussian
    with covariance ``<phi phi^T> = (2A)^{-1}``. ``A`` is diagonal in the unitary Fourier basis
    ``phi~_p = V^{-1/2} sum_x exp(-i p.x) phi_x`` (``numpy.fft.fftn(phi, norm="ortho")``), with
    eigenvalues ``lambda_p = sum_mu 4 sin^2(p_mu/2) + m2``, ``p_mu = 2 pi n_mu / L``; hence
    ``<|phi~_p|^2> = 1 / (2 lambda_p)``. The array is in ``numpy.fft.fftn`` order (zero
    momentum first). Exact sampling, as a linear Gaussian flow does it::

        z = rng.standard_normal((L,) * dim)
        phi = np.fft.ifftn(np.sqrt(var) * np.fft.fftn(z, norm="ortho"), norm="ortho").real

    Args:
        L: lattice extent in every direction.
        m2: mass squared, ``> 0``.
        dim: number of lattice dimensions.

    Returns:
        ``1 / (2 lambda_p)`` on the momentum grid.
    """
    return 0.5 / _free_eigenvalues(L, m2, dim)


def free_field(L: int, m2: float, dim: int = 2) -> FreeFieldExact:  # noqa: N803
    """Exact ``ln Z``, ``<S>`` and ``chi_2`` of the free field (``lam = 0``, ``m2 > 0``).

    Derivation. The action of :class:`flows.actions.Phi4Action` at ``lam = 0`` is
    ``S = sum_x [sum_mu (phi(x+mu) - phi(x))^2 + m2 phi(x)^2] = phi^T A phi`` with
    ``A = -Laplacian + m2`` (symmetric, positive definite for ``m2 > 0``; eigenvalues
    ``lambda_p`` as in :func:`free_field_covariance_eigenvalues`). Then

    * ``Z = integral d^V phi exp(-phi^T A phi) = pi^{V/2} det(A)^{-1/2}``, so
      ``ln Z = (V/2) ln pi - (1/2) sum_p ln lambda_p``;
    * with the covariance ``C = (2A)^{-1}``: ``<S> = tr(A C) = V/2`` (equipartition, also
      ``<S> = -d ln Z(t) / dt`` at ``t = 1`` for ``S -> t S``);
    * ``chi_2 = sum_y G_c(y) = (1/V) sum_{x,y} <phi_x phi_y> = (1/V) 1^T C 1 = 1/(2 m2)``,
      because the constant vector is the zero-momentum eigenvector of ``A`` with eigenvalue
      ``m2`` (``<phi> = 0`` by symmetry).

    Args:
        L: lattice extent in every direction.
        m2: mass squared, ``> 0``.
        dim: number of lattice dimensions.

    Returns:
        A :class:`FreeFieldExact`.
    """
    lam = _free_eigenvalues(L, m2, dim)
    volume = int(L) ** int(dim)
    log_z = 0.5 * volume * math.log(math.pi) - 0.5 * float(np.sum(np.log(lam)))
    return FreeFieldExact(
        log_z=log_z, action_mean=volume / 2, susceptibility=1 / (2 * float(m2)), volume=volume
    )


# ---------------------------------------------------------------------------------------------
# modified Bessel functions by quadrature
# ---------------------------------------------------------------------------------------------


#: Largest ``beta`` :func:`u1_exact` accepts (the Gauss-Legendre rule grows with ``sqrt(beta)``).
MAX_U1_BETA = 500.0


def _check_beta(x: float, name: str) -> float:
    if not isinstance(x, (int, float, np.floating, np.integer)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if x < 0:
        raise ValueError(
            f"{name} must be >= 0, got {x} (negative couplings favour anti-aligned plaquettes "
            "and are not supported)"
        )
    return float(x)


def bessel_i(n: int | np.ndarray, x: float, scaled: bool = False) -> np.ndarray:
    """Modified Bessel functions ``I_n(x)`` of integer order for ``x >= 0``, by quadrature.

    ``I_n(x) = (1/2pi) integral_{-pi}^{pi} exp(x cos phi) cos(n phi) dphi``. The trapezoid rule
    with ``M`` equidistant nodes on this periodic, analytic integrand returns
    ``sum_k I_{n + kM}(x)`` exactly (aliasing only), so ``M`` a good margin above ``2 |n|`` and
    ``sqrt(x)`` makes it exact to rounding. The integrand is evaluated as
    ``exp(x (cos phi - 1))``, i.e. ``exp(-x) I_n(x)``, which never overflows.

    Accuracy: the sum cancels for large ``n``, so the error is absolute, ``~1e-15 exp(x)``, and
    the relative error is ``~1e-15 exp(x) / I_n(x)``: full precision for the leading orders,
    none once ``I_n(x) < 1e-15 exp(x)``. That is all the lattice sums here need (they weight
    ``I_n`` relative to ``I_0``); use a dedicated library for tiny ``I_n`` far out in ``n``.

    Args:
        n: order(s), integer or integer array (``I_{-n} = I_n``).
        x: argument, ``>= 0``.
        scaled: return ``exp(-x) I_n(x)`` instead of ``I_n(x)``.

    Returns:
        Array of the shape of ``n``.
    """
    x = _check_beta(x, "x")
    orders = np.asarray(n)
    if orders.size and not np.issubdtype(orders.dtype, np.integer):
        if not np.all(orders == np.round(orders)):
            raise ValueError(f"bessel_i supports integer orders only, got {n!r}")
        orders = orders.astype(np.int64)
    orders = np.abs(orders)
    n_max = int(orders.max()) if orders.size else 0
    m = 2 * n_max + 64 + int(16 * math.sqrt(x))
    phi = 2 * np.pi * np.arange(m) / m
    weight = np.exp(x * (np.cos(phi) - 1.0))
    values = np.cos(np.multiply.outer(orders, phi)) @ weight / m
    return values if scaled else values * math.exp(x)


# ---------------------------------------------------------------------------------------------
# 2D U(1) gauge theory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class U1Exact:
    """Exact results of 2D U(1) Wilson gauge theory on an ``L x L`` torus.

    Attributes:
        log_z: ``ln Z``, ``Z = integral over [-pi, pi)^{2V} of prod_links dtheta exp(-S)``.
        plaquette: ``<cos theta_P>``.
        q2: ``<Q^2>`` of the geometric charge ``Q = (1/2pi) sum_P wrap(theta_P)``.
        chi_t: topological susceptibility ``<Q^2> / V``.
        volume: number of plaquettes (= sites) ``V = L^2``.
    """

    log_z: float
    plaquette: float
    q2: float
    chi_t: float
    volume: int


#: Terms with ``I_n / I_0`` below this are dropped from the representation sums.
_TERM_CUTOFF = 1e-17


def _phi_moments(beta: float, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled ``exp(-beta) c_n'(0)`` and ``-exp(-beta) c_n''(0)`` for the given orders.

    ``c_n'(0) = (1/2pi) int e^{beta cos phi} (phi/2pi) sin(n phi) dphi`` and
    ``-c_n''(0) = (1/2pi) int e^{beta cos phi} (phi/2pi)^2 cos(n phi) dphi`` over
    ``[-pi, pi]``; the integrands are analytic but not periodic (``phi`` jumps at the
    boundary), so Gauss-Legendre is used instead of the trapezoid rule.
    """
    n_nodes = max(128, 2 * int(orders.max()) + 64 + int(16 * math.sqrt(beta)))
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    phi = np.pi * nodes
    w = np.pi * weights * np.exp(beta * (np.cos(phi) - 1.0)) / (2 * np.pi)
    t = phi / (2 * np.pi)
    arg = np.multiply.outer(orders, phi)
    first = np.sin(arg) @ (w * t)
    second = np.cos(arg) @ (w * t * t)
    return first, second


def u1_exact(L: int, beta: float) -> U1Exact:  # noqa: N803
    """Exact ``ln Z``, plaquette and topological susceptibility of 2D U(1) on an ``L x L`` torus.

    Derivation. With ``V = L^2`` plaquettes and ``2V`` links, expand each plaquette weight in
    characters, ``exp(beta cos t) = sum_n I_n(beta) exp(i n t)``. Every link enters exactly two
    plaquettes, with opposite orientation, so integrating it over ``[-pi, pi)`` gives ``2 pi``
    times a Kronecker delta between the two plaquettes' ``n``; on the (connected) torus all
    plaquettes carry the same ``n``::

        Z = (2 pi)^{2V} sum_n I_n(beta)^V,
        <cos theta_P> = (1/V) d ln Z / d beta = sum_n I_n'(beta) I_n^{V-1} / sum_n I_n^V,

    with ``I_n' = (I_{n-1} + I_{n+1}) / 2``.

    The same works for any ``2 pi``-periodic plaquette weight. Adding ``i theta Q`` with the
    geometric charge ``Q = (1/2pi) sum_P wrap(theta_P)`` gives the weight
    ``exp(beta cos t + i theta wrap(t) / 2pi)`` with Fourier coefficients
    ``c_n(theta) = (1/2pi) int_{-pi}^{pi} dphi exp(beta cos phi + i theta phi/2pi - i n phi)``,
    ``c_n(0) = I_n(beta)``, so ``Z(theta) = (2 pi)^{2V} sum_n c_n(theta)^V`` and
    ``<Q^2> = -Z''(0) / Z(0)``. Differentiating under the integral (the parts odd in ``phi``
    vanish)::

        c_n'(0)  =  (1/2pi) int e^{beta cos phi} (phi/2pi) sin(n phi) dphi     (odd in n),
        c_n''(0) = -(1/2pi) int e^{beta cos phi} (phi/2pi)^2 cos(n phi) dphi   (even in n),
        Z''(0) / (2 pi)^{2V} = sum_n V [(V-1) c_n^{V-2} (c_n')^2 + c_n^{V-1} c_n''].

    As ``V -> infinity`` only ``n = 0`` survives (``I_n < I_0`` for ``n != 0``) and
    ``c_0'(0) = 0``, so the plaquette tends to ``I_1/I_0`` and
    ``chi_t -> (1/I_0) (1/2pi) int e^{beta cos phi} (phi/2pi)^2 dphi``: independent plaquettes,
    each distributed as ``e^{beta cos phi} / (2 pi I_0)``, contributing ``(phi/2pi)^2`` each.

    On a 1 x 1 torus the single plaquette angle vanishes identically, so ``Q = 0`` exactly and
    ``<cos theta_P> = 1`` (the formula gives ``sum_n c_n(theta) = e^beta`` for every theta,
    but its ``n`` sum converges too slowly for ``q2``, which is therefore set to 0).

    Numerics: ``I_n`` by :func:`bessel_i` (trapezoid), the ``phi``-weighted integrals by
    Gauss-Legendre quadrature, all scaled by ``exp(-beta)`` and normalized by ``I_0^V``, so
    ``V = 64 x 64`` and large ``beta`` do not overflow; the ``n`` sum stops where
    ``I_n / I_0 < 1e-17``.

    Args:
        L: lattice extent, ``>= 1``.
        beta: gauge coupling, ``0 <= beta <= MAX_U1_BETA`` (500).

    Returns:
        A :class:`U1Exact`.
    """
    _check_lattice(L, 2)
    beta = _check_beta(beta, "beta")
    if beta > MAX_U1_BETA:
        raise ValueError(
            f"u1_exact supports beta <= {MAX_U1_BETA:g}, got {beta}: the quadrature needs "
            "O(sqrt(beta)) nodes and becomes slow; at such beta use the weak-coupling "
            "(Gaussian) limit instead"
        )
    volume = int(L) ** 2
    n_cap = 40 + int(12 * math.sqrt(beta))  # I_n / I_0 ~ exp(-n^2 / (2 beta)) is < 1e-17 there
    i_scaled = bessel_i(np.arange(n_cap + 3), beta, scaled=True)
    ratio = i_scaled / i_scaled[0]
    small = np.flatnonzero(ratio[: n_cap + 1] < _TERM_CUTOFF)
    # Orders 0 .. n_keep - 1, one beyond the first negligible I_n: the plaquette sum involves
    # I_{n-1}, which for V = 1 (weight I_n^0 = 1) is not small at that order.
    n_keep = int(small[0]) + 1 if small.size else n_cap + 1
    orders = np.arange(n_keep)
    r = ratio[:n_keep]
    mult = np.where(orders == 0, 1.0, 2.0)  # n and -n contribute equally

    z_norm = float(np.sum(mult * r**volume))  # Z / ((2 pi)^{2V} I_0^V)
    log_z = 2 * volume * math.log(2 * math.pi) + volume * (beta + math.log(i_scaled[0]))
    log_z += math.log(z_norm)

    # I_n' / I_0 with I_{-1} = I_1.
    lower = np.concatenate([ratio[1:2], ratio[: n_keep - 1]])
    d_ratio = 0.5 * (lower + ratio[1 : n_keep + 1])
    plaquette = float(np.sum(mult * r ** (volume - 1) * d_ratio) / z_norm)

    if volume == 1:
        q2 = 0.0
    else:
        first, minus_second = _phi_moments(beta, orders)
        e = first / i_scaled[0]
        d = minus_second / i_scaled[0]
        terms = r ** (volume - 1) * d - (volume - 1) * r ** (volume - 2) * e**2
        q2 = float(volume * np.sum(mult * terms) / z_norm)
    return U1Exact(log_z=float(log_z), plaquette=plaquette, q2=q2, chi_t=q2 / volume, volume=volume)
