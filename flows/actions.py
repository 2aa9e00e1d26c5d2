"""Euclidean lattice actions on periodic lattices, batch first.

Field layouts (``B`` is the batch, ``L`` the extent of every lattice direction):

* real scalar field: ``[B, L, L]`` (any number of lattice dimensions works: ``[B, L, ..., L]``);
* U(1) gauge links as angles: ``[B, 2, L, L]``, where ``links[:, mu, x0, x1]`` is the angle of
  the link leaving site ``x`` in direction ``mu`` (``mu`` = 0 moves along tensor dim 2,
  ``mu`` = 1 along tensor dim 3).

An :class:`Action` maps a batch of configurations to one action value per configuration, in the
input's dtype and on its device. Actions add (``S1 + S2``), which is how a fermion determinant
term (the Schwinger model: U(1) gauge plus two flavours of Wilson fermions) joins the gauge action
later without changing samplers or training.
"""

from __future__ import annotations

import abc
import math

import torch


class Action(abc.ABC):
    """A Euclidean action ``S[cfg]``; the target density is ``exp(-S) / Z``."""

    #: what kind of field the action acts on: ``"scalar"`` or ``"u1"``.
    field: str = ""

    @abc.abstractmethod
    def __call__(self, cfg: torch.Tensor) -> torch.Tensor:
        """Return the action of each configuration in the batch, shape ``[B]``."""

    @abc.abstractmethod
    def field_shape(self, L: int) -> tuple[int, ...]:  # noqa: N803 (lattice size is L in physics)
        """Per-configuration tensor shape for a lattice of extent ``L``."""

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """Parameters as JSON-ready values (for checkpoints and tracking)."""

    def __add__(self, other: Action) -> Action:
        return SumAction(self, other)


class SumAction(Action):
    """Sum of actions on the same field, e.g. gauge action + fermion determinant."""

    def __init__(self, *terms: Action):
        fields = {t.field for t in terms}
        if len(fields) != 1:
            raise ValueError(f"cannot add actions on different fields {sorted(fields)}")
        self.terms = terms
        self.field = fields.pop()

    def __call__(self, cfg: torch.Tensor) -> torch.Tensor:
        """Action per configuration, shape ``[B]``."""
        return sum(t(cfg) for t in self.terms)

    def field_shape(self, L: int) -> tuple[int, ...]:  # noqa: N803
        """Per-configuration tensor shape."""
        return self.terms[0].field_shape(L)

    def to_dict(self) -> dict:
        """Per-configuration tensor shape."""
        """Parameters as JSON-ready values."""
        return {"sum": [t.to_dict() for t in self.terms]}


class Phi4Action(Action):
    """Real scalar phi^4 theory in the convention of arXiv:2101.08176.

    ``S = sum_x [ sum_mu (phi(x+mu) - phi(x))^2 + m2 phi(x)^2 + lam phi(x)^4 ]``

    Args:
        m2: bare mass squared (may be negative: the tutorial point is ``m2 = -4, lam = 8``).
        lam: quartic coupling, ``>= 0``.
    """

    field = "scalar"

    def __init__(self, m2: float, lam: float):
        if lam < 0:
            raise ValueError(f"lam must be >= 0 for a bounded action, got {lam}")
        self.m2 = float(m2)
        self.lam = float(lam)

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        """Action per configuration, shape ``[B]``."""
        dims = tuple(range(1, phi.dim()))
        density = self.m2 * phi**2 + self.lam * phi**4
        for d in dims:
            density = density + (torch.roll(phi, -1, d) - phi) ** 2
        return density.sum(dim=dims)

    def field_shape(self, L: int) -> tuple[int, ...]:  # noqa: N803
        """Per-configuration tensor shape."""
        return (L, L)

    def to_dict(self) -> dict:
        """Per-configuration tensor shape."""
        """Parameters as JSON-ready values."""
        return {"action": "phi4", "m2": self.m2, "lam": self.lam}


def phi4_from_kappa(kappa: float, lam_tilde: float, dim: int = 2) -> tuple[float, float]:
    """Convert the hopping-parameter convention to this module's ``(m2, lam)``.

    The kappa/lambda convention is
    ``S = sum_x [ -2 kappa sum_mu phi~(x) phi~(x+mu) + phi~^2 + lam~ (phi~^2 - 1)^2 ]``.
    With ``phi = sqrt(kappa) phi~`` it equals the tutorial action up to the constant
    ``lam~ V``, with ``m2 = (1 - 2 lam~) / kappa - 2 dim`` and ``lam = lam~ / kappa^2``.
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    return (1 - 2 * lam_tilde) / kappa - 2 * dim, lam_tilde / kappa**2


def kappa_from_phi4(m2: float, lam: float, dim: int = 2) -> tuple[float, float]:
    """Inverse of :func:`phi4_from_kappa`: ``(m2, lam)`` to ``(kappa, lam~)``.

    ``kappa`` solves ``lam kappa^2 * 2 + (m2 + 2 dim) kappa - 1 = 0`` (the positive root).
    """
    a, b = 2 * lam, m2 + 2 * dim
    if a == 0:
        if b <= 0:
            raise ValueError(f"no positive kappa for m2={m2}, lam=0 (need m2 > -{2 * dim})")
        kappa = 1 / b
    else:
        kappa = (-b + math.sqrt(b * b + 4 * a)) / (2 * a)
    return kappa, lam * kappa**2


class U1GaugeAction(Action):
    """Wilson plaquette action of 2D U(1) gauge theory: ``S = -beta sum_P cos(theta_P)``."""

    field = "u1"

    def __init__(self, beta: float):
        self.beta = float(beta)

    def __call__(self, links: torch.Tensor) -> torch.Tensor:
        """Action per configuration, shape ``[B]``."""
        return -self.beta * torch.cos(plaquette_angles(links)).sum(dim=(1, 2))

    def field_shape(self, L: int) -> tuple[int, ...]:  # noqa: N803
        """Per-configuration tensor shape."""
        return (2, L, L)

    def to_dict(self) -> dict:
        """Per-configuration tensor shape."""
        """Parameters as JSON-ready values."""
        return {"action": "u1", "beta": self.beta}


def plaquette_angles(links: torch.Tensor) -> torch.Tensor:
    """Plaquette angles ``theta_0(x) + theta_1(x+0) - theta_0(x+1) - theta_1(x)``, ``[B, L, L]``.

    Not wrapped: the value lies in ``(-4 pi, 4 pi)`` for links in ``(-pi, pi]``.
    """
    t0, t1 = links[:, 0], links[:, 1]
    return t0 + torch.roll(t1, -1, 1) - torch.roll(t0, -1, 2) - t1


def wrap(theta: torch.Tensor) -> torch.Tensor:
    """Map angles to ``[-pi, pi)``."""
    return torch.remainder(theta + math.pi, 2 * math.pi) - math.pi


def topological_charge(links: torch.Tensor) -> torch.Tensor:
    """Geometric charge ``Q = (1/2pi) sum_P arg(exp(i theta_P))``, shape ``[B]``.

    On a periodic lattice the plaquette angles sum to zero, so the wrapped sum is an integer
    multiple of 2 pi: Q is an integer up to rounding, returned in the input's dtype.
    """
    return wrap(plaquette_angles(links)).sum(dim=(1, 2)) / (2 * math.pi)


def gauge_transform(links: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Gauge-transform links: ``theta_mu(x) -> alpha(x) + theta_mu(x) - alpha(x + mu)``.

    ``alpha`` has shape ``[B, L, L]``.
    """
    t0 = alpha + links[:, 0] - torch.roll(alpha, -1, 1)
    t1 = alpha + links[:, 1] - torch.roll(alpha, -1, 2)
    return torch.stack([t0, t1], dim=1)


def make_action(config: dict) -> Action:
    """Build an action from a training config (keys ``action``, ``m2``, ``lam``, ``beta``)."""
    kind = config.get("action")
    if kind == "phi4":
        return Phi4Action(config["m2"], config["lam"])
    if kind == "u1":
        return U1GaugeAction(config["beta"])
    raise ValueError(f'unknown action {kind!r}: use "phi4" or "u1"')
