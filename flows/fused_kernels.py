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
    mask,
    n_sites,
    L: tl.constexpr,
    CIN_P: tl.constexpr,
    COUT_P: tl.constexpr,
    GATE: tl.constexpr,
    BIAS: tl.constexpr,
    TANH: tl.constexpr,
    MASK_INPUT: tl.constexpr,
    ADD_MASKED: tl.constexpr,
    EVEN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[x] = act(sum W[tap, c] in[x + off(tap), c] + b), times 1 - gate[x]^2 if GATE.

    Channel-blocked tensors (module docstring); ``weight`` is ``[9, CIN_P, COUT_P]``, tap =
    3 (di + 1) + dj + 1. Each thread owns whole sites: it loads a neighbour's channels in
    128-bit vectors and keeps all output channels of its sites in registers.

    Fused ends (``mask`` is ``[L, L]``): MASK_INPUT multiplies a one-channel input by the
    mask as it is read; ADD_MASKED adds ``mask[x]`` times a one-channel result to ``out``
    instead of overwriting it. (The coupling itself stays a separate kernel: computed here,
    its per-site loads and stores pull the whole kernel into other register layouts.)
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
        rel = _neighbour(i, j, L, tap // 3 - 1, tap % 3 - 1)
        src = first * CIN_P + rel * VI
        for g in tl.static_range(CIN_P // VI):
            offs = (src + g * (L * L * VI))[:, None] + tl.arange(0, VI)[None, :]
            if EVEN:
                v = tl.load(inp + offs)
            else:
                v = tl.load(inp + offs, mask=valid[:, None], other=0.0)
            if MASK_INPUT:  # one channel: offs % L^2 is the in-sample site
                # (pointers derived from offs keep one register layout: no shuffles)
                v = v * tl.load(mask + offs % (L * L))
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
    if ADD_MASKED:  # one channel: offs are the sites
        m = tl.load(mask + offs % (L * L))
        acc = tl.load(out + offs, mask=valid[:, None, None], other=0.0) + m * acc
    if EVEN:
        tl.store(out + offs, acc)
    else:
        tl.store(out + offs, acc, mask=valid[:, None, None])


#: Ways of wgrad3x3_kernel: per-site FMAs (one-channel input, times a mask with FMA_MASKED),
#: tensor cores gathering the input per tap (DOT) or the gradient (DUAL).
FMA, FMA_MASKED, DOT, DUAL = 0, 1, 2, 3


@triton.jit
def _wgrad_tap(
    acc, inp, grad, mask, own, first, i, j, valid, L: tl.constexpr, TAP: tl.constexpr,
    CIN_P: tl.constexpr, COUT_P: tl.constexpr, WAY: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    # Adds tap TAP's products of in[x + off] and g[x] (see wgrad3x3_kernel for ``own``).
    if WAY == 3:  # DUAL: sum_y in[y]^T g[y - off], the thin gradient gathered per tap
        rel = _neighbour(i, j, L, 1 - TAP // 3, 1 - TAP % 3)
        g = _load_channels(grad, first, rel, valid, L, COUT_P)
        acc = tl.dot(own, g, acc, input_precision=PREC)
    else:
        rel = _neighbour(i, j, L, TAP // 3 - 1, TAP % 3 - 1)
        if WAY == 2:  # DOT
            a = _load_channels(inp, first, rel, valid, L, CIN_P)
            acc = tl.dot(tl.trans(a), own, acc, input_precision=PREC)
        else:
            a = tl.load(inp + first + rel, mask=valid, other=0.0)
            if WAY == 1:  # FMA_MASKED
                a = a * tl.load(mask + rel)
            acc = acc + a[:, None] * own
    return acc


@triton.jit
def _tap_sum(acc, DOTS: tl.constexpr):
    # A tap's [CIN_P, COUT_P] partial sum (the FMA path's acc still has its sites).
    if not DOTS:
        acc = tl.sum(acc, axis=0)[None, :]
    return acc


@triton.jit
def wgrad3x3_kernel(
    inp,
    grad,
    mask,
    partial_w,
    n_sites,
    L: tl.constexpr,
    BLOCKS_PER_PROGRAM: tl.constexpr,
    CIN_P: tl.constexpr,
    COUT_P: tl.constexpr,
    WAY: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Partial sums of dW[tap] = sum_x in[x + off(tap)]^T g[x] over consecutive blocks.

    A program sweeps consecutive blocks, so the neighbour rows of one block are in L1 from
    the last, and sums all nine taps at once; WAY is one of the constants above. With DOT
    and DUAL each tap is a ``[CIN_P, BLOCK] x [BLOCK, COUT_P]`` product on tensor cores
    (``tl.dot`` pads the thin sides itself). The tile gathered per tap goes through a
    layout conversion, so DUAL gathers the narrower side, the gradient (``sum_y in[y]^T
    g[y - off]``), and converts the input once per block. With FMA the input has one
    channel (times ``mask`` with FMA_MASKED) and the nine taps' ``[COUT_P]`` products of a
    thread's sites stay in its registers until one reduction at the end. Writes
    ``partial_w[:, p]``: the ``[COUT_P, CIN_P, 9]`` weight sums in torch's order, then
    ``sum_x g[x]`` (``COUT_P``), so one sum along contiguous memory finishes both.
    """
    p = tl.program_id(0)
    programs = tl.num_programs(0)
    DOTS: tl.constexpr = WAY >= 2
    if DOTS:
        zero = tl.zeros((CIN_P, COUT_P), dtype=tl.float32)
        acc_b = tl.zeros((COUT_P,), dtype=tl.float32)
    else:
        zero = tl.zeros((BLOCK, COUT_P), dtype=tl.float32)
        acc_b = zero
    accs = (zero, zero, zero, zero, zero, zero, zero, zero, zero)  # one per tap
    for k in range(0, BLOCKS_PER_PROGRAM):
        sites = (p * BLOCKS_PER_PROGRAM + k) * BLOCK + tl.arange(0, BLOCK)
        valid = sites < n_sites
        first, i, j = _coordinates(sites, L)
        g = _load_channels(grad, first, i * L + j, valid, L, COUT_P)
        if DOTS:
            acc_b += tl.sum(g, axis=0)
        else:
            acc_b += g
        # ``own``: the operand every tap shares (the input's with DUAL, else the gradient's)
        if WAY == 3:
            own = tl.trans(_load_channels(inp, first, i * L + j, valid, L, CIN_P))
        else:
            own = g
        for tap in tl.static_range(9):
            acc = _wgrad_tap(
                accs[tap], inp, grad, mask, own, first, i, j, valid, L, tap, CIN_P, COUT_P, WAY,
                PRECISION,
            )  # fmt: skip
            accs = accs[:tap] + (acc,) + accs[tap + 1 :]
    # torch's weight order [COUT_P, CIN_P, 9 taps] (so the summed result needs no copy),
    # then the bias: one reduction for all
    cout = tl.arange(0, COUT_P)
    tile = partial_w + ((cout[None, :] * CIN_P + tl.arange(0, CIN_P)[:, None]) * 9) * programs + p
    for tap in tl.static_range(9):
        tl.store(tile + tap * programs, _tap_sum(accs[tap], DOTS))
    bias_row = partial_w + (9 * CIN_P * COUT_P + cout) * programs + p
    if DOTS:
        tl.store(bias_row, acc_b)
    else:
        tl.store(bias_row, tl.sum(acc_b, axis=0))


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
