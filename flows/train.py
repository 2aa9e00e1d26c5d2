"""Train a flow by reverse KL (self-training): ``python -m flows.train --config FILE.json``.

Prints progress on stderr (step, steps/s, loss, ESS, acceptance) and one JSON summary line on
stdout. Checkpoints go to ``OUT/checkpoint.pt`` every ``checkpoint_every`` steps, at the end, and
on SIGTERM / SIGUSR1 (Slurm cancel, time limit, preemption), written atomically; ``--resume true``
continues from it with the same optimizer state and random streams, so an interrupted and
resumed run ends bit-for-bit where an uninterrupted one would.

Data parallel: started by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``) or by ``srun``
(``SLURM_NTASKS``/``SLURM_PROCID``/``SLURM_LOCALID``), every rank trains on its own prior draws of
``batch_size`` samples and gradients are averaged (NCCL on GPUs, gloo on CPUs). Rank 0 alone logs,
evaluates and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from flows import distributed
from flows.actions import make_action
from flows.config import ConfigError, TrainConfig, from_args, make_config
from flows.evaluate import evaluate
from flows.models import Flow, build_flow
from flows.tracking import open_tracker

CHECKPOINT = "checkpoint.pt"


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a checkpoint (the tracker marks it KILLED)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but no GPU is visible: use --device cpu")
    return torch.device(name)


class Trainer:
    """Reverse-KL training of a flow for one action; owns model, optimizer and random streams.

    Args:
        config: the validated training config.
        rank: data-parallel rank (0 when alone).
        world_size: number of data-parallel ranks.
        device: where to train (default from the config).
    """

    def __init__(
        self,
        config: TrainConfig,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
    ):
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.device = device or resolve_device(config.device)
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        self.action = make_action(config.to_dict())
        torch.manual_seed(config.seed)  # initial weights: the same on every rank
        amp = torch.bfloat16 if config.amp == "bf16" else None
        self.flow: Flow = build_flow(config.to_dict(), autocast_dtype=amp).to(
            self.device, self.dtype
        )
        self.model = distributed.wrap(self.flow, self.device) if world_size > 1 else self.flow
        self.optimizer = torch.optim.Adam(
            self.flow.parameters(), lr=config.lr, **_fused(self.device)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(config.seed + 1_000_003 * rank)
        self.step = 0
        self._loss_fn = self._loss
        if config.compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._loss_fn = torch.compile(self._loss, mode=mode, dynamic=False)

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant" or cfg.steps <= cfg.warmup_steps:
            return 1.0
        progress = (step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def _loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, log_det = self.model(z) if self.world_size > 1 else self.flow.transform(z)
        log_q = self.flow.prior.log_prob(z) - log_det
        log_w = -self.action(x) - log_q
        return -log_w.mean(), log_w.detach()

    def train_step(self) -> tuple[float, torch.Tensor]:
        """One optimizer step; returns the loss and the batch's log importance weights."""
        z = self.flow.prior.sample(
            self.config.batch_size, device=self.device, dtype=self.dtype, generator=self.generator
        )
        loss, log_w = self._loss_fn(z)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item(), log_w

    # -- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit."""
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.flow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "world_size": self.world_size,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state` (a checkpoint of the same config)."""
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.rank == 0 or state.get("world_size", 1) == self.world_size:
            self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash leaves the previous checkpoint or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint at {path}: train first or check --out") from None


def _fused(device: torch.device) -> dict[str, Any]:
    return {"fused": True} if device.type == "cuda" else {}


class _SignalFlag:
    """Remember the first SIGTERM/SIGUSR1; the loop checkpoints and stops after the step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _progress(step: int, total: int, rate: float, loss: float, ess: float, acc: float) -> None:
    width = 24
    done = int(width * step / max(total, 1))
    bar = "#" * done + "." * (width - done)
    print(
        f"[{bar}] step {step}/{total}  {rate:6.1f} steps/s  loss {loss:9.4f}  "
        f"ess {ess:.3f}  acc {acc:.3f}",
        file=sys.stderr,
        flush=True,
    )


def train(config: TrainConfig) -> dict[str, Any]:
    """Run training (and the final evaluation) for ``config``; return the summary."""
    from flows import mcmc, stats

    rank, world_size, local_rank = distributed.init()
    device = resolve_device(config.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    trainer = Trainer(config, rank, world_size, device)
    if config.resume and ckpt.exists():
        trainer.load_state(load_checkpoint(ckpt, device))
    lead = rank == 0
    summary: dict[str, Any] = {}
    with open_tracker(out, enabled=lead) as tracker, _SignalFlag() as flag:
        if tracker is not None and trainer.step == 0:
            tracker.log_params(config.to_dict())
        start, start_step, mark, mark_step = (
            time.perf_counter(),
            trainer.step,
            time.perf_counter(),
            trainer.step,
        )
        loss = float("nan")
        while trainer.step < config.steps:
            loss, log_w = trainer.train_step()
            step = trainer.step
            if lead and (step % config.log_every == 0 or step == config.steps):
                now = time.perf_counter()
                rate = (step - mark_step) / max(now - mark, 1e-9)
                mark, mark_step = now, step
                ess = stats.ess(log_w)
                acc = mcmc.independence_metropolis(log_w, torch.zeros_like(log_w)).acceptance
                _progress(step, config.steps, rate, loss, ess, acc)
                if tracker is not None:
                    lr = trainer.scheduler.get_last_lr()[0]
                    values = {
                        "loss": loss,
                        "ess": ess,
                        "acceptance": acc,
                        "lr": lr,
                        "steps_per_s": rate,
                    }
                    tracker.log_metrics(values, step)
            periodic = config.checkpoint_every and step % config.checkpoint_every == 0
            if lead and (periodic or step == config.steps):
                save_checkpoint(trainer.state(), ckpt)
            if flag.signum is not None:
                if lead:
                    save_checkpoint(trainer.state(), ckpt)
                raise Interrupted(flag.signum)
        wall = time.perf_counter() - start
        if lead:
            summary = {
                "steps": trainer.step,
                "wall_s": round(wall, 3),
                "steps_per_s": round((trainer.step - start_step) / max(wall, 1e-9), 3),
                "loss": loss,
                **evaluate(trainer.flow, trainer.action, config.eval_samples, seed=config.seed + 7),
                "checkpoint": str(ckpt),
                "world_size": world_size,
                "device": str(device),
            }
            if torch.cuda.is_available() and device.type == "cuda":
                summary["peak_gpu_mem_gb"] = round(
                    torch.cuda.max_memory_allocated(device) / 2**30, 3
                )
            if tracker is not None:
                final = {k: v for k, v in summary.items() if isinstance(v, int | float)}
                tracker.log_metrics({f"final_{k}": v for k, v in final.items()}, trainer.step)
                (out / "summary.json").write_text(json.dumps(summary, indent=1))
                tracker.log_artifact(ckpt, "model/checkpoint.pt")
                tracker.log_artifact(out / "summary.json", "summary.json")
    distributed.barrier()
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 2 on a bad config, 128+signal after a checkpointed interruption."""
    try:
        config = from_args(argv)
    except ConfigError as e:
        print(f"flows.train: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = train(config)
    except Interrupted as e:
        print(json.dumps({"interrupted": str(e), "checkpoint": str(Path(config.out) / CHECKPOINT)}))
        return 128 + e.signum
    except ConfigError as e:
        print(f"flows.train: error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if summary:
        print(json.dumps(summary), flush=True)
    return 0


__all__ = ["Trainer", "train", "main", "make_config", "save_checkpoint", "load_checkpoint"]

if __name__ == "__main__":
    sys.exit(main())
