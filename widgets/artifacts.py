"""Artifacts of runs in the kernel: the trained flow as a torch module, files to a directory.

``flows.train`` uploads its final checkpoint as the artifact ``model/checkpoint.pt`` (a
dict with ``config``, ``model`` (the state dict), ``step`` ...), the summary as
``summary.json``, exact samples as ``samples/chain.pt`` and the training plot as
``plots/training.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from latticehub.client import TrackingClient

from . import api

#: The artifact that holds the trained model (see ``flows/train.py``: ``_finish``).
CHECKPOINT_ARTIFACT = "model/checkpoint.pt"


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

    client = api.make_client(client)
    with tempfile.TemporaryDirectory(prefix="lh-model-") as tmp:
        path = api.download_artifact(client, run_id, artifact, Path(tmp) / "checkpoint.pt")
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
    return api.download_all(api.make_client(client), run_id, Path(dest), prefix)
