"""Fused Triton coupling kernels: selection rules here, the kernels themselves in a subprocess.

The kernel cases live in ``fused_cases.py``: Triton reads ``TRITON_INTERPRET`` when it is
imported, so they run in a fresh interpreter with it set (CPU), or compiled on a GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from flows import fused
from flows.config import ConfigError, make_config
from flows.transforms import AffineCoupling, ConvNet, checkerboard

CASES = Path(__file__).with_name("fused_cases.py")
ROOT = Path(__file__).resolve().parents[3]


def _run_cases(env_extra: dict[str, str]) -> None:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", str(CASES)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]


@pytest.mark.slow
def test_fused_kernels_in_the_triton_interpreter():
    pytest.importorskip("triton")
    _run_cases({"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""})


@pytest.mark.gpu
def test_fused_kernels_compiled_on_cuda():
    assert torch.cuda.is_available()
    _run_cases({"TRITON_INTERPRET": "0"})


@pytest.mark.parametrize(
    "net, reason",
    [
        (ConvNet(1, [8, 8], 2, 3), None),
        (ConvNet(1, [3, 16, 5], 2, 3), None),
        (ConvNet(1, [8], 2, 5), "circular 3x3"),
        (ConvNet(1, [8], 2, 3, final_tanh=False), "tanh after every convolution"),
        (ConvNet(1, [64], 2, 3), "at most 32 channels"),
        (ConvNet(2, [8], 2, 3), "1 channel to 2"),
        (ConvNet(1, [8], 3, 3), "1 channel to 2"),
        (nn.Sequential(nn.Linear(2, 2)), "no 2D convolutions"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh()), "circular 3x3"),
    ],
)
def test_supports_names_what_the_fused_path_cannot_run(net, reason):
    got = fused.supports(net)
    assert got == reason if reason is None else reason in got


def test_unknown_kernels_value_is_refused():
    with pytest.raises(ValueError, match="kernels must be one of"):
        AffineCoupling(checkerboard((4, 4), 0), ConvNet(1, [4], 2), kernels="cuda")
    with pytest.raises(ConfigError, match="kernels must be one of"):
        make_config({"kernels": "fast"})
    assert make_config({}).kernels == "auto"


def test_triton_on_cpu_without_the_interpreter_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layer = AffineCoupling(checkerboard((4, 4), 0), ConvNet(1, [4], 2), kernels="triton")
    with pytest.raises(RuntimeError, match="not available on cpu.*kernels='auto'"):
        layer(torch.randn(2, 4, 4))
    layer.kernels = "auto"  # the PyTorch path
    y, log_det = layer(torch.randn(2, 4, 4))
    assert y.shape == (2, 4, 4) and log_det.shape == (2,)


@pytest.mark.slow
def test_kernel_bench_table_and_sweep_run_in_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, str(ROOT / "bench" / "fused_kernels.py"), "--device", "cpu"]
    cmd += ["--L", "3", "--batch", "1"]
    table = subprocess.run(
        cmd,
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr[-3000:]
    for call in ("conv 1->8 masked", "dgrad 8->1 +=x", "wgrad 8->2", "layer fwd+bwd"):
        assert call in table.stdout
    swept = subprocess.run(
        [*cmd, "--sweep", "gather"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "fastest: ('" in swept.stdout and "shipped ('narrow',)" in swept.stdout


def test_fits_names_the_32_bit_offset_limit():
    net = ConvNet(1, [8, 8], 2, 3)
    assert fused.fits(64 * 1024 * 1024, net) is None  # L = 1024 at batch 64: 2^29 offsets
    reason = fused.fits(64 * 2048 * 2048, net)  # L = 2048: 2^31 offsets
    assert "32-bit offsets" in reason and "kernels='torch'" in reason
    assert fused.fits(64 * 2048 * 2048, ConvNet(1, [1], 2, 3)) is None  # two channels at most
