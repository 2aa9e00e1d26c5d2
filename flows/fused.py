"""Fused Triton kernels for the phi^4 affine coupling (circular 3x3 CNN conditioner) on GPUs.

Why: at L = 64 and batch 4096 a coupling layer's conditioner moves 1, 8, 8 and 2 channels per
site. cuDNN serves such thin convolutions far below the card's bandwidth, and eager PyTorch
adds circular-padding copies, separate bias/tanh passes and their backward kernels on top.

- Activations are channel-blocked ``[B, C_P / V, L, L, V]``: channels padded to a power of
  two ``C_P`` and cut into vectors of ``V = min(4, C_P)``, so one 128-bit load brings four
  channels of a site and the loads of a warp cover consecutive sites (whole cache lines).
- Each periodic 3x3 convolution is one kernel that gathers the nine neighbours itself (no
  padding copy); a thread owns whole sites, multiplies in plain float32 FMAs and applies bias
  and tanh before it stores. The input gradient is the same kernel with mirrored, transposed
  weights; as it stores, it applies the tanh derivative of the layer below.
- Weight gradients sum all nine taps in one sweep: on tensor cores (``tl.dot``, TF32 products
  with float32 sums, as cuDNN does by default), or for one-channel inputs in FMAs.
- Two elementwise kernels do the coupling itself (``x e^s + t``, the log-det terms) and
  start its backward pass. The first convolution (and its weight gradient) reads ``x``
  through the mask, and the last input-gradient kernel adds its masked result to ``x``'s
  gradient in place, so no masked copies are made.

The module imports without Triton; :func:`available` says whether the kernels can run.
``TRITON_INTERPRET=1`` runs them on CPU tensors (slowly), which the unit tests use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs may lack it.
    import triton

    from flows.fused_kernels import (
        DOT,
        DUAL,
        FMA,
        FMA_MASKED,
        conv3x3_kernel,
        coupling_backward_kernel,
        coupling_forward_kernel,
        wgrad3x3_kernel,
    )
except ImportError:  # pragma: no cover - exercised where Triton is absent
    triton = None

#: Most channels a conditioner layer may have on the fused path (register budget of a tile).
MAX_CHANNELS = 32
#: Lattice sites per program of a convolution with 8 or more input channels (and at most 8
#: output channels): a thread owns four sites. Wider outputs take proportionally fewer.
BLOCK = 512
#: ... with fewer than 8 input channels.
THIN_BLOCK = 256
#: Warps per program of the convolution kernel.
CONV_WARPS = 4
#: Lattice sites per step of the tensor-core weight-gradient sweep (the products' K axis).
DOT_BLOCK = 64
#: Warps per program of the tensor-core weight-gradient sweep: one holds a small tile per
#: tap (more would only repeat it); layers with more than 256 weights per tap take
#: ``DOT_WIDE_WARPS`` to spread their nine tiles over more registers.
DOT_WARPS = 1
DOT_WIDE_WARPS = 4
#: Lattice sites per step of the FMA weight-gradient sweep (one-channel inputs).
FMA_BLOCK = 128
#: Programs of a weight-gradient sweep (partial sums, then one torch sum).
WGRAD_PROGRAMS = 2048
#: Which operand a tensor-core weight gradient gathers at the nine neighbours (the other is
#: read once per block): "narrow" (default: the gradient where the layer's output has fewer
#: channels than its input, as the 8 -> 2 layer, else the input), "input" or "gradient".
#: The gathered tile is converted to the tensor-core layout once per tap.
WGRAD_GATHER = "narrow"
#: ``tl.dot`` precision of the weight-gradient products: "tf32" (as cuDNN's default) or
#: "tf32x3" (three TF32 products, about float32, slower).
WGRAD_PRECISION = "tf32"
#: Run the weight-gradient sweeps of the backward pass on a second CUDA stream, beside the
#: input gradients (True), or in line on the caller's stream (False).
OVERLAP_WGRAD = True
#: Sites per program of the elementwise coupling kernels.
EW_BLOCK = 1024


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


def _pad_pow2(t: torch.Tensor, dims: int) -> torch.Tensor:
    """``t`` with its last ``dims`` sizes zero-padded to powers of two.

    Returns ``t`` itself, made contiguous, when they are powers of two already.
    """
    sizes = t.shape[t.dim() - dims :]
    if all(s == _pow2(s) for s in sizes):
        return t.contiguous()  # a permuted reshape may be a view
    padded = t.new_zeros(*t.shape[: t.dim() - dims], *(_pow2(s) for s in sizes))
    padded[(..., *(slice(0, s) for s in sizes))] = t
    return padded


def _pack_forward(w: torch.Tensor) -> torch.Tensor:
    """Torch ``[COUT, CIN, 3, 3]`` to ``[9, CIN_P, COUT_P]`` (tap, in, out), zero-padded."""
    cout, cin = w.shape[:2]
    return _pad_pow2(w.permute(2, 3, 1, 0).reshape(9, cin, cout), 2)


def _pack_transposed(w: torch.Tensor) -> torch.Tensor:
    """Weights of the input gradient: taps mirrored, in and out swapped, zero-padded."""
    cout, cin = w.shape[:2]
    return _pad_pow2(w.flip(2, 3).permute(2, 3, 0, 1).reshape(9, cout, cin), 2)


def _pad_bias(b: torch.Tensor) -> torch.Tensor:
    return _pad_pow2(b, 1)


def _index_range_reason(n_sites: int, channels: int) -> str | None:
    if n_sites * channels < 2**31:
        return None
    return (
        f"the fused kernels index with 32-bit offsets: batch x L^2 x channels = "
        f"{n_sites * channels} is too large; use a smaller batch or kernels='torch'"
    )


def _check_index_range(n_sites: int, channels: int) -> None:
    reason = _index_range_reason(n_sites, channels)
    if reason is not None:
        raise ValueError(reason)


def fits(n_sites: int, net: torch.nn.Module) -> str | None:
    """``None`` if ``n_sites`` (batch x L^2) fit the kernels' 32-bit offsets, else why not.

    ``kernels='auto'`` falls back to PyTorch beyond that (e.g. L = 2048 at batch 64).
    """
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    widest = max((_pow2(c) for m in convs for c in (m.in_channels, m.out_channels)), default=1)
    return _index_range_reason(n_sites, widest)


def blocked_shape(batch: int, L: int, channels: int) -> tuple[int, ...]:  # noqa: N803
    """Shape of a channel-blocked activation: ``[B, C_P / V, L, L, V]``, ``V = min(4, C_P)``."""
    c_p = _pow2(channels)
    v = min(4, c_p)
    return (batch, c_p // v, L, L, v)


def to_blocked(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, L, L]`` to the kernels' channel-blocked layout, padded channels zero."""
    B, C, L, _ = t.shape  # noqa: N806
    shape = blocked_shape(B, L, C)
    flat = t.new_zeros(B, L, L, shape[1] * shape[4])
    flat[..., :C] = t.permute(0, 2, 3, 1)
    return flat.reshape(B, L, L, shape[1], shape[4]).permute(0, 3, 1, 2, 4).contiguous()


def from_blocked(t: torch.Tensor, channels: int) -> torch.Tensor:
    """The kernels' channel-blocked layout back to ``[B, channels, L, L]``."""
    B, _, L, _, _ = t.shape  # noqa: N806
    return t.permute(0, 2, 3, 1, 4).reshape(B, L, L, -1)[..., :channels].permute(0, 3, 1, 2)


def _channels(t: torch.Tensor) -> int:
    return t.shape[1] * t.shape[4]


def conv3x3(
    inp: torch.Tensor,
    packed: torch.Tensor,
    bias: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    tanh: bool = False,
    input_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Periodic 3x3 convolution of channel-blocked ``inp`` (see :func:`blocked_shape`).

    Args:
        inp: input activations, contiguous float32, padded channels zero.
        packed: ``[9, CIN_P, COUT_P]`` from :func:`_pack_forward` or :func:`_pack_transposed`.
        bias: zero-padded bias ``[COUT_P]`` or None.
        gate: if given (shaped like the output), the output is multiplied by ``1 - gate^2``:
            the input gradient of the layer below comes out already through its tanh.
        tanh: apply tanh to the output.
        input_mask: ``[L, L]``; a one-channel input is multiplied by it as it is read (the
            coupling's frozen sites, without a masked copy of the input).

    Returns:
        The channel-blocked output; padded channels are zero when the weights' padding is.
    """
    if input_mask is not None and packed.shape[1] != 1:
        raise ValueError("input_mask applies to one-channel inputs only")
    B, L = inp.shape[0], inp.shape[2]  # noqa: N806
    out = inp.new_empty(blocked_shape(B, L, packed.shape[2]))
    _launch_conv(inp, packed, out, bias=bias, gate=gate, tanh=tanh, input_mask=input_mask)
    return out


def conv3x3_add_masked(
    inp: torch.Tensor, packed: torch.Tensor, base: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``base += mask * conv(inp)`` in place for a one-channel output; returns ``base``.

    The coupling's input gradient: the part through the conditioner counts on the frozen
    sites only, and is added to the direct part without a temporary.
    """
    if packed.shape[2] != 1 or not base.is_contiguous():
        raise ValueError("conv3x3_add_masked needs one output channel and a contiguous base")
    _launch_conv(inp, packed, base, add_mask=mask)
    return base


def _launch_conv(
    inp: torch.Tensor,
    packed: torch.Tensor,
    out: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    tanh: bool = False,
    input_mask: torch.Tensor | None = None,
    add_mask: torch.Tensor | None = None,
) -> None:
    B, L = inp.shape[0], inp.shape[2]  # noqa: N806
    cin_p, cout_p = packed.shape[1], packed.shape[2]
    n = B * L * L
    _check_index_range(n, max(cin_p, cout_p))
    # Four sites a thread where eight or more input channels make the loads worth sharing;
    # wider outputs need proportionally more registers per site.
    block = BLOCK * 8 // max(8, cout_p) if cin_p >= 8 else THIN_BLOCK
    mask = input_mask if input_mask is not None else add_mask  # at most one is given
    conv3x3_kernel[(triton.cdiv(n, block),)](
        inp,
        gate if gate is not None else inp,
        packed,
        bias if bias is not None else packed,
        out,
        mask if mask is not None else inp,
        n,
        L=L,
        CIN_P=cin_p,
        COUT_P=cout_p,
        GATE=gate is not None,
        BIAS=bias is not None,
        TANH=tanh,
        MASK_INPUT=input_mask is not None,
        ADD_MASKED=add_mask is not None,
        EVEN=n % block == 0,
        BLOCK=block,
        num_warps=CONV_WARPS,
    )


def _sweep(n: int, block: int) -> tuple[int, int]:
    """Blocks per program and programs for a sweep over ``n`` sites in ``block``-site steps."""
    n_blocks = triton.cdiv(n, block)
    per_program = triton.cdiv(n_blocks, WGRAD_PROGRAMS)
    return per_program, triton.cdiv(n_blocks, per_program)


def _gathers_gradient(cin_p: int, cout_p: int) -> bool:
    if WGRAD_GATHER == "narrow":
        return cout_p < cin_p
    if WGRAD_GATHER in ("input", "gradient"):
        return WGRAD_GATHER == "gradient"
    raise ValueError(
        f"flows.fused.WGRAD_GATHER must be 'narrow', 'input' or 'gradient', not {WGRAD_GATHER!r}"
    )


def wgrad3x3(
    inp: torch.Tensor,
    grad: torch.Tensor,
    cin: int,
    cout: int,
    input_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias gradients of a periodic 3x3 convolution, in torch's ``[COUT, CIN, 3, 3]``.

    Args:
        inp: the convolution's input, channel-blocked.
        grad: gradient of the loss w.r.t. its pre-activation output (before any tanh),
            channel-blocked and contiguous.
        cin: the convolution's real input channels.
        cout: its real output channels.
        input_mask: ``[L, L]``; a one-channel input is multiplied by it as it is read.
    """
    sweep = _WeightGradient(inp, grad, input_mask)
    sweep.launch()
    return sweep.finish(cin, cout)


class _WeightGradient:
    """One weight-gradient sweep in two halves: the kernel's partial sums, then their sum.

    The halves may run on different streams (see ``OVERLAP_WGRAD``): the partial sums are
    allocated here, on the caller's stream, so the other stream only writes into them.
    """

    def __init__(
        self, inp: torch.Tensor, grad: torch.Tensor, input_mask: torch.Tensor | None
    ) -> None:
        B, L = inp.shape[0], inp.shape[2]  # noqa: N806
        self.cin_p, self.cout_p = _channels(inp), _channels(grad)
        self.n = B * L * L
        _check_index_range(self.n, max(self.cin_p, self.cout_p))
        dot = self.cin_p > 1  # a 1-row product would waste the tensor cores' padding: FMAs
        if input_mask is not None and dot:
            raise ValueError("input_mask applies to one-channel inputs only")
        if dot:
            self.way = DUAL if _gathers_gradient(self.cin_p, self.cout_p) else DOT
        else:
            self.way = FMA if input_mask is None else FMA_MASKED
        self.block = DOT_BLOCK if dot else FMA_BLOCK
        wide = self.cin_p * self.cout_p > 256
        self.warps = (DOT_WIDE_WARPS if wide else DOT_WARPS) if dot else 4
        self.per_program, programs = _sweep(self.n, self.block)
        self.n_weights = 9 * self.cin_p * self.cout_p
        self.partial = inp.new_empty(self.n_weights + self.cout_p, programs)
        self.inp, self.grad, self.mask = inp, grad, input_mask

    def launch(self) -> None:
        """The kernel, on the current stream."""
        dot = self.way in (DOT, DUAL)
        wgrad3x3_kernel[(self.partial.shape[1],)](
            self.inp,
            self.grad,
            self.mask if self.mask is not None else self.inp,
            self.partial,
            self.n,
            L=self.inp.shape[2],
            BLOCKS_PER_PROGRAM=self.per_program,
            CIN_P=self.cin_p,
            COUT_P=self.cout_p,
            WAY=self.way,
            PRECISION=WGRAD_PRECISION,
            BLOCK=self.block,
            num_warps=self.warps,
            # Software pipelining only adds registers to the tensor-core gather loop; 3 is
            # Triton's default.
            num_stages=1 if dot else 3,
        )

    def finish(self, cin: int, cout: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum the partials (on the current stream): ``(dW [cout, cin, 3, 3], db [cout])``."""
        total = self.partial.sum(-1)
        dw = total[: self.n_weights].view(self.cout_p, self.cin_p, 3, 3)[:cout, :cin]
        return dw.contiguous(), total[self.n_weights : self.n_weights + cout]


_side_streams: dict[int, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream | None:
    """The stream weight gradients overlap on, or None (CPU, interpreter, or switched off)."""
    if not OVERLAP_WGRAD or device.type != "cuda" or interpreting():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _side_streams:
        _side_streams[index] = torch.cuda.Stream(index)
    return _side_streams[index]


class _FusedCoupling(torch.autograd.Function):
    """``(y, log_det)`` of an affine coupling whose conditioner runs in the fused kernels."""

    @staticmethod
    def forward(ctx, x, mask, *params):  # noqa: D102
        weights, biases = params[0::2], params[1::2]
        # The first convolution reads x itself (one channel) through the mask.
        h = x[:, None, :, :, None]
        acts = []
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            masked = mask if k == 0 else None
            h = conv3x3(h, _pack_forward(w), _pad_bias(b), tanh=True, input_mask=masked)
            acts.append(h)
        y, scale = torch.empty_like(x), torch.empty_like(x)
        n = x.numel()
        coupling_forward_kernel[(triton.cdiv(n, EW_BLOCK),)](
            x, mask, h, y, scale, n, L=x.shape[1], BLOCK=EW_BLOCK
        )
        ctx.save_for_backward(x, mask, *acts, *weights)
        return y, scale.sum((1, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_log_det):  # noqa: D102
        x, mask, *rest = ctx.saved_tensors
        n_layers = len(rest) // 2
        acts, weights = rest[:n_layers], rest[n_layers:]
        grad_x = torch.empty_like(x)
        # From here ``grad`` is w.r.t. a layer's pre-activation: each input-gradient kernel
        # applies the tanh derivative of the layer below as it stores.
        grad = torch.empty_like(acts[-1])
        n, L = x.numel(), x.shape[1]  # noqa: N806
        coupling_backward_kernel[(triton.cdiv(n, EW_BLOCK),)](
            grad_y.contiguous(),
            grad_log_det.contiguous(),
            x,
            mask,
            acts[-1],
            grad_x,
            grad,
            n,
            L=L,
            BLOCK=EW_BLOCK,
        )
        inputs = [x[:, None, :, :, None], *acts[:-1]]
        # Weight gradients run on a side stream while the input gradients go on: the first
        # are integer-bound gathers, the second FMA-bound, so they share the SMs well. Each
        # sweep's tensors stay referenced here until the join (no allocator reuse races).
        main = torch.cuda.current_stream(x.device) if x.is_cuda else None
        side = _side_stream(x.device)
        sweeps: list[_WeightGradient] = []
        for k in range(n_layers - 1, -1, -1):
            w = weights[k]
            first = k == 0
            sweep = _WeightGradient(inputs[k], grad, mask if first else None)
            if side is None:
                sweep.launch()
            else:
                side.wait_stream(main)
                with torch.cuda.stream(side):
                    sweep.launch()
            sweeps.append(sweep)
            if first:  # x's gradient through the conditioner: frozen sites, added in place
                conv3x3_add_masked(grad, _pack_transposed(w), grad_x, mask)
            else:
                grad = conv3x3(grad, _pack_transposed(w), gate=acts[k - 1])
        if side is not None:
            main.wait_stream(side)
        grads: list[torch.Tensor] = []
        for sweep, w in zip(sweeps, reversed(weights), strict=True):
            grads = [*sweep.finish(w.shape[1], w.shape[0]), *grads]
        return (grad_x, None, *grads)


def coupling_forward(
    x: torch.Tensor, mask: torch.Tensor, convs: Sequence[torch.nn.Conv2d]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine coupling ``(y, log_det)`` of ``x`` ``[B, L, L]`` with the fused conditioner.

    Same function as :class:`flows.transforms.AffineCoupling` with a :class:`ConvNet` that
    :func:`supports` accepts; float32 only. ``mask`` is ``[L, L]``, 1 on frozen sites.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"the fused coupling runs in float32, got {x.dtype}")
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    mask = mask.to(x.dtype).contiguous()
    return _FusedCoupling.apply(x.contiguous(), mask, *params)
