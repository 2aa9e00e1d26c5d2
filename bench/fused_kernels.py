"""Per-kernel times of the fused phi^4 coupling (``flows.fused``) and sweeps of its constants.

    python bench/fused_kernels.py [--device cuda] [--L 64] [--batch 4096]
    python bench/fused_kernels.py --sweep wgrad|gather|conv|thin|overlap [...] [--device cuda]

Without ``--sweep``: every kernel call of one coupling layer (hidden [8, 8], the reference
architecture) on random activations, ms per call and the bandwidth that implies for the
bytes the call must move at least (each input and output once), then the whole layer
forward + backward. ``--sweep`` sets the launch constants of ``flows.fused`` in this
process to each candidate, times the calls they affect and marks the fastest; nothing is
written: copy a winner into ``flows/fused.py`` and confirm it with ``bench/flows.py
throughput``.

On CUDA calls are timed with ``triton.testing.do_bench`` (median of repeated calls, L2
flushed between them). Elsewhere the kernels run in Triton's CPU interpreter (set
``TRITON_INTERPRET=1``) and the figures only show that the script works.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows import fused  # noqa: E402
from flows.transforms import AffineCoupling, ConvNet, checkerboard  # noqa: E402

#: Candidates of each sweep: the constants of flows.fused it sets, and their values.
SWEEPS: dict[str, tuple[tuple[str, ...], list[tuple]]] = {
    "wgrad": (
        ("WGRAD_PROGRAMS", "DOT_BLOCK"),
        list(itertools.product([1024, 2048, 4096], [32, 64, 128])),
    ),
    "gather": (("WGRAD_GATHER",), [("narrow",), ("input",), ("gradient",)]),
    "conv": (("BLOCK", "CONV_WARPS"), [(512, 4), (256, 2), (256, 4), (1024, 4), (1024, 8)]),
    "thin": (("THIN_BLOCK",), [(256,), (128,), (512,)]),
    "overlap": (("OVERLAP_WGRAD",), [(True,), (False,)]),
}
#: Which calls each sweep times (names of ``calls()``).
SWEPT_CALLS = {
    "wgrad": ("wgrad 8->8", "wgrad 8->2"),
    "gather": ("wgrad 8->8", "wgrad 8->2"),
    "conv": ("conv 8->8", "conv 8->2", "dgrad 8->8", "dgrad 8->1 +=x"),
    "thin": ("conv 1->8 masked", "dgrad 2->8"),
    "overlap": ("layer fwd+bwd",),
}


def calls(L: int, batch: int, device: torch.device) -> dict[str, tuple[Callable[[], object], int]]:  # noqa: N803
    """Each kernel call of a coupling layer: a function running it, and its minimum bytes."""
    torch.manual_seed(0)
    n = batch * L * L

    def act(c: int) -> torch.Tensor:
        return fused.to_blocked(torch.tanh(torch.randn(batch, c, L, L, device=device)))

    def packed(cout: int, cin: int, transposed: bool = False) -> torch.Tensor:
        w = torch.randn(cout, cin, 3, 3, device=device) * 0.3
        return fused._pack_transposed(w) if transposed else fused._pack_forward(w)

    x = torch.randn(batch, L, L, device=device)
    x1 = x[:, None, :, :, None]
    mask = checkerboard((L, L), 1).to(device)
    h8, g8, g2 = act(8), act(8), act(2)
    b8, b2 = torch.randn(8, device=device), torch.randn(2, device=device)
    w18, w88, w82 = packed(8, 1), packed(8, 8), packed(2, 8)
    t28, t88, t81 = packed(2, 8, True), packed(8, 8, True), packed(8, 1, True)
    grad_x = torch.zeros_like(x)
    f = 4  # bytes per float32
    return {
        "conv 1->8 masked": (
            lambda: fused.conv3x3(x1, w18, b8, tanh=True, input_mask=mask),
            (1 + 8) * f * n,
        ),
        "conv 8->8": (lambda: fused.conv3x3(h8, w88, b8, tanh=True), (8 + 8) * f * n),
        "conv 8->2": (lambda: fused.conv3x3(h8, w82, b2, tanh=True), (8 + 2) * f * n),
        "dgrad 2->8": (lambda: fused.conv3x3(g2, t28, gate=h8), (2 + 8 + 8) * f * n),
        "dgrad 8->8": (lambda: fused.conv3x3(g8, t88, gate=h8), (8 + 8 + 8) * f * n),
        "dgrad 8->1 +=x": (
            lambda: fused.conv3x3_add_masked(g8, t81, grad_x, mask),
            (8 + 1 + 1) * f * n,
        ),
        "wgrad 1->8 masked": (
            lambda: fused.wgrad3x3(x1, g8, 1, 8, input_mask=mask),
            (1 + 8) * f * n,
        ),
        "wgrad 8->8": (lambda: fused.wgrad3x3(h8, g8, 8, 8), (8 + 8) * f * n),
        "wgrad 8->2": (lambda: fused.wgrad3x3(h8, g2, 8, 2), (8 + 2) * f * n),
    }


def per_call_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds per call of ``fn`` (median on CUDA, a short mean in the interpreter)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=5, rep=40))
    fn()
    start = time.perf_counter()
    for _ in range(2):
        fn()
    return (time.perf_counter() - start) / 2 * 1e3


def layer_ms(L: int, batch: int, device: torch.device) -> float:  # noqa: N803
    """Forward + backward of one fused coupling layer, ms per call."""
    return per_call_ms(layer_step(L, batch, device), device)


def layer_step(L: int, batch: int, device: torch.device) -> Callable[[], None]:  # noqa: N803
    """A function running forward + backward of one fused coupling layer."""
    torch.manual_seed(0)
    coupling = AffineCoupling(checkerboard((L, L), 1), ConvNet(1, [8, 8], 2)).to(device)
    coupling.kernels = "triton"
    x = torch.randn(batch, L, L, device=device, requires_grad=True)

    def step() -> None:
        y, log_det = coupling(x)
        (y.sum() + log_det.sum()).backward()

    return step


def table(L: int, batch: int, device: torch.device) -> dict[str, float]:  # noqa: N803
    """Print and return ms per call of every kernel call, then of the whole layer."""
    results = {}
    total = 0.0
    print(f"\nfused coupling kernels, L={L}, batch {batch}: ms per call, GB/s of minimum traffic")
    for name, (fn, nbytes) in calls(L, batch, device).items():
        ms = per_call_ms(fn, device)
        results[name] = ms
        total += ms
        print(f"  {name:18s} {ms:8.3f} ms {nbytes / ms / 1e6:9.0f} GB/s", flush=True)
    print(f"  {'sum':18s} {total:8.3f} ms")
    results["layer fwd+bwd"] = layer_ms(L, batch, device)
    print(f"  {'layer fwd+bwd':18s} {results['layer fwd+bwd']:8.3f} ms (the calls above, the "
          "coupling kernels, weight packing and sums)")  # fmt: skip
    return results


def sweep(kind: str, L: int, batch: int, device: torch.device) -> dict[tuple, float]:  # noqa: N803
    """Time the calls ``kind`` affects for each candidate; print the sums, mark the fastest."""
    names, candidates = SWEEPS[kind]
    saved = {name: getattr(fused, name) for name in names}
    every = {**calls(L, batch, device), "layer fwd+bwd": (layer_step(L, batch, device), 0)}
    selected = {k: v for k, v in every.items() if k in SWEPT_CALLS[kind]}
    sums: dict[tuple, float] = {}
    print(f"\nsweep {kind}: {', '.join(names)}; ms per call of {', '.join(selected)}")
    try:
        for values in candidates:
            for name, value in zip(names, values, strict=True):
                setattr(fused, name, value)
            times = [per_call_ms(fn, device) for fn, _ in selected.values()]
            sums[values] = sum(times)
            shown = "  ".join(f"{t:.3f}" for t in times)
            print(f"  {str(values):16s} {shown}   sum {sums[values]:.3f}", flush=True)
    finally:
        for name, value in saved.items():
            setattr(fused, name, value)
    best = min(sums, key=sums.__getitem__)
    shipped = tuple(saved.values())
    print(f"  fastest: {best} ({sums[best]:.3f} ms); shipped {shipped}"
          + (f" ({sums[shipped]:.3f} ms)" if shipped in sums else ""))  # fmt: skip
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--L", type=int, default=None, help="lattice extent (64; cpu 4)")
    parser.add_argument("--batch", type=int, default=None, help="batch (4096; cpu 2)")
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default=None, nargs="+")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not fused.available(device):
        parser.error(
            f"the fused kernels cannot run on {device.type}: they need CUDA and triton, "
            "or TRITON_INTERPRET=1 for the CPU interpreter"
        )
    small = device.type != "cuda"
    L, batch = args.L or (4 if small else 64), args.batch or (2 if small else 4096)  # noqa: N806
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(f"torch {torch.__version__}, {device.type} ({hardware})")
    if args.sweep:
        for kind in args.sweep:
            sweep(kind, L, batch, device)
    else:
        table(L, batch, device)


if __name__ == "__main__":
    main()
