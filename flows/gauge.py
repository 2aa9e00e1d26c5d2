"""Gauge-equivariant coupling layers for 2D U(1) link angles ``[B, 2, L, L]``.

The construction follows Kanwar et al., arXiv:2003.06413: a layer updates the links of one
direction ``mu`` on every fourth row so that each updated link lies in exactly one *active*
plaquette. The active plaquette angle goes through an invertible map of the circle whose
parameters depend only on *frozen* plaquettes (which no updated link touches), and the link
absorbs the change. Plaquettes are gauge invariant, so the layer commutes with gauge
transformations, and its Jacobian is triangular with the kernel's derivatives on the diagonal.

Geometry for ``mu = 0`` (rows are the ``x1`` coordinate): links ``theta_0(x)`` with
``x1 = s (mod 4)`` are updated; their plaquettes ``P(x)`` (row ``s``, where the link enters with
sign +) are active, row ``s - 1`` is passive (it changes, but nobody conditions on it) and rows
``s + 1, s + 2`` are frozen. For ``mu = 1`` the same holds with columns (``x0``) and sign -.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flows.actions import plaquette_angles, wrap
from flows.transforms import ConvNet, Transform


def stripe_masks(L: int, mu: int, offset: int) -> dict[str, torch.Tensor]:  # noqa: N803
    """0/1 masks ``active``, ``frozen``, ``passive`` (``[L, L]``) and ``links`` (``[2, L, L]``)."""
    if L % 4 != 0:
        raise ValueError(f"gauge-equivariant layers need L divisible by 4 (e.g. 8), got L={L}")
    if mu not in (0, 1):
        raise ValueError(f"mu must be 0 or 1 in 2D, got {mu}")
    rows = torch.arange(L)
    # The stripe coordinate is the one perpendicular to mu.
    coord = rows.view(1, L).expand(L, L) if mu == 0 else rows.view(L, 1).expand(L, L)
    phase = (coord - offset) % 4
    active = (phase == 0).float()
    frozen = ((phase == 1) | (phase == 2)).float()
    passive = (phase == 3).float()
    links = torch.zeros(2, L, L)
    links[mu] = active
    return {"active": active, "frozen": frozen, "passive": passive, "links": links}


class NCPMixture(nn.Module):
    """Circle diffeomorphism ``h(theta) = mean_k 2 atan(a_k tan(theta/2)) + t``, ``a_k > 0``.

    The "non-compact projection" of arXiv:2003.06413: each term fixes 0 and ±pi and is monotone,
    so the mixture is too; the shift ``t`` rotates the circle. The inverse is found by bisection
    (the map is monotone on ``[-pi, pi)``), to machine precision of the dtype.
    """

    @staticmethod
    def _ncp(theta: torch.Tensor, log_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = theta.unsqueeze(-1) / 2
        a = torch.exp(log_a)
        c, s = torch.cos(half), torch.sin(half)
        value = 2 * torch.atan2(a * s, c).mean(-1)
        deriv = (a / (c**2 + (a * s) ** 2)).mean(-1)
        return value, deriv

    def forward(
        self, theta: torch.Tensor, log_a: torch.Tensor, shift: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map wrapped angles; returns the new wrapped angles and ``log h'(theta)``."""
        value, deriv = self._ncp(theta, log_a)
        return wrap(value + shift), torch.log(deriv)

    def inverse(
        self, theta: torch.Tensor, log_a: torch.Tensor, shift: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse map; returns the angles and ``log (h^-1)'``."""
        target = wrap(theta - shift)
        lo = torch.full_like(target, -math.pi)
        hi = torch.full_like(target, math.pi)
        iterations = 60 if target.dtype == torch.float64 else 32
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = self._ncp(mid, log_a)[0] < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        x = (lo + hi) / 2
        return x, -torch.log(self._ncp(x, log_a)[1])


class GaugeEquivariantCoupling(Transform):
    """Update the links of direction ``mu`` on rows ``offset (mod 4)`` through their plaquettes.

    Args:
        L: lattice extent (divisible by 4).
        mu: link direction updated (0 or 1).
        offset: stripe offset 0..3.
        hidden: conditioner hidden channels, e.g. ``[8, 8]``.
        kernel: conditioner kernel size.
        n_mix: number of NCP terms in the circle map.
    """

    def __init__(
        self,
        L: int,  # noqa: N803
        mu: int,
        offset: int,
        hidden: list[int],
        kernel: int = 3,
        n_mix: int = 4,
    ):
        super().__init__()
        masks = stripe_masks(L, mu, offset)
        for name, mask in masks.items():
            self.register_buffer(f"{name}_mask", mask)
        self.sign = 1.0 if mu == 0 else -1.0
        self.n_mix = n_mix
        # Inputs: cos and sin of frozen plaquettes; outputs: n_mix log-scales and a shift pair.
        self.net = ConvNet(2, hidden, n_mix + 2, kernel, final_tanh=False)
        self.kernel = NCPMixture()

    def _params(self, plaq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frozen = self.frozen_mask.to(plaq.dtype)
        features = torch.stack([frozen * torch.cos(plaq), frozen * torch.sin(plaq)], dim=1)
        out = self.net(features.to(next(self.net.parameters()).dtype)).to(plaq.dtype)
        log_a = out[:, : self.n_mix].movedim(1, -1)
        # A shift from (cos, sin)-like outputs stays smooth across ±pi.
        shift = torch.atan2(out[:, self.n_mix + 1], 1 + out[:, self.n_mix])
        return log_a, shift

    def _couple(self, links: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        plaq = wrap(plaquette_angles(links))
        log_a, shift = self._params(plaq)
        step = self.kernel.inverse if inverse else self.kernel.forward
        new_plaq, log_deriv = step(plaq, log_a, shift)
        active = self.active_mask.to(links.dtype)
        change = active * (new_plaq - plaq)
        links = links + self.sign * self.links_mask.to(links.dtype) * change.unsqueeze(1)
        return wrap(links), (active * log_deriv).sum(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``(y, log|det dy/dx|)``."""
        return self._couple(x, inverse=False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``."""
        return self._couple(y, inverse=True)
