"""One contract for every invertible layer: inverse, log-det = autograd, dtype, save/load."""

import io
import math

import pytest
import torch

from flows.actions import gauge_transform, topological_charge, wrap
from flows.gauge import GaugeEquivariantCoupling, NCPMixture, stripe_masks
from flows.models import (
    free_field_flow,
    phi4_coupling_flow,
    u1_equivariant_flow,
)
from flows.transforms import AffineCoupling, Composed, ConvNet, LinearGaussian, checkerboard

L = 4


def _randomize(module):
    # Non-trivial weights: freshly built layers may be near the identity.
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


def affine():
    return AffineCoupling(checkerboard((L, L), 0), ConvNet(1, [4], 2, 3))


def linear():
    return LinearGaussian((L, L))


def gauge(mu, offset):
    return lambda: GaugeEquivariantCoupling(L, mu=mu, offset=offset, hidden=[4], n_mix=3)


def scalar_input(n, dtype):
    return torch.randn(n, L, L, dtype=dtype)


def link_input(n, dtype):
    return (torch.rand(n, 2, L, L, dtype=dtype) * 2 - 1) * math.pi


LAYERS = [
    pytest.param(affine, scalar_input, id="affine-coupling"),
    pytest.param(linear, scalar_input, id="linear-gaussian"),
    pytest.param(
        lambda: Composed([affine(), AffineCoupling(checkerboard((L, L), 1), ConvNet(1, [4], 2))]),
        scalar_input,
        id="composed-affine",
    ),
    *[
        pytest.param(gauge(mu, off), link_input, id=f"gauge-mu{mu}-off{off}")
        for mu in (0, 1)
        for off in (0, 3)
    ],
]


def _same_angles(a, b):
    return wrap(a - b).abs().max().item()


def _distance(x, y, inputs):
    return _same_angles(x, y) if inputs is link_input else (x - y).abs().max().item()


@pytest.mark.parametrize("make, inputs", LAYERS)
def test_inverse_undoes_forward_and_log_dets_cancel(make, inputs):
    torch.manual_seed(0)
    layer = _randomize(make()).double()
    x = inputs(5, torch.float64)
    y, ld_fwd = layer(x)
    x_back, ld_inv = layer.inverse(y)
    assert _distance(x, x_back, inputs) < 1e-9
    torch.testing.assert_close(
        ld_fwd + ld_inv, torch.zeros(5, dtype=torch.float64), atol=1e-9, rtol=0
    )
    assert ld_fwd.shape == (5,)
    assert ld_fwd.abs().max() > 1e-3  # not the identity: the test would be empty otherwise


@pytest.mark.parametrize("make, inputs", LAYERS)
def test_log_det_equals_autograd_slogdet(make, inputs):
    torch.manual_seed(1)
    layer = _randomize(make()).double()
    x = inputs(2, torch.float64)
    for sample in x:
        shape = sample.shape

        def f(flat, shape=shape):
            return layer(flat.view(1, *shape))[0].flatten()

        jac = torch.autograd.functional.jacobian(f, sample.flatten())
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(layer(sample[None])[1][0], logabsdet, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("make, inputs", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_respects_dtype(make, inputs, dtype):
    layer = make().to(dtype)
    x = inputs(3, dtype)
    y, ld = layer(x)
    assert y.dtype == dtype and ld.dtype == dtype
    assert y.device == x.device and ld.device == x.device
    x2, ld2 = layer.inverse(y)
    assert x2.dtype == dtype and ld2.dtype == dtype


@pytest.mark.parametrize("make, inputs", LAYERS)
def test_save_load_round_trip(make, inputs):
    torch.manual_seed(2)
    layer = _randomize(make()).double()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = make().double()
    fresh.load_state_dict(torch.load(buffer))
    x = inputs(3, torch.float64)
    torch.testing.assert_close(layer(x), fresh(x))


@pytest.mark.gpu
@pytest.mark.parametrize("make, inputs", LAYERS)
def test_runs_on_cuda(make, inputs):
    layer = _randomize(make()).cuda()
    x = inputs(4, torch.float32).cuda()
    y, ld = layer(x)
    assert y.is_cuda and ld.is_cuda
    x_back, _ = layer.inverse(y)
    assert _distance(x, x_back, inputs) < 1e-4


@pytest.mark.parametrize("mu", [0, 1])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_stripe_masks_partition_plaquettes(mu, offset):
    m = stripe_masks(8, mu, offset)
    torch.testing.assert_close(m["active"] + m["frozen"] + m["passive"], torch.ones(8, 8))
    # every updated link is direction mu, one per active plaquette
    assert m["links"][1 - mu].sum() == 0
    assert m["links"][mu].sum() == m["active"].sum() == 16


def test_stripe_masks_reject_bad_lattice():
    with pytest.raises(ValueError, match="divisible by 4"):
        stripe_masks(6, 0, 0)
    with pytest.raises(ValueError, match="mu must be 0 or 1"):
        stripe_masks(8, 2, 0)


def test_gauge_layers_commute_with_gauge_transformations():
    torch.manual_seed(3)
    flow = _randomize(u1_equivariant_flow(8, n_layers=8, hidden=[4])).double()
    links = (torch.rand(4, 2, 8, 8, dtype=torch.float64) * 2 - 1) * math.pi
    alpha = torch.rand(4, 8, 8, dtype=torch.float64) * 2 * math.pi
    y_then_g, ld1 = flow.transform(links)
    g_then_y, ld2 = flow.transform(gauge_transform(links, alpha))
    assert _same_angles(gauge_transform(y_then_g, alpha), g_then_y) < 1e-9
    torch.testing.assert_close(ld1, ld2)


def test_topological_charge_is_integer_on_any_configuration():
    torch.manual_seed(4)
    links = link_input(64, torch.float64) * 3  # far outside [-pi, pi): still integer
    q = topological_charge(links)
    torch.testing.assert_close(q, q.round(), atol=1e-9, rtol=0)
    assert q.abs().max() >= 1  # random links do carry charge


def test_ncp_mixture_is_a_monotone_circle_map():
    torch.manual_seed(5)
    theta = torch.linspace(-math.pi, math.pi - 1e-6, 1001, dtype=torch.float64)
    log_a = torch.randn(1001, 3, dtype=torch.float64)[:1].expand(1001, 3)
    value, log_deriv = NCPMixture().forward(theta, log_a, torch.zeros(1001, dtype=torch.float64))
    assert torch.all(torch.diff(value) > 0)
    # the derivative integrates to 2 pi: the map covers the circle exactly once
    total = torch.trapezoid(torch.exp(log_deriv), theta)
    assert abs(total.item() - 2 * math.pi) < 1e-3


def test_linear_flow_exact_for_free_field_covariance():
    flow = free_field_flow(4, m2=0.7).double()
    x, _ = flow.sample(200000, generator=torch.Generator().manual_seed(6))
    cov = torch.einsum("bi,bj->ij", x.flatten(1), x.flatten(1)) / x.shape[0]
    # exact covariance (2A)^-1 from the action's quadratic form
    from flows.actions import Phi4Action

    hess = torch.autograd.functional.hessian(
        lambda v: Phi4Action(0.7, 0.0)(v.view(1, 4, 4))[0], torch.zeros(16, dtype=torch.float64)
    )
    torch.testing.assert_close(cov, torch.linalg.inv(hess), atol=0.01, rtol=0)


def test_flow_sample_and_log_prob_agree():
    torch.manual_seed(7)
    for flow in (phi4_coupling_flow(4, 4, [4]), u1_equivariant_flow(4, 4, [4])):
        flow = _randomize(flow).double()
        x, log_q = flow.sample(6, generator=torch.Generator().manual_seed(8))
        assert x.dtype == torch.float64
        torch.testing.assert_close(flow.log_prob(x), log_q, atol=1e-8, rtol=1e-8)
