"""The fused Triton coupling against PyTorch's, run by ``test_fused.py`` in a subprocess.

On a machine with CUDA the kernels run compiled on the GPU; elsewhere under
``TRITON_INTERPRET=1`` (which must be set before Triton is imported, hence the subprocess).
"""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from flows import fused
from flows.models import phi4_coupling_flow
from flows.transforms import AffineCoupling, ConvNet, checkerboard

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The references are float32: cuDNN would otherwise round its products to TF32 on a GPU.
torch.backends.cudnn.allow_tf32 = False
# The tensor-core weight gradient (layers with >= 8 channels in and out) multiplies in TF32 on
# a GPU, as cuDNN does by default: about 1e-3 relative there, float32 in the interpreter.
WGRAD_TOL = 2e-3 if DEVICE == "cuda" else 1e-4
pytestmark = pytest.mark.skipif(
    not fused.available(DEVICE), reason="needs CUDA or TRITON_INTERPRET=1, and triton"
)


def _layer(L, hidden, parity=0, seed=0):  # noqa: N803
    torch.manual_seed(seed)
    layer = AffineCoupling(checkerboard((L, L), parity), ConvNet(1, hidden, 2, 3))
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)  # far from the identity
    return layer.to(DEVICE)


def _grads(layer, x, kernels):
    layer.kernels = kernels
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    y, log_det = layer(x)
    weights = torch.arange(1, x.shape[0] + 1, device=x.device, dtype=x.dtype)
    (y.pow(2).sum() + (log_det * weights).sum()).backward()
    return [y.detach(), log_det.detach(), x.grad] + [p.grad for p in layer.net.parameters()]


@pytest.mark.parametrize(
    "L, hidden, batch, parity",
    [
        (6, [8, 8], 3, 0),
        (4, [3], 2, 1),
        (8, [8, 16, 5], 2, 0),
        (2, [8, 8], 2, 1),
        (10, [1], 1, 0),
        (5, [], 2, 1),  # one convolution: reads x through the mask
    ],
)
def test_forward_and_gradients_match_pytorch(L, hidden, batch, parity):  # noqa: N803
    layer = _layer(L, hidden, parity)
    x = torch.randn(batch, L, L, device=DEVICE)
    expected = _grads(layer, x, "torch")
    got = _grads(layer, x, "triton")
    for e, g in zip(expected, got, strict=True):
        tol = WGRAD_TOL if e.dim() == 4 else 1e-4  # conv weights: see WGRAD_TOL
        torch.testing.assert_close(g, e, rtol=tol, atol=tol * e.abs().max().item())


def test_side_stream_weight_gradients_equal_in_line_ones_and_replay_in_a_cuda_graph(monkeypatch):
    layer = _layer(6, [8, 8], parity=1)
    x = torch.randn(16, 6, 6, device=DEVICE)
    monkeypatch.setattr(fused, "OVERLAP_WGRAD", False)
    in_line = _grads(layer, x, "triton")
    monkeypatch.setattr(fused, "OVERLAP_WGRAD", True)
    overlapped = _grads(layer, x, "triton")
    for a, b in zip(in_line, overlapped, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # same kernels, same order: bitwise
    if DEVICE != "cuda":
        return  # no streams in the interpreter; on a GPU the trainer captures the step
    weights = torch.arange(1, x.shape[0] + 1, device=DEVICE, dtype=x.dtype)
    graph, static_x = torch.cuda.CUDAGraph(), x.clone()
    with torch.cuda.graph(graph):  # grads exist: the captured backward accumulates into them
        y, log_det = layer(static_x)
        (y.pow(2).sum() + (log_det * weights).sum()).backward()
    layer.zero_grad(set_to_none=False)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(y, in_line[0], rtol=0, atol=0)
    for p, expected in zip(layer.net.parameters(), in_line[3:], strict=True):
        torch.testing.assert_close(p.grad, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "L, cin, cout", [(5, 1, 8), (6, 8, 2), (3, 3, 5), (7, 8, 1), (4, 16, 8), (6, 8, 8)]
)
def test_convolution_and_weight_gradient_match_circular_conv2d(L, cin, cout):  # noqa: N803
    torch.manual_seed(1)
    x = torch.randn(2, cin, L, L, device=DEVICE, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, device=DEVICE, requires_grad=True)
    b = torch.randn(cout, device=DEVICE, requires_grad=True)
    y = torch.tanh(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, b))
    upstream = torch.randn_like(y)
    y.backward(upstream)
    inp = fused.to_blocked(x.detach())
    got = fused.conv3x3(inp, fused._pack_forward(w.detach()), fused._pad_bias(b), tanh=True)
    torch.testing.assert_close(got, fused.to_blocked(y.detach()), rtol=1e-5, atol=1e-5)
    pre = fused.to_blocked(upstream * (1 - y.detach() ** 2))  # pre-activation gradient
    dw, db = fused.wgrad3x3(inp, pre, cin, cout)
    torch.testing.assert_close(dw, w.grad, rtol=WGRAD_TOL, atol=WGRAD_TOL * w.grad.abs().max())
    torch.testing.assert_close(db, b.grad, rtol=1e-4, atol=1e-4)
    dx = fused.conv3x3(pre, fused._pack_transposed(w.detach()))
    torch.testing.assert_close(dx, fused.to_blocked(x.grad), rtol=1e-4, atol=1e-4)
    # The output gate: the input gradient comes out through the tanh below it.
    below = fused.to_blocked(torch.tanh(torch.randn_like(x)))
    gated = fused.conv3x3(pre, fused._pack_transposed(w.detach()), gate=below)
    expected = fused.to_blocked(x.grad) * (1 - below**2)
    torch.testing.assert_close(gated, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gather", ["input", "gradient", "narrow"])
@pytest.mark.parametrize("cin, cout", [(8, 8), (8, 2), (3, 5)])
def test_weight_gradient_is_the_same_whichever_side_is_gathered(monkeypatch, gather, cin, cout):
    monkeypatch.setattr(fused, "WGRAD_GATHER", gather)
    torch.manual_seed(4)
    x = torch.randn(2, cin, 5, 5, device=DEVICE)
    g = torch.randn(2, cout, 5, 5, device=DEVICE)
    w = torch.zeros(cout, cin, 3, 3, device=DEVICE, requires_grad=True)
    F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w).backward(g)
    dw, _ = fused.wgrad3x3(fused.to_blocked(x), fused.to_blocked(g), cin, cout)
    torch.testing.assert_close(dw, w.grad, rtol=WGRAD_TOL, atol=WGRAD_TOL * w.grad.abs().max())


def test_weight_gradient_names_the_valid_gather_settings(monkeypatch):
    monkeypatch.setattr(fused, "WGRAD_GATHER", "both")
    with pytest.raises(ValueError, match="'narrow', 'input' or 'gradient', not 'both'"):
        fused.wgrad3x3(_blocked(8), _blocked(8), 8, 8)


def test_fused_ends_match_their_unfused_definitions():
    torch.manual_seed(3)
    L = 6  # noqa: N806
    x = torch.randn(3, L, L, device=DEVICE)
    mask = checkerboard((L, L), 1).to(DEVICE)
    masked = (x * mask)[:, None]

    def conv(inp, w, b=None):
        return F.conv2d(F.pad(inp, (1, 1, 1, 1), mode="circular"), w, b)

    # The first convolution reads x through the mask.
    w1, b1 = torch.randn(8, 1, 3, 3, device=DEVICE), torch.randn(8, device=DEVICE)
    got = fused.conv3x3(
        x[:, None, :, :, None], fused._pack_forward(w1), fused._pad_bias(b1), tanh=True,
        input_mask=mask,
    )  # fmt: skip
    torch.testing.assert_close(got, fused.to_blocked(torch.tanh(conv(masked, w1, b1))))
    g = torch.randn(3, 8, L, L, device=DEVICE)
    dw, db = fused.wgrad3x3(x[:, None, :, :, None], fused.to_blocked(g), 1, 8, input_mask=mask)
    w = w1.clone().requires_grad_(True)
    conv(masked, w).backward(g)
    torch.testing.assert_close(dw, w.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(db, g.sum((0, 2, 3)), rtol=1e-4, atol=1e-4)
    # The last input gradient is added, on frozen sites only, to x's direct gradient.
    base = torch.randn(3, L, L, device=DEVICE)
    expected = base + mask * conv(g, w1.flip(2, 3).transpose(0, 1))[:, 0]
    out = fused.conv3x3_add_masked(fused.to_blocked(g), fused._pack_transposed(w1), base, mask)
    assert out is base
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fused.conv3x3(_blocked(8), _packed(8, 8), input_mask=_mask()), "one-channel"),
        (lambda: fused.wgrad3x3(_blocked(8), _blocked(8), 8, 8, _mask()), "one-channel"),
        (
            lambda: fused.conv3x3_add_masked(_blocked(8), _packed(8, 2), _x(), _mask()),
            "one output channel",
        ),
    ],
)
def test_fused_ends_refuse_shapes_they_do_not_handle(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _blocked(c):
    return fused.to_blocked(torch.randn(2, c, 4, 4, device=DEVICE))


def _packed(cin, cout):
    return fused._pack_forward(torch.randn(cout, cin, 3, 3, device=DEVICE))


def _mask():
    return checkerboard((4, 4), 0).to(DEVICE)


def _x():
    return torch.randn(2, 4, 4, device=DEVICE)


def test_blocked_layout_round_trip():
    t = torch.randn(2, 6, 5, 5, device=DEVICE)
    blocked = fused.to_blocked(t)
    assert blocked.shape == fused.blocked_shape(2, 5, 6) == (2, 2, 5, 5, 4)
    assert (fused.from_blocked(blocked, 8)[:, 6:] == 0).all()  # padded channels are zero
    torch.testing.assert_close(fused.from_blocked(blocked, 6), t)
    # Four channels of a site are contiguous: one 128-bit vector.
    torch.testing.assert_close(blocked[1, 1, 3, 2, :2], t[1, 4:6, 3, 2])


def test_log_det_equals_autograd_jacobian():
    layer = _layer(4, [4], parity=1)
    layer.kernels = "triton"
    x = torch.randn(1, 4, 4, device=DEVICE)
    jac = torch.autograd.functional.jacobian(
        lambda v: layer(v.view(1, 4, 4))[0].flatten(), x.flatten()
    )
    _, log_det = layer(x)
    torch.testing.assert_close(
        log_det[0], torch.slogdet(jac.double())[1].float(), rtol=1e-4, atol=1e-4
    )


def test_fused_forward_is_inverted_by_pytorch_inverse():
    torch.manual_seed(2)
    flow = phi4_coupling_flow(6, n_layers=2, hidden=[8, 8], kernels="triton").to(DEVICE)
    x, log_q = flow.sample(8)
    for layer in flow.transform.layers:
        layer.kernels = "torch"
    torch.testing.assert_close(flow.log_prob(x), log_q, rtol=1e-4, atol=1e-3)


def test_kernels_triton_refuses_float64_with_the_fix():
    layer = _layer(4, [4]).double()
    layer.kernels = "triton"
    with pytest.raises(RuntimeError, match="float32.*kernels='auto'"):
        layer(torch.randn(2, 4, 4, device=DEVICE, dtype=torch.float64))
    layer.kernels = "auto"  # falls back to PyTorch
    y, _ = layer(torch.randn(2, 4, 4, device=DEVICE, dtype=torch.float64))
    assert y.dtype == torch.float64


def test_index_range_guard_names_the_fix():
    with pytest.raises(ValueError, match="smaller batch or kernels='torch'"):
        fused._check_index_range(2**28, 8)


def _data_parallel_rank(rank: int, port: int, kernels: str, out: dict) -> None:
    import torch.distributed as dist

    from flows.config import make_config
    from flows.train import Trainer

    # gloo lets two ranks share one GPU (NCCL refuses that) or run on the CPU.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        values = {"L": 4, "n_layers": 2, "batch_size": 8, "steps": 3, "device": DEVICE}
        trainer = Trainer(make_config({**values, "kernels": kernels}), rank, 2)
        losses = [float(trainer.train_step()[0]) for _ in range(3)]
        params = torch.cat([p.detach().reshape(-1) for p in trainer.flow.parameters()])
        out[rank] = (losses, params.cpu().tolist())
    finally:
        dist.destroy_process_group()


def test_data_parallel_ranks_stay_in_step_with_fused_kernels():
    import torch.multiprocessing as mp

    from tests.hub import free_port

    runs = {}
    for kernels in ("triton", "torch"):
        port = free_port()
        with mp.get_context("spawn").Manager() as manager:
            out = manager.dict()
            mp.start_processes(
                _data_parallel_rank, (port, kernels, out), nprocs=2, start_method="spawn"
            )
            runs[kernels] = dict(out)
    for kernels, ranks in runs.items():
        (losses0, params0), (losses1, params1) = ranks[0], ranks[1]
        # Each rank draws its own prior samples, so losses differ; the averaged gradients
        # must still leave every rank with the very same weights.
        assert losses0 != losses1, kernels
        assert params0 == params1, f"{kernels}: ranks drifted apart"
    fused_params, torch_params = (torch.tensor(runs[k][0][1]) for k in ("triton", "torch"))
    torch.testing.assert_close(fused_params, torch_params, rtol=WGRAD_TOL, atol=WGRAD_TOL)
