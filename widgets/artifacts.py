"""Artifacts of runs in the kernel: the trained flow as a torch module, files to a directory.

``flows.train`` uploads its final checkpoint as the artifact ``model/checkpoint.pt`` (a
dict with ``config``, ``model`` (the state dict), ``step`` ...), the summary as
``summary.json``, exact samples as ``samples/chain.pt`` and the training plot as
``plots/training.png``. :class:`RunArtifacts` is the state of a run's files (no ipywidgets:
what is there, what to download, the client calls); :func:`load_model` and
:func:`download_artifacts` are the notebook's two verbs on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from latticehub.client import TrackingClient

from .api import make_client, service_errors

#: The artifact that holds the trained model (see ``flows/train.py``: ``_finish``).
CHECKPOINT_ARTIFACT = "model/checkpoint.pt"


class RunArtifacts:
    """The files of one run, through the client; every failure is a ``ServiceError``.

    Args:
        run_id: the run.
        client: the service client (default: from the notebook's environment).

    Attributes:
        files: the run's files as last listed (``path``, ``size``, ``sha256``, ``created``).
    """

    def __init__(self, run_id: str, client: TrackingClient | None = None):
        self.run_id = str(run_id)
        self.client = make_client(client)
        self.files: list[dict[str, Any]] = []

    def refresh(self, prefix: str = "") -> list[dict[str, Any]]:
        """List the run's files under ``prefix`` (kept in :attr:`files`)."""
        with service_errors(self.client):
            self.files = self.client.list_artifacts(self.run_id, prefix)
        return self.files

    @property
    def total_size(self) -> int:
        """Bytes of the files listed."""
        return sum(int(item.get("size") or 0) for item in self.files)

    def has(self, path: str) -> bool:
        """Whether ``path`` is among the files listed."""
        return any(item["path"] == path for item in self.files)

    def download(self, dest: str | Path, prefix: str = "") -> list[Path]:
        """Download the files under ``prefix`` into the directory ``dest`` (sha256-checked)."""
        with service_errors(self.client):
            return self.client.download_artifacts(self.run_id, Path(dest), prefix)

    def fetch(self, path: str, dest: str | Path) -> Path:
        """Download one file to ``dest`` (sha256-checked, atomic)."""
        with service_errors(self.client):
            return self.client.download_artifact(self.run_id, path, Path(dest))


def load_model(
    run_id: str,
    client: TrackingClient | None = None,
    *,
    device: str = "cpu",
    artifact: str = CHECKPOINT_ARTIFACT,
) -> Any:
    """Download a run's checkpoint and rebuild its flow, ready to sample.

    The model is rebuilt with :func:`flows.models.build_flow` from the config saved in
    the checkpoint, in the checkpoint's dtype, with the trained weights, in eval mode.
    The checkpoint is read with ``torch.load(weights_only=True)``: no code in it runs.

    Args:
        run_id: the training run.
        client: the service client (default: from the notebook's environment).
        device: where to put the model (``"cpu"``, ``"cuda"``).
        artifact: the checkpoint's artifact path.

    Returns:
        The :class:`flows.models.Flow` (a ``torch.nn.Module``), with the attributes
        ``config`` (the training config), ``step`` (training steps done) and ``run_id``.

    Raises:
        ServiceError: the run or its checkpoint cannot be read (the message says why).

    Example::

        flow = load_model("3f2a...")
        x, log_q = flow.sample(1024)
    """
    import torch

    from flows.models import build_flow

    files = RunArtifacts(run_id, client)
    with tempfile.TemporaryDirectory(prefix="lh-model-") as tmp:
        path = files.fetch(artifact, Path(tmp) / "checkpoint.pt")
        state = torch.load(path, map_location="cpu", weights_only=True)
    config = state["config"]
    flow = build_flow(config)
    if config.get("dtype") == "float64":
        flow = flow.double()
    flow.load_state_dict(state["model"])
    flow = flow.to(device).eval()
    flow.config, flow.step, flow.run_id = dict(config), int(state.get("step", 0)), run_id
    return flow


def download_artifacts(
    run_id: str,
    dest: str | Path,
    client: TrackingClient | None = None,
    *,
    prefix: str = "",
) -> list[Path]:
    """Download a run's artifacts (those under ``prefix``) into the directory ``dest``.

    Files keep their artifact paths below ``dest`` (``dest/model/checkpoint.pt`` ...);
    each is checked against its sha256 and written atomically.

    Returns:
        The files written.

    Raises:
        ServiceError: the run cannot be read or a download failed.
    """
    return RunArtifacts(run_id, client).download(dest, prefix)
