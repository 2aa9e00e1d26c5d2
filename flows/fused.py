"""Fused Triton kernels for the phi^4 affine coupling (circular 3x3 CNN conditioner) on GPUs.

Why: at L = 64 and batch 4096 a coupling layer's conditioner moves 1, 8, 8 and 2 channels per
site. cuDNN serves such thin convolutions far below the card's bandwidth, and eager PyTorch
adds circular-padding copies, separate bias/tanh passes and their backward kernels on top.
Here each 3x3 periodic convolution is one kernel that gathers the nine neighbours itself (no
padding copy), multiplies on tensor cores (``tl.dot``, TF32 for float32, as cuDNN does by
default) and applies bias and tanh before it stores; the backward pass applies the tanh
derivative as it loads and computes the weight gradient of all nine taps in one sweep.

Activations are channel-last ``[B, L, L, C]`` so a site's channels are contiguous. The
coupling arithmetic (``x e^s + t``, log-det) stays in float32 PyTorch on one-channel tensors.

The module imports without Triton; :func:`available` says whether the kernels can run.
``TRITON_INTERPRET=1`` runs them on CPU tensors (slowly), which the unit tests use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs may lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where Triton is absent
    triton = None
    tl = None

#: Most channels a conditioner layer may have on the fused path (register budget of a tile).
MAX_CHANNELS = 32
#: Lattice sites per program of the convolution kernel.
BLOCK = 512
#: Lattice sites per step of the weight-gradient sweep (its partial sums live in registers).
WGRAD_BLOCK = 128
#: Warps per program of the convolution and weight-gradient kernels.
CONV_WARPS = 4
WGRAD_WARPS = 4
#: Programs per tap-sweep in the weight-gradient reduction (partial sums, then one torch sum).
WGRAD_PROGRAMS = 1024


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def available(device: torch.device | str | None = None) -> bool:
    """Whether the fused kernels can run on ``device`` (CUDA with Triton, or the interpreter)."""
    if triton is None:
        return False
    if interpreting():
        return True
    kind = torch.device(device).type if device is not None else "cuda"
    return kind == "cuda" and torch.cuda.is_available()


def supports(net: torch.nn.Module) -> str | None:
    """``None`` if the fused path can run ``net``, else the reason it cannot (for messages)."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    tanhs = [m for m in net.modules() if isinstance(m, torch.nn.Tanh)]
    if not convs:
        return "the conditioner has no 2D convolutions"
    if len(tanhs) != len(convs):
        return "the fused path needs tanh after every convolution (final_tanh=True)"
    for conv in convs:
        if conv.kernel_size != (3, 3) or conv.padding_mode != "circular":
            return "the fused path supports circular 3x3 convolutions only (kernel=3)"
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            return "the fused path supports plain convolutions (stride 1, no dilation, groups 1)"
        if conv.bias is None:
            return "the fused path needs convolutions with a bias"
        if max(conv.in_channels, conv.out_channels) > MAX_CHANNELS:
            return f"the fused path supports at most {MAX_CHANNELS} channels per layer"
    if convs[0].in_channels != 1 or convs[-1].out_channels != 2:
        return "the conditioner must map 1 channel to 2 (scale and shift)"
    return None


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()  # Triton tile sides are powers of two


if triton is not None:

    @triton.jit
    def _tanh(x):
        # 1 - 2 / (e^{2x} + 1): saturates cleanly to +-1 where e^{2x} overflows or vanishes.
        return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)

    @triton.jit
    def _coordinates(sites, L: tl.constexpr):
        # Sample index and (i, j) of each flat site b * L^2 + i * L + j. L is a compile-time
        # constant, so these divisions become multiplies and shifts.
        rem = sites % (L * L)
        return sites // (L * L), rem // L, rem % L

    @triton.jit
    def _shifted(i, j, L: tl.constexpr, DI, DJ):
        # In-sample flat index of the periodic neighbour (i + DI, j + DJ).
        ni = i + DI
        ni = tl.where(ni < 0, ni + L, tl.where(ni >= L, ni - L, ni))
        nj = j + DJ
        nj = tl.where(nj < 0, nj + L, tl.where(nj >= L, nj - L, nj))
        return ni * L + nj

    @triton.jit
    def _conv3x3_kernel(
        inp,
        gate,
        weight,
        bias,
        out,
        n_sites,
        L: tl.constexpr,
        CIN: tl.constexpr,
        COUT: tl.constexpr,
        COUT_P: tl.constexpr,
        GATE: tl.constexpr,
        BIAS: tl.constexpr,
        TANH: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """out[x] = act(sum W[tap, c] in[c, x + off(tap)] + b), times 1 - gate[x]^2 if GATE.

        Channel-first ``[B, C, L, L]`` tensors, one site per thread, all output channels in
        registers; ``weight`` is ``[9, CIN, COUT_P]`` (zero-padded), tap = 3 (di + 1) + dj + 1.
        """
        # Tiles are [channels, sites] with sites fastest: each thread owns a few sites and all
        # their output channels, so every input value is loaded once and feeds COUT FMAs.
        sites = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = (sites < n_sites)[None, :]
        b, i, j = _coordinates(sites, L)
        cout = tl.arange(0, COUT_P)[:, None]
        acc = tl.zeros((COUT_P, BLOCK), dtype=tl.float32)
        for tap in tl.static_range(9):
            src = (b * (CIN * L * L) + _shifted(i, j, L, tap // 3 - 1, tap % 3 - 1))[None, :]
            for c in tl.static_range(CIN):
                v = tl.load(inp + src + c * L * L, mask=valid, other=0.0)
                w = tl.load(weight + (tap * CIN + c) * COUT_P + cout)
                acc += w * v
        if BIAS:
            acc += tl.load(bias + cout)
        if TANH:
            acc = _tanh(acc)
        offs = (b * (COUT * L * L) + i * L + j)[None, :] + cout * (L * L)
        if GATE:
            h = tl.load(gate + offs, mask=valid & (cout < COUT), other=0.0)
            acc = acc * (1.0 - h * h)
        tl.store(out + offs, acc, mask=valid & (cout < COUT))

    @triton.jit
    def _wgrad3x3_kernel(
        inp,
        grad,
        gate,
        partial_w,
        partial_b,
        n_sites,
        n_programs,
        L: tl.constexpr,
        BLOCKS_PER_PROGRAM: tl.constexpr,
        CIN: tl.constexpr,
        COUT: tl.constexpr,
        CIN_P: tl.constexpr,
        COUT_P: tl.constexpr,
        GATE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """Partial sums of dW[tap, c, o] = sum_x in[c, x + off(tap)] g[o, x] over some blocks.

        Program ``9 p + tap`` sums tap ``tap`` over blocks p, p + P, ...; the nine programs of
        one p read the same gradient tile at about the same time, so eight of the nine reads
        come from L2. ``g = grad (1 - gate^2)`` if GATE (the tanh derivative), else ``grad``.
        Writes ``partial_w[p, tap] = [CIN_P, COUT_P]`` and ``partial_b[p, tap] = sum_x g``.
        """
        pid = tl.program_id(0)
        p = pid // 9
        tap = pid % 9
        # [CIN_P, COUT_P, BLOCK] with sites fastest: per-thread partial sums, reduced once.
        cin = tl.arange(0, CIN_P)[:, None, None]
        cout = tl.arange(0, COUT_P)[None, :, None]
        acc = tl.zeros((CIN_P, COUT_P, BLOCK), dtype=tl.float32)
        acc_b = tl.zeros((1, COUT_P, BLOCK), dtype=tl.float32)
        for k in range(0, BLOCKS_PER_PROGRAM):
            sites = (p + k * n_programs) * BLOCK + tl.arange(0, BLOCK)
            valid = (sites < n_sites)[None, None, :]
            b, i, j = _coordinates(sites, L)
            goffs = (b * (COUT * L * L) + i * L + j)[None, None, :] + cout * (L * L)
            gmask = valid & (cout < COUT)
            g = tl.load(grad + goffs, mask=gmask, other=0.0)
            if GATE:
                h = tl.load(gate + goffs, mask=gmask, other=0.0)
                g = g * (1.0 - h * h)
            src = b * (CIN * L * L) + _shifted(i, j, L, tap // 3 - 1, tap % 3 - 1)
            aoffs = src[None, None, :] + cin * (L * L)
            a = tl.load(inp + aoffs, mask=valid & (cin < CIN), other=0.0)
            acc += a * g
            acc_b += g
        tile = tl.arange(0, CIN_P)[:, None] * COUT_P + tl.arange(0, COUT_P)[None, :]
        tl.store(partial_w + (p * 9 + tap) * CIN_P * COUT_P + tile, tl.sum(acc, axis=2))
        tl.store(
            partial_b + (p * 9 + tap) * COUT_P + tl.arange(0, COUT_P)[None, :],
            tl.sum(acc_b, axis=2),
        )


def _pack_forward(w: torch.Tensor) -> torch.Tensor:
    """Torch ``[COUT, CIN, 3, 3]`` to ``[9, CIN, COUT_P]`` (tap, in, out), zero-padded."""
    cout, cin = w.shape[:2]
    packed = w.new_zeros(9, cin, _pow2(cout))
    packed[:, :, :cout] = w.permute(2, 3, 1, 0).reshape(9, cin, cout)
    return packed


def _pack_transposed(w: torch.Tensor) -> torch.Tensor:
    """Weights of the input gradient: taps mirrored, in and out swapped, zero-padded."""
    cout, cin = w.shape[:2]
    packed = w.new_zeros(9, cout, _pow2(cin))
    packed[:, :, :cin] = w.flip(2, 3).permute(2, 3, 0, 1).reshape(9, cout, cin)
    return packed


def _pad_bias(b: torch.Tensor) -> torch.Tensor:
    padded = b.new_zeros(_pow2(b.shape[0]))
    padded[: b.shape[0]] = b
    return padded


def _check_index_range(n_sites: int, channels: int) -> None:
    if n_sites * channels >= 2**31:
        raise ValueError(
            f"the fused kernels index with 32-bit offsets: batch x L^2 x channels = "
            f"{n_sites * channels} is too large; use a smaller batch or kernels='torch'"
        )


def conv3x3(
    inp: torch.Tensor,
    packed: torch.Tensor,
    cout: int,
    bias: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    tanh: bool = False,
) -> torch.Tensor:
    """Periodic 3x3 convolution of channel-first ``inp`` ``[B, CIN, L, L]`` with packed weights.

    Args:
        inp: input activations, contiguous float32.
        packed: ``[9, CIN, COUT_P]`` from :func:`_pack_forward` or :func:`_pack_transposed`.
        cout: output channels.
        bias: zero-padded bias ``[COUT_P]`` or None.
        gate: if given (shaped like the output), the output is multiplied by ``1 - gate^2``:
            the input gradient of the layer below comes out already through its tanh.
        tanh: apply tanh to the output.
    """
    B, cin, L, _ = inp.shape  # noqa: N806
    out = inp.new_empty(B, cout, L, L)
    n = B * L * L
    _check_index_range(n, max(cin, cout))
    _conv3x3_kernel[(triton.cdiv(n, BLOCK),)](
        inp,
        gate if gate is not None else inp,
        packed,
        bias if bias is not None else packed,
        out,
        n,
        L=L,
        CIN=cin,
        COUT=cout,
        COUT_P=packed.shape[2],
        GATE=gate is not None,
        BIAS=bias is not None,
        TANH=tanh,
        BLOCK=BLOCK,
        num_warps=CONV_WARPS,
    )
    return out


def wgrad3x3(
    inp: torch.Tensor, grad: torch.Tensor, gate: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias gradients of a periodic 3x3 convolution, in torch's ``[COUT, CIN, 3, 3]``.

    Args:
        inp: the convolution's input ``[B, CIN, L, L]``.
        grad: gradient of the loss w.r.t. its output ``[B, COUT, L, L]`` (after tanh if
            ``gate``), contiguous.
        gate: the tanh output, whose derivative ``1 - gate^2`` multiplies ``grad``.
    """
    B, cin, L, _ = inp.shape  # noqa: N806
    cout = grad.shape[1]
    cin_p, cout_p = _pow2(cin), _pow2(cout)
    n = B * L * L
    _check_index_range(n, max(cin, cout))
    n_blocks = triton.cdiv(n, WGRAD_BLOCK)
    programs = min(n_blocks, WGRAD_PROGRAMS)
    partial_w = inp.new_empty(programs, 9, cin_p, cout_p, dtype=torch.float32)
    partial_b = inp.new_empty(programs, 9, cout_p, dtype=torch.float32)
    _wgrad3x3_kernel[(programs * 9,)](
        inp,
        grad,
        gate if gate is not None else grad,
        partial_w,
        partial_b,
        n,
        programs,
        L=L,
        BLOCKS_PER_PROGRAM=triton.cdiv(n_blocks, programs),
        CIN=cin,
        COUT=cout,
        CIN_P=cin_p,
        COUT_P=cout_p,
        GATE=gate is not None,
        BLOCK=WGRAD_BLOCK,
        num_warps=WGRAD_WARPS,
    )
    dw = partial_w.sum(0)[:, :cin, :cout].reshape(3, 3, cin, cout).permute(3, 2, 0, 1)
    return dw.contiguous(), partial_b[:, 0].sum(0)[:cout]


class _FusedCoupling(torch.autograd.Function):
    """``(y, log_det)`` of an affine coupling whose conditioner runs in the fused kernels."""

    @staticmethod
    def forward(ctx, x, mask, *params):  # noqa: D102
        weights, biases = params[0::2], params[1::2]
        f = (x * mask).unsqueeze(1)
        acts = [f]
        h = f
        for w, b in zip(weights, biases, strict=True):
            h = conv3x3(h, _pack_forward(w), w.shape[0], _pad_bias(b), tanh=True)
            acts.append(h)
        active = 1 - mask
        s = active * h[:, 0]
        t = active * h[:, 1]
        y = f[:, 0] + active * x * torch.exp(s) + t
        ctx.save_for_backward(x, mask, *acts[1:], *weights)
        return y, s.sum((1, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_log_det):  # noqa: D102
        x, mask, *rest = ctx.saved_tensors
        n = len(rest) // 2
        acts, weights = rest[:n], rest[n:]
        active = 1 - mask
        out = acts[-1]
        e_s = torch.exp(active * out[:, 0])
        grad_x = grad_y * (mask + active * e_s)
        grad_s = active * (grad_y * x * e_s + grad_log_det[:, None, None])
        # From here ``grad`` is w.r.t. a layer's pre-activation: each input-gradient kernel
        # applies the tanh derivative of the layer below as it stores, so no kernel has to
        # load activations and gradients side by side.
        grad = torch.stack([grad_s, active * grad_y], 1) * (1 - out * out)
        inputs = [(x * mask).unsqueeze(1), *acts[:-1]]
        grads: list[torch.Tensor] = []
        for k in range(n - 1, -1, -1):
            w = weights[k]
            dw, db = wgrad3x3(inputs[k], grad)
            grads = [dw, db, *grads]
            gate = acts[k - 1] if k > 0 else None
            grad = conv3x3(grad, _pack_transposed(w), w.shape[1], gate=gate)
        grad_x = grad_x + mask * grad[:, 0]
        return (grad_x, None, *grads)


def coupling_forward(
    x: torch.Tensor, mask: torch.Tensor, convs: Sequence[torch.nn.Conv2d]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine coupling ``(y, log_det)`` of ``x`` ``[B, L, L]`` with the fused conditioner.

    Same function as :class:`flows.transforms.AffineCoupling` with a :class:`ConvNet` that
    :func:`supports` accepts; float32 only.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"the fused coupling runs in float32, got {x.dtype}")
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    return _FusedCoupling.apply(x.contiguous(), mask.to(x.dtype), *params)
