"""Training configuration: typed fields, recommended defaults per action, validation, CLI flags.

A config is a JSON object; every key is also a command-line flag (``--L 8``, ``--hidden 8,8``).
Keys left out take the recommended value for the chosen action and lattice
(:func:`recommended`), which is what ``bench/flows.py`` measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message says how to fix it."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in checkpoints and logged as params)."""

    action: str = "phi4"
    L: int = 8  # noqa: N815 (lattice extent is L in physics)
    m2: float = -4.0
    lam: float = 8.0
    beta: float = 2.0
    model: str = "coupling"
    n_layers: int = 16
    hidden: list[int] = field(default_factory=lambda: [8, 8])
    kernel: int = 3
    n_mix: int = 4
    steps: int = 600
    batch_size: int = 64
    lr: float = 5e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 50
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    amp: str = "none"
    compile: bool = False
    cuda_graph: bool = True
    kernels: str = "auto"
    forward_kl_data: str = ""
    forward_kl_weight: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 50
    eval_samples: int = 8192
    out: str = "flows-out"
    resume: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)


#: Allowed choices for string fields.
CHOICES: dict[str, tuple[str, ...]] = {
    "action": ("phi4", "u1"),
    "model": ("coupling", "linear"),
    "lr_schedule": ("cosine", "constant"),
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("float32", "float64"),
    "amp": ("none", "bf16"),
    "kernels": ("auto", "torch", "triton"),
}

#: (minimum, maximum) for numeric fields; None = unbounded.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "L": (2, 1024),
    "lam": (0, None),
    "n_layers": (1, 256),
    "kernel": (1, 15),
    "n_mix": (1, 32),
    "steps": (0, 10**8),
    "batch_size": (1, 10**6),
    "lr": (0, 1),
    "warmup_steps": (0, 10**8),
    "grad_clip": (0, None),
    "forward_kl_weight": (0, 1),
    "checkpoint_every": (0, 10**8),
    "log_every": (1, 10**8),
    "eval_samples": (0, 10**8),
}


def recommended(action: str, L: int) -> dict[str, Any]:  # noqa: N803
    """Recommended settings for an action and lattice size (what the benchmarks run).

    phi^4 at the tutorial point (L = 8) trains the tutorial architecture (16 layers, hidden
    [8, 8], 3x3, tanh) with a 50-step warm-up and a cosine-decayed learning rate of 5e-3 for 600
    steps: IMH acceptance 0.34-0.37 on fresh samples over seeds 0-2 (the tutorial's recipe,
    lr 1e-3 for 2500 steps, reaches 0.09-0.28). Larger lattices train longer.
    """
    if action == "u1":
        return {"n_layers": 16, "hidden": [8, 8], "steps": 1500, "batch_size": 64, "lr": 2e-3}
    if L <= 8:
        return {"steps": 600, "batch_size": 64, "lr": 5e-3}
    return {"steps": 2000, "batch_size": 64, "lr": 3e-3}


#: What each key means: meaning, unit, recommended value (``--help`` prints it).
HELP: dict[str, str] = {
    "action": "the lattice action: phi4 (real scalar phi^4) or u1 (2D U(1) gauge)",
    "L": "lattice extent in sites per side (even for phi4, a multiple of 4 for u1); e.g. 8",
    "m2": "phi4 bare mass squared m^2 (lattice units); the tutorial's point is -4.0",
    "lam": "phi4 quartic coupling lambda (lattice units, >= 0); the tutorial's point is 8.0",
    "beta": "u1 gauge coupling beta (lattice units); e.g. 2.0",
    "model": "flow architecture: coupling (affine couplings, conv nets) or linear (free field)",
    "n_layers": "number of coupling layers; 16 is recommended",
    "hidden": "hidden channels of each coupling's conv net, comma-separated; e.g. 8,8",
    "kernel": "conv kernel size in sites (odd); 3 is recommended",
    "n_mix": "u1: mixture components of each circle map; 4 is recommended",
    "steps": "optimizer steps in total (a resumed run goes on to this many); e.g. 600 at L=8",
    "batch_size": "samples drawn per step; 64 is recommended",
    "lr": "peak learning rate of Adam; 5e-3 at L <= 8, 3e-3 above",
    "lr_schedule": "learning-rate schedule after the warm-up: cosine (recommended) or constant",
    "warmup_steps": "steps of linear learning-rate warm-up; 50 is recommended",
    "grad_clip": "gradient norm clip (0: none); 10.0 is recommended",
    "seed": "random seed of the parameters and samples (runs with equal seeds are equal)",
    "device": "auto (the GPU if one is visible), cpu or cuda",
    "dtype": "floating type of the model and samples: float32 (recommended) or float64",
    "amp": "mixed precision on GPU: none, or bf16 (faster where the GPU has bf16 units)",
    "compile": "torch.compile the step (minutes to compile; pays off in long runs)",
    "cuda_graph": "replay the step as a CUDA graph on one GPU (recommended; --no-cuda-graph "
    "to debug)",
    "kernels": "coupling kernels: auto (Triton on GPU when it helps), torch or triton",
    "forward_kl_data": "a training-data reference (run:<id>/<path>) for a forward-KL term, "
    "or empty for reverse KL only",
    "forward_kl_weight": "weight of the forward-KL term in [0, 1]; 1.0 with data",
    "checkpoint_every": "steps between checkpoints (0: only at the end and on SIGTERM); e.g. 500",
    "log_every": "steps between progress lines and logged metrics; e.g. 50",
    "eval_samples": "samples of the final evaluation (ESS, acceptance, observables); e.g. 8192",
    "out": "output directory (checkpoint, summary, plots)",
    "resume": "go on from the checkpoint in --out if there is one (what a requeued job does)",
}


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Validate ``values`` (from JSON and flags), fill recommended defaults, return a config.

    Raises:
        ConfigError: unknown key, wrong type, value out of range or not among the choices.
    """
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}: known keys are {sorted(known)}")
    action = values.get("action", TrainConfig.action)
    if action not in CHOICES["action"]:
        raise ConfigError(f"action must be one of {list(CHOICES['action'])}, got {action!r}")
    L = _coerce("L", values.get("L", TrainConfig.L), "int")  # noqa: N806
    merged = {**recommended(action, L), **values}
    out = {name: _coerce(name, value, known[name]) for name, value in merged.items()}
    config = TrainConfig(**out)
    _check(config)
    return config


def _coerce(name: str, value: Any, kind: str) -> Any:
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise TypeError
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "list[int]":
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            return [int(v) for v in value]
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {kind}, got {value!r}") from None
    raise AssertionError(f"unhandled field type {kind}")


def _check(config: TrainConfig) -> None:
    for name, choices in CHOICES.items():
        value = getattr(config, name)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    for name, (low, high) in RANGES.items():
        value = getattr(config, name)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")
    if config.lr <= 0:
        raise ConfigError(f"lr must be > 0 (e.g. 1e-3), got {config.lr}")
    if any(h < 1 for h in config.hidden) or not config.hidden:
        raise ConfigError(f"hidden must be a non-empty list of positive ints, got {config.hidden}")
    if config.kernel % 2 == 0:
        raise ConfigError(f"kernel must be odd (e.g. 3), got {config.kernel}")
    if config.action == "u1" and config.L % 4:
        raise ConfigError(f"U(1) flows need L divisible by 4 (e.g. 8), got L={config.L}")
    if config.action == "phi4" and config.L % 2:
        raise ConfigError(f"phi^4 checkerboard couplings need an even L, got L={config.L}")
    if config.forward_kl_data and config.action == "u1":
        raise ConfigError(
            "forward KL needs the model's exact inverse with gradients; the U(1) circle maps are "
            "inverted by bisection: train U(1) by reverse KL (leave forward_kl_data empty)"
        )
    if config.model == "linear" and config.action != "phi4":
        raise ConfigError("model 'linear' is the free-field flow: use it with action 'phi4'")


def parser(prog: str = "python -m flows.train") -> argparse.ArgumentParser:
    """Argument parser with ``--config FILE`` and one flag per config key.

    Each key is ``--key`` (``--cuda_graph`` and ``--cuda-graph`` alike); a boolean key is a
    plain flag (``--resume``, ``--no-cuda-graph``) and still takes a value
    (``--resume true``), as job scripts write it.
    """
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a normalizing flow for a lattice action. Keys left out take the "
        "recommended value for the action and lattice; --config FILE gives keys as JSON.",
    )
    p.add_argument("--config", type=Path, help="JSON file with config keys; flags override it")
    for f in dataclasses.fields(TrainConfig):
        names = list(dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"]))
        meaning = HELP[f.name]
        if f.type == "bool":
            negative = list(dict.fromkeys(n.replace("--", "--no-", 1) for n in names))
            help_text = f"{meaning} (default: {_default(f)}; {negative[-1]} turns it off)"
            p.add_argument(*names, dest=f.name, nargs="?", const="true", metavar="true|false",
                           default=argparse.SUPPRESS, help=help_text)  # fmt: skip
            p.add_argument(*negative, dest=f.name, action="store_const", const="false",
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # fmt: skip
            continue
        choices = f"; one of {', '.join(CHOICES[f.name])}" if f.name in CHOICES else ""
        help_text = f"{meaning} ({f.type}{choices}; default {_default(f)!r} unless recommended)"
        p.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=help_text)
    return p


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def from_args(argv: list[str] | None = None) -> TrainConfig:
    """Config from ``--config FILE`` and flags (flags win)."""
    args = vars(parser().parse_args(argv))
    values: dict[str, Any] = {}
    path = args.pop("config", None)
    if path is not None:
        try:
            loaded = json.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of config keys")
        values.update(loaded)
    values.update(args)
    return make_config(values)
