"""Data-parallel setup from ``torchrun`` or Slurm ``srun`` environments (no-ops when alone)."""

from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist
from torch import nn

from flows.config import ConfigError


def ranks_from_env(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's or Slurm's variables; ``(0, 1, 0)`` alone.

    torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``srun`` sets ``SLURM_PROCID``/
    ``SLURM_NTASKS``/``SLURM_LOCALID``. torchrun's win when both are present (torchrun inside
    an sbatch script).
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def _slurm_master(env: dict[str, str]) -> str:
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodes.split(",")[0]


def init() -> tuple[int, int, int]:
    """Join the process group when several ranks run; returns ``(rank, world, local_rank)``."""
    rank, world, local = ranks_from_env()
    if world == 1 or dist.is_initialized():
        return rank, world, local
    if "MASTER_ADDR" not in os.environ:
        os.environ["MASTER_ADDR"] = _slurm_master(dict(os.environ))
    os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", 0)) % 1000))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    return rank, world, local


def rank_gpu(local_rank: int, visible: int) -> int:
    """The CUDA device index a rank trains on, given how many GPUs its process sees.

    All of a node's GPUs visible (``torchrun``, or ``srun`` with ``--gres=gpu:N``): the
    ``local_rank``-th. One visible (``srun --gpus-per-task=1`` or ``--gpu-bind=single:1`` binds
    each task to its own): that one.

    Raises:
        ConfigError: no GPU visible, or more ranks on the node than GPUs visible to them.
    """
    if visible < 1:
        raise ConfigError(
            "no GPU is visible to this rank: train with --device cpu, or ask for GPUs"
        )
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    raise ConfigError(
        f"local rank {local_rank} but only {visible} GPUs are visible on this node: start at "
        f"most {visible} ranks per node (torchrun --nproc_per_node={visible}, or sbatch "
        f"--ntasks-per-node={visible} with --gres=gpu:{visible})"
    )


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the flow's transform (gradients averaged over ranks)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module.transform, device_ids=ids)


def barrier() -> None:
    """Wait for every rank (no-op when alone)."""
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
