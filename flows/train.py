"""Train a flow by reverse KL (self-training): ``python -m flows.train --config FILE.json``.

Prints progress on stderr (step, steps/s, time left, loss, ESS, acceptance) and one JSON summary
line on stdout. Checkpoints go to ``OUT/checkpoint.pt`` every ``checkpoint_every`` steps, at
the end, on SIGUSR1 (Slurm's warning before the time limit; training goes on) and on SIGTERM
(cancel, preemption, requeue; training stops with exit 143), written atomically; ``--resume``
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
import pickle
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
from flows.plots import training_plot
from flows.tracking import open_tracker

CHECKPOINT = "checkpoint.pt"


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a checkpoint (the tracker marks it KILLED)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Diverged(RuntimeError):
    """The loss or the importance weights became NaN/inf (recorded as the run's failure)."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"training diverged at step {step} (loss {loss}): lower --lr, set a smaller "
            "--grad_clip, or use --dtype float64"
        )


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
        on_gpu = self.device.type == "cuda"
        self.data = (
            load_samples(input_path(config.forward_kl_data)) if config.forward_kl_data else None
        )
        self.data_generator = torch.Generator().manual_seed(config.seed + 17 + 1_000_003 * rank)
        self.use_graph = on_gpu and config.cuda_graph and world_size == 1 and self.data is None
        # A tensor learning rate lets a captured CUDA graph see schedule changes.
        lr: float | torch.Tensor = (
            torch.tensor(config.lr, device=self.device) if on_gpu else config.lr
        )
        extra = {"fused": True, "capturable": True} if on_gpu else {}
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=lr, **extra)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(config.seed + 1_000_003 * rank)
        self.step = 0
        self._loss_fn = self._loss
        if config.compile:
            self._loss_fn = torch.compile(self._loss, dynamic=False)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._z: torch.Tensor | None = None
        self._outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay or constant."""
        cfg = self.config
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant" or cfg.steps <= cfg.warmup_steps:
            return 1.0
        progress = (step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def _set_lr(self) -> float:
        lr = self.config.lr * self.lr_factor(self.step)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        return lr

    def _loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, log_det = self.model(z) if self.world_size > 1 else self.flow.transform(z)
        log_q = self.flow.prior.log_prob(z) - log_det
        log_w = -self.action(x) - log_q
        return -log_w.mean(), log_w.detach()

    def _update(
        self, z: torch.Tensor, data: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, log_w = self._loss_fn(z)
        if data is not None:
            # Forward KL on exact samples (mode covering) mixed with reverse KL (mode seeking).
            weight = self.config.forward_kl_weight
            loss = (1 - weight) * loss - weight * self.flow.log_prob(data).mean()
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                self.flow.parameters(), self.config.grad_clip, foreach=True
            )
        self.optimizer.step()
        return loss.detach(), log_w

    def _capture(self, z: torch.Tensor) -> None:
        # Warm up on a side stream (allocations, autotuning), then record one whole step:
        # forward, backward, clipping and Adam replay as a single graph launch per step.
        self._z = z.clone()
        params = {k: v.clone() for k, v in self.flow.state_dict().items()}
        moments = {
            p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)}
            for p, st in self.optimizer.state.items()
        }
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._update(self._z)
        torch.cuda.current_stream().wait_stream(stream)
        # Undo the warm-up in place (the graph keeps these very tensors): the graph path must
        # train exactly like the eager one, from fresh or from resumed optimizer state.
        self.flow.load_state_dict(params)
        for p, st in self.optimizer.state.items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    v.copy_(moments[p][k]) if p in moments else v.zero_()
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._outputs = self._update(self._z)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the loss (a tensor: no device sync) and the log weights."""
        self.current_lr = self._set_lr()
        z = self.flow.prior.sample(
            self.config.batch_size, device=self.device, dtype=self.dtype, generator=self.generator
        )
        if self.data is not None:
            pick = torch.randint(
                len(self.data),
                (self.config.batch_size,),
                device="cpu",
                generator=self.data_generator,
            )
            loss, log_w = self._update(z, self.data[pick].to(self.device, self.dtype))
        elif self.use_graph:
            if self._graph is None:
                self._capture(z)
            assert self._z is not None and self._graph is not None and self._outputs is not None
            self._z.copy_(z)
            self._graph.replay()
            loss, log_w = self._outputs
        else:
            loss, log_w = self._update(z)
        self.step += 1
        return loss, log_w

    # -- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit."""
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.flow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "data_generator": self.data_generator.get_state(),
            "world_size": self.world_size,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state` (a checkpoint of the same config)."""
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rank == 0 or state.get("world_size", 1) == self.world_size:
            self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "data_generator" in state:
            self.data_generator.set_state(state["data_generator"])
        self.step = state["step"]


def input_path(value: str) -> str:
    """The file a config's data value names: a path, or a reference the service resolved.

    A job launched by the ``experiments`` service keeps references such as
    ``run:<id>/samples.pt`` in its config (as its run's params show them); the service copied
    each referenced file into the job's directory and maps reference -> copy in
    ``$LATTICEHUB_INPUTS`` (JSON). Anything else is a path on this machine.
    """
    try:
        copies = json.loads(os.environ.get("LATTICEHUB_INPUTS") or "{}")
    except ValueError:
        raise ConfigError("LATTICEHUB_INPUTS is not JSON: it maps references to files") from None
    return copies.get(value, value) if isinstance(copies, dict) else value


def load_samples(path: str) -> torch.Tensor:
    """Exact samples for forward KL: a tensor, or ``flows.sample --save`` output (chain states)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ConfigError(f"cannot read forward_kl_data {path}: {e}") from None
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"forward_kl_data {path} holds objects other than tensors and plain containers, "
            "which are never loaded (they could run code): save only tensors, as python -m "
            f"flows.sample --save does ({str(e).splitlines()[0][:200]})"
        ) from None
    if isinstance(saved, dict) and "configs" in saved:
        configs = saved["configs"]
        return configs[saved["index"]] if "index" in saved else configs
    if isinstance(saved, torch.Tensor):
        return saved
    raise ConfigError(
        f"forward_kl_data {path} must hold a tensor of configurations or a dict with 'configs' "
        "(as written by python -m flows.sample --save)"
    )


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
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint at {path}: train first or check --out") from None
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"the checkpoint {path} holds objects other than tensors and plain containers, "
            "which are never loaded (they could run code): use a checkpoint written by "
            f"flows.train ({str(e).splitlines()[0][:200]})"
        ) from None


class _SignalFlag:
    """Signals seen between steps.

    SIGTERM: checkpoint and stop after the step. SIGUSR1 (Slurm's warning before the time
    limit, ``--signal=B:USR1@N``): checkpoint after the step and keep training.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.checkpoint_requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGUSR1:
            self.checkpoint_requested = True
        else:
            self.signum = self.signum or signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def eta_text(remaining_steps: int, rate: float) -> str:
    """``"eta 1h02m"``, ``"eta 3m20s"`` or ``"eta 12s"`` at ``rate`` steps/s (``"eta ?"``: none)."""
    if rate <= 0 or not math.isfinite(rate):
        return "eta ?"
    seconds = round(max(remaining_steps, 0) / rate)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"eta {hours}h{minutes:02d}m"
    return f"eta {minutes}m{seconds:02d}s" if minutes else f"eta {seconds}s"


def _progress(step: int, total: int, rate: float, loss: float, ess: float, acc: float) -> None:
    width = 24
    done = int(width * step / max(total, 1))
    bar = "#" * done + "." * (width - done)
    print(
        f"[{bar}] step {step}/{total}  {rate:6.1f} steps/s  {eta_text(total - step, rate)}  "
        f"loss {loss:9.4f}  ess {ess:.3f}  acc {acc:.3f}",
        file=sys.stderr,
        flush=True,
    )


class _Progress:
    """Rank 0's view of training: progress lines, metrics to the tracker, history for plots."""

    def __init__(self, trainer: Trainer, tracker: Any):
        self.trainer = trainer
        self.tracker = tracker
        self.mark, self.mark_step = time.perf_counter(), trainer.step
        self.history: list[dict[str, float]] = []
        self.loss = float("nan")

    def log(self, loss_t: torch.Tensor, log_w: torch.Tensor) -> None:
        from flows import mcmc, stats

        step, total = self.trainer.step, self.trainer.config.steps
        self.loss = loss_t.item()
        now = time.perf_counter()
        rate = (step - self.mark_step) / max(now - self.mark, 1e-9)
        self.mark, self.mark_step = now, step
        log_w = log_w.double().cpu()
        if not torch.isfinite(log_w).all():
            raise Diverged(step, self.loss)
        ess = stats.ess(log_w)
        acc = mcmc.independence_metropolis(log_w, torch.zeros_like(log_w)).acceptance
        _progress(step, total, rate, self.loss, ess, acc)
        values = {"loss": self.loss, "ess": ess, "acceptance": acc}
        values.update(lr=self.trainer.current_lr, steps_per_s=rate)
        self.history.append({"step": step, **values})
        if self.tracker is not None:
            self.tracker.log_metrics(values, step)


def _finish(
    trainer: Trainer, progress: _Progress, tracker: Any, out: Path, wall: float, start_step: int
) -> dict[str, Any]:
    """Evaluate on fresh samples, build the summary, store plot and artifacts."""
    config = trainer.config
    summary: dict[str, Any] = {
        "steps": trainer.step,
        "wall_s": round(wall, 3),
        "steps_per_s": round((trainer.step - start_step) / max(wall, 1e-9), 3),
        "loss": progress.loss,
        **evaluate(
            trainer.flow, trainer.action, config.eval_samples, config.seed + 7, out / "samples.pt"
        ),
        "checkpoint": str(out / CHECKPOINT),
        "world_size": trainer.world_size,
        "device": str(trainer.device),
    }
    if trainer.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30
        summary["peak_gpu_mem_gb"] = round(peak, 3)
    if tracker is None:
        return summary
    final = {k: v for k, v in summary.items() if isinstance(v, int | float)}
    tracker.log_metrics({f"final_{k}": v for k, v in final.items()}, trainer.step)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    tracker.log_artifact(out / CHECKPOINT, "model/checkpoint.pt")
    tracker.log_artifact(out / "summary.json", "summary.json")
    if (out / "samples.pt").exists():
        tracker.log_artifact(out / "samples.pt", "samples/chain.pt")
    if training_plot(progress.history, out / "training.png"):
        tracker.log_artifact(out / "training.png", "plots/training.png")
    return summary


def train(config: TrainConfig, print_summary: bool = False) -> dict[str, Any]:
    """Run training (and the final evaluation) for ``config``; return the summary.

    With ``print_summary`` rank 0 prints the summary as one JSON line on stdout while the run
    is still recording, so the line is in the run's captured output too.
    """
    rank, world_size, local_rank = distributed.init()
    device = resolve_device(config.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", distributed.rank_gpu(local_rank, torch.cuda.device_count()))
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
        progress = _Progress(trainer, tracker)
        start, start_step = time.perf_counter(), trainer.step
        while trainer.step < config.steps:
            loss_t, log_w = trainer.train_step()
            step = trainer.step
            if lead and (step % config.log_every == 0 or step == config.steps):
                progress.log(loss_t, log_w)
            periodic = config.checkpoint_every and step % config.checkpoint_every == 0
            if lead and (periodic or step == config.steps or flag.checkpoint_requested):
                save_checkpoint(trainer.state(), ckpt)
            flag.checkpoint_requested = False
            if flag.signum is not None:
                if lead:
                    save_checkpoint(trainer.state(), ckpt)
                raise Interrupted(flag.signum)
        if lead:
            wall = time.perf_counter() - start
            summary = _finish(trainer, progress, tracker, out, wall, start_step)
            if print_summary:
                print(json.dumps(summary), flush=True)
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
        train(config, print_summary=True)
    except Interrupted as e:
        print(json.dumps({"interrupted": str(e), "checkpoint": str(Path(config.out) / CHECKPOINT)}))
        return 128 + e.signum
    except ConfigError as e:
        print(f"flows.train: error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"flows.train: error: {e}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    return 0


__all__ = ["Trainer", "train", "main", "make_config", "save_checkpoint", "load_checkpoint"]

if __name__ == "__main__":
    sys.exit(main())
