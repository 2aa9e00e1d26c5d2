"""Invertible layers for scalar fields, in the zuko shape.

Every :class:`Transform` maps a batch ``x`` to ``(y, log_det)`` with ``log_det`` the log of the
absolute Jacobian determinant ``|dy/dx|`` per sample (shape ``[B]``); ``inverse(y)`` returns
``(x, log_det)`` of the inverse map, so ``forward`` and ``inverse`` log-dets of one pair sum to
zero. The flow's sampling direction is ``forward`` (prior sample ``z`` to configuration ``x``).
Every tensor a layer makes takes the input's device and dtype.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import nn

from flows import fused

#: Conditioner kernels of :class:`AffineCoupling`: PyTorch's, the fused Triton ones, or
#: the fused ones wherever they can run (CUDA, float32, no autocast, a supported net).
KERNELS = ("auto", "torch", "triton")


class Transform(nn.Module, abc.ABC):
    """An invertible map with a tractable log-determinant."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``(y, log|det dy/dx|)``."""

    @abc.abstractmethod
    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``."""


class Composed(Transform):
    """Layers applied in order; log-dets add up."""

    def __init__(self, layers: Sequence[Transform]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``(y, log|det dy/dx|)``."""
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, log_det = layer(x)
            total = total + log_det
        return x, total

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``."""
        total = y.new_zeros(y.shape[0])
        for layer in reversed(self.layers):
            y, log_det = layer.inverse(y)
            total = total + log_det
        return y, total


def checkerboard(shape: Sequence[int], parity: int) -> torch.Tensor:
    """0/1 mask on a lattice of ``shape`` that is 1 where the site-coordinate sum has ``parity``."""
    grids = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    return ((sum(grids) + parity) % 2 == 0).to(torch.get_default_dtype())


class ConvNet(nn.Module):
    """Circular-padded CNN conditioner: ``in_channels`` to ``out_channels`` maps on the lattice.

    Args:
        in_channels: input channels.
        hidden: channels of the hidden layers, e.g. ``[8, 8]``.
        out_channels: output channels.
        kernel: odd kernel size (3 means 3x3); circular padding keeps the lattice periodic.
        final_tanh: squash the output with tanh (bounded scales keep early training stable).
        dim: lattice dimension (2 for the models here).
    """

    def __init__(
        self,
        in_channels: int,
        hidden: Sequence[int],
        out_channels: int,
        kernel: int = 3,
        final_tanh: bool = True,
        dim: int = 2,
    ):
        super().__init__()
        if kernel % 2 != 1 or kernel < 1:
            raise ValueError(f"kernel must be an odd size >= 1 (e.g. 3), got {kernel}")
        if dim not in (1, 2, 3):
            raise ValueError(f"lattice dimension must be 1, 2 or 3, got {dim}")
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        sizes = [in_channels, *hidden, out_channels]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(conv(cin, cout, kernel, padding=kernel // 2, padding_mode="circular"))
            if i < len(sizes) - 2 or final_tanh:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to ``[B, C, L, L]``."""
        return self.net(x)


class AffineCoupling(Transform):
    """Real NVP coupling: sites where ``mask`` is 1 stay, the others get ``x e^s + t``.

    ``s`` and ``t`` come from ``net`` applied to the frozen sites (one input channel, two output
    channels). The mask is a buffer, so it follows ``.to(device)`` and is saved with the model.

    Args:
        mask: 0/1 lattice mask, 1 = frozen (conditioning) site.
        net: conditioner with 1 input and 2 output channels.
        autocast_dtype: if set (e.g. ``torch.bfloat16``), run only the conditioner in this
            precision; the coupling arithmetic and log-det stay in the input dtype.
        kernels: ``"auto"`` (default) runs :meth:`forward` through the fused Triton kernels of
            :mod:`flows.fused` where they can run and PyTorch elsewhere; ``"torch"`` always
            uses PyTorch; ``"triton"`` insists on the fused kernels and raises where they
            cannot run.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        net: nn.Module,
        autocast_dtype: torch.dtype | None = None,
        kernels: str = "auto",
    ):
        super().__init__()
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {list(KERNELS)}, got {kernels!r}")
        self.register_buffer("mask", mask.clone())
        self.net = net
        self.autocast_dtype = autocast_dtype
        self.kernels = kernels

    def _fused_blocker(self, x: torch.Tensor) -> str | None:
        """Why the fused kernels cannot run this layer on ``x`` (None if they can)."""
        if not fused.available(x.device):
            return f"Triton kernels are not available on {x.device.type} (needs CUDA and triton)"
        if x.dtype != torch.float32:
            return f"the fused kernels run float32 models, this one is {x.dtype}"
        if self.autocast_dtype is not None:
            return "the fused kernels do not run under autocast (amp); use amp 'none'"
        if torch.compiler.is_compiling():
            return "the fused kernels are not traced by torch.compile; use compile false"
        return fused.supports(self.net) or fused.fits(x.numel(), self.net)

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.kernels == "torch":
            return False
        reason = self._fused_blocker(x)
        if reason is not None and self.kernels == "triton":
            raise RuntimeError(f"kernels='triton' cannot run here: {reason}; use kernels='auto'")
        return reason is None

    def _scale_shift(self, frozen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inp = frozen.unsqueeze(1)
        if self.autocast_dtype is not None and frozen.is_cuda:
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                out = self.net(inp)
            out = out.to(frozen.dtype)
        else:
            out = self.net(inp.to(self._net_dtype())).to(frozen.dtype)
        active = 1 - self.mask
        return active * out[:, 0], active * out[:, 1]

    def _net_dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``(y, log|det dy/dx|)``."""
        if self._use_fused(x):
            convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
            return fused.coupling_forward(x, self.mask, convs)
        mask = self.mask.to(x.dtype)
        frozen = mask * x
        s, t = self._scale_shift(frozen)
        y = frozen + (1 - mask) * x * torch.exp(s) + t
        return y, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``."""
        mask = self.mask.to(y.dtype)
        frozen = mask * y
        s, t = self._scale_shift(frozen)
        x = frozen + (1 - mask) * (y - t) * torch.exp(-s)
        return x, -s.flatten(1).sum(1)


class LinearGaussian(Transform):
    """Translation-invariant linear flow ``y = C x`` with ``C`` a symmetric circulant matrix.

    In momentum space ``C`` is diagonal with positive entries ``c_p = exp(u_p)`` (``u`` symmetrized
    under ``p -> -p`` so a real field stays real), so ``log|det C| = sum_p u_p``. A standard normal
    prior pushed through it is a Gaussian with covariance ``C^2``: exact for the free field when
    ``c_p^2 = 1 / (2 lambda_p)``, see :meth:`exact_free_field`.

    Args:
        shape: lattice shape, e.g. ``(8, 8)``.
    """

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)
        self.log_c = nn.Parameter(torch.zeros(self.shape))

    def _log_c(self, like: torch.Tensor) -> torch.Tensor:
        u = self.log_c.to(like.dtype)
        dims = tuple(range(u.dim()))
        flipped = torch.roll(torch.flip(u, dims=dims), (1,) * len(dims), dims)
        return (u + flipped) / 2  # u_p and u_{-p} averaged: C is real

    def _multiply(self, x: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
        log_c = self._log_c(x)
        dims = tuple(range(1, x.dim()))
        y = torch.fft.ifftn(torch.fft.fftn(x, dim=dims) * torch.exp(sign * log_c), dim=dims).real
        return y, (sign * log_c.sum()).expand(x.shape[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``(y, log|det dy/dx|)``."""
        return self._multiply(x, 1.0)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``."""
        return self._multiply(y, -1.0)

    @classmethod
    def exact_free_field(cls, shape: Sequence[int], m2: float) -> LinearGaussian:
        """The flow that maps N(0, 1) exactly to the free-field density ``exp(-phi A phi)``."""
        if m2 <= 0:
            raise ValueError(f"the free field needs m2 > 0, got {m2}")
        layer = cls(shape)
        grids = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
        lam = m2 + sum(
            4 * torch.sin(math.pi * g.to(torch.float64) / n) ** 2
            for g, n in zip(grids, shape, strict=True)
        )
        with torch.no_grad():
            layer.log_c.copy_(-0.5 * torch.log(2 * lam))
        return layer
