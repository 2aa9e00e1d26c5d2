"""Triton kernels of :mod:`flows.fused` (the layouts and launch policy live there).

Importing this module needs Triton; :mod:`flows.fused` imports it only where Triton is
installed. Tensors are channel-blocked ``[B, C_P / V, L, L, V]`` (see ``flows.fused``).
"""

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # 1 - 2 / (e^{2x} + 1): saturates cleanly to +-1 where e^{2x} overflows or vanishes.
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _coordinates(sites, L: tl.constexpr):
    # First site of the sample and (i, j) of each flat site b L^2 + i L + j. L is a
    # compile-time constant, so these divisions become multiplies and shifts.
    rem = sites % (L * L)
    return sites - rem, rem // L, rem % L


@triton.jit
def _neighbour(i, j, L: tl.constexpr, DI: tl.constexpr, DJ: tl.constexpr):
    # In-sample index of the periodic neighbour (i + DI, j + DJ); only the side a shift
    # can leave is wrapped.
    ni = i + DI
    if DI < 0:
        ni = tl.where(ni < 0, ni + L, ni)
    if DI > 0:
        ni = tl.where(ni >= L, ni - L, ni)
    nj = j + DJ
    if DJ < 0:
        nj = tl.where(nj < 0, nj + L, nj)
    if DJ > 0:
        nj = tl.where(nj >= L, nj - L, nj)
    return ni * L + nj


@triton.jit
def _offsets(first, rel, L: tl.constexpr, C_P: tl.constexpr):
    # [BLOCK, C_P / V, V] offsets of the channels of sites (first + rel) in a
    # channel-blocked [B, C_P / V, L, L, V] tensor.
    V: tl.constexpr = 4 if C_P >= 4 else C_P
    site = (first * C_P + rel * V)[:, None, None]
    group = (tl.arange(0, C_P // V) * (L * L * V))[None, :, None]
    return site + group + tl.arange(0, V)[None, None, :]


@triton.jit
def _load_channels(ptr, first, rel, valid, L: tl.constexpr, C_P: tl.constexpr):
    # [BLOCK, C_P] tile of the channels of sites (first + rel), zero where not valid.
    offs = _offsets(first, rel, L, C_P)
    tile = tl.load(ptr + offs, mask=valid[:, None, None], other=0.0)
    return tl.reshape(tile, [offs.shape[0], C_P])


@triton.jit
def _accumulate(acc, v, wrow, COUT_P: tl.constexpr, VI: tl.constexpr, BLOCK: tl.constexpr):
    # acc[s, :] += sum_c v[s, c] W[c, :] over the VI channels of one vector load. tl.split
    # takes the columns out of each thread's registers, so no data crosses threads.
    if VI == 4:
        a, b = tl.split(tl.reshape(v, [BLOCK, 2, 2]))  # columns (0, 2) and (1, 3)
        c0, c2 = tl.split(a)
        c1, c3 = tl.split(b)
        acc += c0[:, None, None] * tl.load(wrow)
        acc += c1[:, None, None] * tl.load(wrow + COUT_P)
        acc += c2[:, None, None] * tl.load(wrow + 2 * COUT_P)
        acc += c3[:, None, None] * tl.load(wrow + 3 * COUT_P)
    elif VI == 2:
        c0, c1 = tl.split(v)
        acc += c0[:, None, None] * tl.load(wrow)
        acc += c1[:, None, None] * tl.load(wrow + COUT_P)
    else:
        acc += tl.reshape(v, [BLOCK])[:, None, None] * tl.load(wrow)
    return acc


@triton.jit
def conv3x3_kernel(
    inp,
    gate,
    weight,
    bias,
    out,
    n_sites,
    L: tl.constexpr,
    CIN_P: tl.constexpr,
    COUT_P: tl.constexpr,
    GATE: tl.constexpr,
    BIAS: tl.constexpr,
    TANH: tl.constexpr,
    EVEN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[x] = act(sum W[tap, c] in[x + off(tap), c] + b), times 1 - gate[x]^2 if GATE.

    Channel-blocked tensors (module docstring); ``weight`` is ``[9, CIN_P, COUT_P]``, tap =
    3 (di + 1) + dj + 1. Each thread owns whole sites: it loads a neighbour's channels in
    128-bit vectors and keeps all output channels of its sites in registers.
    """
    VI: tl.constexpr = 4 if CIN_P >= 4 else CIN_P
    VO: tl.constexpr = 4 if COUT_P >= 4 else COUT_P
    sites = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = sites < n_sites
    first, i, j = _coordinates(sites, L)
    # Output channels as [groups, VO]: every tile has its channels inside one thread.
    cout = (tl.arange(0, COUT_P // VO)[:, None] * VO + tl.arange(0, VO)[None, :])[None]
    acc = tl.zeros((BLOCK, COUT_P // VO, VO), dtype=tl.float32)
    for tap in tl.static_range(9):
        src = first * CIN_P + _neighbour(i, j, L, tap // 3 - 1, tap % 3 - 1) * VI
        for g in tl.static_range(CIN_P // VI):
            offs = (src + g * (L * L * VI))[:, None] + tl.arange(0, VI)[None, :]
            if EVEN:
                v = tl.load(inp + offs)
            else:
                v = tl.load(inp + offs, mask=valid[:, None], other=0.0)
            wrow = weight + (tap * CIN_P + g * VI) * COUT_P + cout
            acc = _accumulate(acc, v, wrow, COUT_P, VI, BLOCK)
    if BIAS:
        acc += tl.load(bias + cout)
    if TANH:
        acc = _tanh(acc)
    offs = _offsets(first, i * L + j, L, COUT_P)
    if GATE:
        if EVEN:
            h = tl.load(gate + offs)
        else:
            h = tl.load(gate + offs, mask=valid[:, None, None], other=0.0)
        acc = acc * (1.0 - h * h)
    if EVEN:
        tl.store(out + offs, acc)
    else:
        tl.store(out + offs, acc, mask=valid[:, None, None])


@triton.jit
def _dot_tap(acc, inp, g, first, i, j, valid, L: tl.constexpr, TAP: tl.constexpr, CIN_P, PREC):
    # acc += in[x + off(TAP)]^T g[x] on tensor cores (the block of sites is the K axis).
    rel = _neighbour(i, j, L, TAP // 3 - 1, TAP % 3 - 1)
    a = _load_channels(inp, first, rel, valid, L, CIN_P)
    return tl.dot(tl.trans(a), g, acc, input_precision=PREC)


@triton.jit
def wgrad3x3_dot_kernel(
    inp,
    grad,
    partial_w,
    partial_b,
    n_sites,
    L: tl.constexpr,
    BLOCKS_PER_PROGRAM: tl.constexpr,
    CIN_P: tl.constexpr,
    COUT_P: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Partial sums of dW[tap] = sum_x in[x + off(tap)]^T g[x] over consecutive blocks.

    Each tap is a ``[CIN_P, BLOCK] x [BLOCK, COUT_P]`` product on tensor cores (``tl.dot``
    pads the thin sides itself); a program sweeps consecutive blocks, so the neighbour
    rows of one block are in L1 from the last. Writes ``partial_w[p] = [9, CIN_P, COUT_P]``
    and ``partial_b[p] = sum_x g[x]``.
    """
    p = tl.program_id(0)
    zero = tl.zeros((CIN_P, COUT_P), dtype=tl.float32)
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = zero, zero, zero, zero, zero, zero, zero, zero, zero
    acc_b = tl.zeros((COUT_P,), dtype=tl.float32)
    for k in range(0, BLOCKS_PER_PROGRAM):
        sites = (p * BLOCKS_PER_PROGRAM + k) * BLOCK + tl.arange(0, BLOCK)
        valid = sites < n_sites
        first, i, j = _coordinates(sites, L)
        g = _load_channels(grad, first, i * L + j, valid, L, COUT_P)
        acc_b += tl.sum(g, axis=0)
        a0 = _dot_tap(a0, inp, g, first, i, j, valid, L, 0, CIN_P, PRECISION)
        a1 = _dot_tap(a1, inp, g, first, i, j, valid, L, 1, CIN_P, PRECISION)
        a2 = _dot_tap(a2, inp, g, first, i, j, valid, L, 2, CIN_P, PRECISION)
        a3 = _dot_tap(a3, inp, g, first, i, j, valid, L, 3, CIN_P, PRECISION)
        a4 = _dot_tap(a4, inp, g, first, i, j, valid, L, 4, CIN_P, PRECISION)
        a5 = _dot_tap(a5, inp, g, first, i, j, valid, L, 5, CIN_P, PRECISION)
        a6 = _dot_tap(a6, inp, g, first, i, j, valid, L, 6, CIN_P, PRECISION)
        a7 = _dot_tap(a7, inp, g, first, i, j, valid, L, 7, CIN_P, PRECISION)
        a8 = _dot_tap(a8, inp, g, first, i, j, valid, L, 8, CIN_P, PRECISION)
    size: tl.constexpr = CIN_P * COUT_P
    cout = tl.arange(0, COUT_P)
    tile = partial_w + p * 9 * size + tl.arange(0, CIN_P)[:, None] * COUT_P + cout[None, :]
    tl.store(tile, a0)
    tl.store(tile + size, a1)
    tl.store(tile + 2 * size, a2)
    tl.store(tile + 3 * size, a3)
    tl.store(tile + 4 * size, a4)
    tl.store(tile + 5 * size, a5)
    tl.store(tile + 6 * size, a6)
    tl.store(tile + 7 * size, a7)
    tl.store(tile + 8 * size, a8)
    tl.store(partial_b + p * COUT_P + cout, acc_b)


@triton.jit
def _fma_tap(acc, inp, g, first, i, j, valid, L: tl.constexpr, TAP: tl.constexpr):
    # acc[x] += in[x + off(TAP)] g[x] for a one-channel input.
    rel = _neighbour(i, j, L, TAP // 3 - 1, TAP % 3 - 1)
    a = tl.load(inp + first + rel, mask=valid, other=0.0)
    return acc + a[:, None] * g


@triton.jit
def wgrad3x3_fma_kernel(
    inp,
    grad,
    partial_w,
    partial_b,
    n_sites,
    L: tl.constexpr,
    BLOCKS_PER_PROGRAM: tl.constexpr,
    COUT_P: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Partial sums of dW[tap] = sum_x in[x + off(tap)] g[x] for a one-channel input.

    All nine taps' ``[COUT_P]`` products of a thread's sites stay in its registers and are
    reduced once at the end. Writes ``partial_w[p] = [9, 1, COUT_P]`` and ``partial_b[p]``.
    """
    p = tl.program_id(0)
    zero = tl.zeros((BLOCK, COUT_P), dtype=tl.float32)
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = zero, zero, zero, zero, zero, zero, zero, zero, zero
    acc_b = zero
    for k in range(0, BLOCKS_PER_PROGRAM):
        sites = (p * BLOCKS_PER_PROGRAM + k) * BLOCK + tl.arange(0, BLOCK)
        valid = sites < n_sites
        first, i, j = _coordinates(sites, L)
        g = _load_channels(grad, first, i * L + j, valid, L, COUT_P)
        acc_b += g
        a0 = _fma_tap(a0, inp, g, first, i, j, valid, L, 0)
        a1 = _fma_tap(a1, inp, g, first, i, j, valid, L, 1)
        a2 = _fma_tap(a2, inp, g, first, i, j, valid, L, 2)
        a3 = _fma_tap(a3, inp, g, first, i, j, valid, L, 3)
        a4 = _fma_tap(a4, inp, g, first, i, j, valid, L, 4)
        a5 = _fma_tap(a5, inp, g, first, i, j, valid, L, 5)
        a6 = _fma_tap(a6, inp, g, first, i, j, valid, L, 6)
        a7 = _fma_tap(a7, inp, g, first, i, j, valid, L, 7)
        a8 = _fma_tap(a8, inp, g, first, i, j, valid, L, 8)
    cout = tl.arange(0, COUT_P)
    row = partial_w + p * 9 * COUT_P + cout
    tl.store(row, tl.sum(a0, axis=0))
    tl.store(row + COUT_P, tl.sum(a1, axis=0))
    tl.store(row + 2 * COUT_P, tl.sum(a2, axis=0))
    tl.store(row + 3 * COUT_P, tl.sum(a3, axis=0))
    tl.store(row + 4 * COUT_P, tl.sum(a4, axis=0))
    tl.store(row + 5 * COUT_P, tl.sum(a5, axis=0))
    tl.store(row + 6 * COUT_P, tl.sum(a6, axis=0))
    tl.store(row + 7 * COUT_P, tl.sum(a7, axis=0))
    tl.store(row + 8 * COUT_P, tl.sum(a8, axis=0))
    tl.store(partial_b + p * COUT_P + cout, tl.sum(acc_b, axis=0))


@triton.jit
def coupling_forward_kernel(x, mask, st, y, scale, n_sites, L: tl.constexpr, BLOCK: tl.constexpr):
    """The coupling ``y = mask x + (1 - mask) (x e^s + t)``, (s, t) the conditioner's output.

    Also writes ``scale = (1 - mask) s``, whose sum per sample is the log-det.
    """
    sites = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = sites < n_sites
    xv = tl.load(x + sites, mask=valid, other=0.0)
    m = tl.load(mask + sites % (L * L), mask=valid, other=0.0)
    s, t = tl.split(
        tl.load(st + sites[:, None] * 2 + tl.arange(0, 2)[None, :], mask=valid[:, None], other=0.0)
    )
    s = (1.0 - m) * s
    tl.store(y + sites, m * xv + (1.0 - m) * (xv * tl.exp(s) + t), mask=valid)
    tl.store(scale + sites, s, mask=valid)


@triton.jit
def coupling_backward_kernel(
    grad_y,
    grad_log_det,
    x,
    mask,
    st,
    grad_x,
    grad_st,
    n_sites,
    L: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Backward pass of the coupling: the direct part of ``grad_x``, and ``grad_st``.

    ``grad_st`` is the gradient w.r.t. the conditioner's pre-activation outputs (through its
    final tanh).
    """
    sites = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = sites < n_sites
    gy = tl.load(grad_y + sites, mask=valid, other=0.0)
    gld = tl.load(grad_log_det + sites // (L * L), mask=valid, other=0.0)
    xv = tl.load(x + sites, mask=valid, other=0.0)
    m = tl.load(mask + sites % (L * L), mask=valid, other=0.0)
    two = tl.arange(0, 2)[None, :]
    s, t = tl.split(tl.load(st + sites[:, None] * 2 + two, mask=valid[:, None], other=0.0))
    e = tl.exp((1.0 - m) * s)
    tl.store(grad_x + sites, gy * (m + (1.0 - m) * e), mask=valid)
    gs = (1.0 - m) * (gy * xv * e + gld) * (1.0 - s * s)
    gt = (1.0 - m) * gy * (1.0 - t * t)
    tl.store(grad_st + sites[:, None] * 2 + two, tl.join(gs, gt), mask=valid[:, None])
