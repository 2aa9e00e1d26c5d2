"""Flow models: a prior pushed through a stack of transforms, built from a training config."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import nn

from flows.gauge import GaugeEquivariantCoupling
from flows.transforms import (
    AffineCoupling,
    Composed,
    ConvNet,
    LinearGaussian,
    Transform,
    checkerboard,
)


class Prior(nn.Module, abc.ABC):
    """A base density that can be sampled with an explicit generator."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    @abc.abstractmethod
    def sample(
        self,
        n: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` samples of :attr:`shape`."""

    @abc.abstractmethod
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density per sample, shape ``[B]``."""


class StandardNormal(Prior):
    """Independent N(0, 1) on every site."""

    def sample(self, n, *, device="cpu", dtype=torch.float32, generator=None):  # noqa: D102
        return torch.randn((n, *self.shape), device=device, dtype=dtype, generator=generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        size = math.prod(self.shape)
        return -0.5 * (z**2).flatten(1).sum(1) - 0.5 * size * math.log(2 * math.pi)


class UniformAngles(Prior):
    """Independent uniform angles on ``[-pi, pi)`` (U(1) Haar measure, not normalized by 2pi)."""

    def sample(self, n, *, device="cpu", dtype=torch.float32, generator=None):  # noqa: D102
        u = torch.rand((n, *self.shape), device=device, dtype=dtype, generator=generator)
        return (2 * u - 1) * math.pi

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        size = math.prod(self.shape)
        return z.new_full((z.shape[0],), -size * math.log(2 * math.pi))


class Flow(nn.Module):
    """``x = f(z)``, ``z ~ prior``; ``log q(x) = log prior(z) - log|det df/dz|``."""

    def __init__(self, prior: Prior, transform: Transform):
        super().__init__()
        self.prior = prior
        self.transform = transform

    def sample(
        self,
        n: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` configurations and their model log density ``log q``."""
        param = next(self.parameters(), None)
        device = device if device is not None else (param.device if param is not None else "cpu")
        dtype = (
            dtype if dtype is not None else (param.dtype if param is not None else torch.float32)
        )
        z = self.prior.sample(n, device=device, dtype=dtype, generator=generator)
        x, log_det = self.transform(z)
        return x, self.prior.log_prob(z) - log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Model log density of given configurations (through the inverse)."""
        z, log_det = self.transform.inverse(x)
        return self.prior.log_prob(z) + log_det


def phi4_coupling_flow(
    L: int,  # noqa: N803
    n_layers: int = 16,
    hidden: Sequence[int] = (8, 8),
    kernel: int = 3,
    autocast_dtype: torch.dtype | None = None,
    kernels: str = "auto",
) -> Flow:
    """Real NVP flow for phi^4: alternating checkerboard affine couplings (the tutorial's shape).

    ``kernels`` picks the couplings' conditioner kernels (see :class:`AffineCoupling`).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    layers = [
        AffineCoupling(
            checkerboard((L, L), parity=i % 2),
            ConvNet(1, list(hidden), 2, kernel, final_tanh=True),
            autocast_dtype=autocast_dtype,
            kernels=kernels,
        )
        for i in range(n_layers)
    ]
    return Flow(StandardNormal((L, L)), Composed(layers))


def free_field_flow(L: int, m2: float | None = None) -> Flow:  # noqa: N803
    """Linear Gaussian flow; exact for the free field when ``m2`` is given, identity otherwise."""
    layer = LinearGaussian((L, L)) if m2 is None else LinearGaussian.exact_free_field((L, L), m2)
    return Flow(StandardNormal((L, L)), Composed([layer]))


def u1_equivariant_flow(
    L: int,  # noqa: N803
    n_layers: int = 16,
    hidden: Sequence[int] = (8, 8),
    kernel: int = 3,
    n_mix: int = 4,
) -> Flow:
    """Gauge-equivariant flow for 2D U(1): layers cycle over (mu, offset) in 2 x 4 patterns."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    layers = [
        GaugeEquivariantCoupling(
            L, mu=i % 2, offset=(i // 2) % 4, hidden=list(hidden), kernel=kernel, n_mix=n_mix
        )
        for i in range(n_layers)
    ]
    return Flow(UniformAngles((2, L, L)), Composed(layers))


def build_flow(config: dict, autocast_dtype: torch.dtype | None = None) -> Flow:
    """Build the model a training config asks for (keys as in :mod:`flows.config`).

    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the phi^4 conditioners in reduced
    precision on GPUs; actions, log-dets and Metropolis ratios stay in the model's dtype.
    """
    model = config.get("model", "coupling")
    if config["action"] == "phi4":
        if model == "linear":
            return free_field_flow(config["L"])
        return phi4_coupling_flow(
            config["L"],
            config["n_layers"],
            config["hidden"],
            config["kernel"],
            autocast_dtype,
            config.get("kernels", "auto"),
        )
    if config["action"] == "u1":
        return u1_equivariant_flow(
            config["L"],
            config["n_layers"],
            config["hidden"],
            config["kernel"],
            config.get("n_mix", 4),
        )
    raise ValueError(f'unknown action {config["action"]!r}: use "phi4" or "u1"')
