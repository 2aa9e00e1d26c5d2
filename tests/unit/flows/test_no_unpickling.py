"""Files named by a config or the CLIs are read as tensors only: a pickle never runs code."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from flows.config import ConfigError
from flows.train import load_checkpoint, load_samples


class _Payload:
    """Unpickling this would create ``marker`` (as a hostile file would run any command)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("loader", [load_samples, load_checkpoint], ids=["samples", "checkpoint"])
@pytest.mark.parametrize("wrap", ["bare", "in-dict"])
def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path, loader, wrap):
    marker = tmp_path / "pwned"
    payload = _Payload(str(marker))
    path = tmp_path / "evil.pt"
    torch.save(payload if wrap == "bare" else {"configs": payload}, path)
    with pytest.raises(ConfigError, match="never loaded"):
        loader(str(path)) if loader is load_samples else loader(path)
    assert not marker.exists(), "unpickling ran the file's code"


def test_plain_pickle_protocol_files_are_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ConfigError):
        load_samples(str(path))
    assert not marker.exists()


def test_tensors_and_sample_files_still_load(tmp_path):
    configs = torch.randn(5, 4, 4)
    torch.save(configs, tmp_path / "t.pt")
    torch.save({"configs": configs, "index": torch.tensor([0, 2])}, tmp_path / "d.pt")
    assert torch.equal(load_samples(str(tmp_path / "t.pt")), configs)
    assert torch.equal(load_samples(str(tmp_path / "d.pt")), configs[[0, 2]])


def test_a_reference_reads_the_copy_the_service_made(tmp_path, monkeypatch):
    from flows.train import input_path

    copy = tmp_path / "inputs" / "forward_kl_data.pt"
    monkeypatch.setenv("LATTICEHUB_INPUTS", f'{{"run:abc/samples.pt": "{copy}"}}')
    assert input_path("run:abc/samples.pt") == str(copy)
    assert input_path("/data/samples.pt") == "/data/samples.pt"  # a laptop's own path
    monkeypatch.setenv("LATTICEHUB_INPUTS", "not json")
    with pytest.raises(ConfigError, match="LATTICEHUB_INPUTS"):
        input_path("run:abc/samples.pt")
