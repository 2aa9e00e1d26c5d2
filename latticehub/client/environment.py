"""What a run records about its code and environment (standard library only)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

MAX_DIFF = 256 * 1024
SLURM_KEYS = (
    "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST",
    "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS", "SLURM_CPUS_PER_TASK", "SLURM_JOB_GPUS",
)  # fmt: skip


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_version(cwd: str | None = None) -> dict[str, Any]:
    """Git commit, branch, remote and the uncommitted diff (truncated) of ``cwd``."""
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if commit is None:
        return {}
    diff = _git("diff", "HEAD", cwd=cwd) or ""
    return {
        "commit": commit,
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd),
        "remote": _git("config", "--get", "remote.origin.url", cwd=cwd),
        "dirty": bool(diff),
        "diff": diff[:MAX_DIFF],
        "diff_truncated": len(diff) > MAX_DIFF,
    }


def environment() -> dict[str, Any]:
    """Python, packages, image, host, GPUs and Slurm job of this process."""
    packages = sorted(
        f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata
    )
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": packages,
        "image": os.environ.get("JUPYTER_IMAGE_SPEC", ""),
        "group": os.environ.get("LATTICEHUB_GROUP", ""),
        "slurm": {k: os.environ[k] for k in SLURM_KEYS if k in os.environ},
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env
