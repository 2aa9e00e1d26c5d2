"""The training and sampling CLIs: config handling, summary, checkpoints, resume, signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flows import train as train_mod
from flows.config import ConfigError, from_args, make_config, recommended
from flows.train import Trainer, load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
TINY = {"L": 4, "n_layers": 2, "hidden": [4], "batch_size": 16, "eval_samples": 512, "log_every": 5}


def run_cli(module, *args, timeout=120, env=None):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


# -- config -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, message",
    [
        ({"action": "su3"}, "action must be one of"),
        ({"L": "eight"}, "L must be int"),
        ({"L": 7}, "even L"),
        ({"action": "u1", "L": 6}, "divisible by 4"),
        ({"lr": -1}, "lr="),
        ({"hidden": []}, "hidden must be a non-empty list"),
        ({"kernel": 4}, "kernel must be odd"),
        ({"batchsize": 3}, "unknown config key"),
        ({"amp": "fp8"}, "amp must be one of"),
        ({"model": "linear", "action": "u1"}, "free-field flow"),
        ({"steps": 2.5}, "steps must be int"),
    ],
)
def test_bad_config_values_name_the_problem(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_defaults_are_the_recommended_settings_and_flags_override_files(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"action": "u1", "L": 8, "beta": 3.0, "steps": 10}))
    config = from_args(["--config", str(cfg_file), "--steps", "20", "--hidden", "16,16"])
    assert config.action == "u1" and config.beta == 3.0
    assert config.steps == 20 and config.hidden == [16, 16]
    assert config.lr == recommended("u1", 8)["lr"]
    with pytest.raises(ConfigError, match="not valid JSON"):
        cfg_file.write_text("{")
        from_args(["--config", str(cfg_file)])


@pytest.mark.parametrize(
    ("flags", "resume", "cuda_graph"),
    [
        ([], False, True),
        (["--resume"], True, True),
        (["--resume", "true"], True, True),  # what job scripts write
        (["--resume", "false"], False, True),
        (["--no-resume"], False, True),
        (["--no-cuda-graph"], False, False),
        (["--no-cuda_graph"], False, False),
        (["--cuda_graph", "false"], False, False),
        (["--cuda-graph"], False, True),
        (["--no-cuda-graph", "--cuda-graph"], False, True),  # the last one wins
    ],
)
def test_boolean_keys_are_plain_flags_and_still_take_a_value(flags, resume, cuda_graph):
    config = from_args([*flags, "--out", "x"])
    assert (config.resume, config.cuda_graph) == (resume, cuda_graph)


def test_dashed_and_underscored_keys_are_the_same_flag():
    assert from_args(["--n-layers", "4"]).n_layers == from_args(["--n_layers", "4"]).n_layers == 4


def test_help_explains_every_key(monkeypatch):
    import dataclasses

    from flows.config import HELP, TrainConfig, parser

    monkeypatch.setenv("COLUMNS", "2000")  # no wrapped lines
    assert set(HELP) == {f.name for f in dataclasses.fields(TrainConfig)}
    text = parser().format_help()
    for name, meaning in HELP.items():
        assert meaning in text, name
    assert "--no-cuda-graph turns it off" in text and "--no-resume turns it off" in text


@pytest.mark.parametrize(
    ("remaining", "rate", "text"),
    [(0, 10.0, "eta 0s"), (120, 10.0, "eta 12s"), (2000, 10.0, "eta 3m20s"),
     (37_200, 10.0, "eta 1h02m"), (5, 0.0, "eta ?"), (5, float("nan"), "eta ?")],
)  # fmt: skip
def test_progress_lines_show_the_time_left(remaining, rate, text):
    from flows.train import eta_text

    assert eta_text(remaining, rate) == text


def test_cli_reports_bad_flag_with_exit_2(tmp_path):
    result = run_cli("flows.train", "--L", "7", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "even L" in result.stderr
    assert result.stdout == ""


# -- training --------------------------------------------------------------------------------
def _trainer(tmp_path, **over):
    return Trainer(make_config({**TINY, "out": str(tmp_path), "device": "cpu", **over}))


def test_training_lowers_the_loss():
    trainer = _trainer("unused", steps=60, lr=5e-3)
    first = [trainer.train_step()[0] for _ in range(5)]
    for _ in range(50):
        trainer.train_step()
    last = [trainer.train_step()[0] for _ in range(5)]
    assert sum(last) / 5 < sum(first) / 5 - 0.5


def test_resume_is_bit_for_bit(tmp_path):
    straight = _trainer(tmp_path / "a", steps=20)
    for _ in range(20):
        straight.train_step()

    first = _trainer(tmp_path / "b", steps=20)
    for _ in range(8):
        first.train_step()
    path = tmp_path / "ckpt.pt"
    train_mod.save_checkpoint(first.state(), path)
    del first
    torch.manual_seed(12345)  # resumed process starts with other global RNG state
    resumed = _trainer(tmp_path / "b", steps=20)
    resumed.load_state(load_checkpoint(path))
    assert resumed.step == 8
    for _ in range(12):
        resumed.train_step()
    for (name, a), b in zip(
        straight.flow.state_dict().items(), resumed.flow.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_cli_trains_and_prints_one_json_summary(tmp_path):
    out = tmp_path / "out"
    args = ["--L", "4", "--n_layers", "2", "--hidden", "4", "--steps", "30", "--batch_size", "16"]
    args += ["--log_every", "5"]
    result = run_cli("flows.train", *args, "--eval_samples", "2000", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    for key in ("steps", "wall_s", "steps_per_s", "ess", "acceptance", "observables", "checkpoint"):
        assert key in summary
    assert summary["steps"] == 30
    assert 0 < summary["acceptance"] <= 1 and 0 < summary["ess"] <= 1
    assert set(summary["observables"]) >= {"M", "absM", "chi2"}
    assert "steps/s" in result.stderr and "ess" in result.stderr  # progress lines
    # local tracking layout when no service is configured
    metrics = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m][:2] == [5, 10]
    assert json.loads((out / "run" / "params.json").read_text())["L"] == 4
    assert (out / "run" / "artifacts" / "model" / "checkpoint.pt").exists()

    sampled = run_cli("flows.sample", "--checkpoint", summary["checkpoint"], "--n", "3000")
    assert sampled.returncode == 0, sampled.stderr
    s = json.loads(sampled.stdout.strip().splitlines()[-1])
    assert s["samples"] == 3000 and 0 < s["acceptance"] <= 1
    assert s["tau_int"]["absM"] >= 0.5
    mean, err = s["observables"]["absM"]
    assert err > 0


def test_sample_cli_without_checkpoint_says_so(tmp_path):
    result = run_cli("flows.sample", "--checkpoint", str(tmp_path / "none.pt"))
    assert result.returncode == 2
    assert "no checkpoint" in result.stderr


def test_sigterm_writes_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "out"
    args = ["--L", "4", "--n_layers", "2", "--hidden", "4", "--batch_size", "16", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.train", *args, "--steps", "100000", "--log_every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "step 20/" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert json.loads(stdout.strip())["interrupted"] == "SIGTERM"
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] >= 20
    stopped_at = state["step"]
    result = run_cli(
        "flows.train",
        *args,
        "--steps",
        str(stopped_at + 5),
        "--resume",
        "true",
        "--eval_samples",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == stopped_at + 5


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, (0, 1, 0)),
        ({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}, (2, 4, 0)),
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}, (5, 8, 1)),
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, (0, 1, 0)),  # a plain sbatch step
        # torchrun inside an sbatch script: torchrun's variables win
        ({"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "WORLD_SIZE": "4", "RANK": "3"}, (3, 4, 0)),
    ],
)
def test_ranks_come_from_torchrun_or_slurm(env, expected):
    from flows.distributed import ranks_from_env

    assert ranks_from_env(env) == expected


@pytest.mark.parametrize(
    "local_rank, visible, expected",
    [
        (0, 4, 0),
        (3, 4, 3),  # torchrun or srun --gres: every rank sees the node's GPUs
        (0, 1, 0),
        (3, 1, 0),  # srun --gpus-per-task=1: each rank sees its own GPU alone
        (2, 2, "only 2 GPUs are visible"),
        (0, 0, "no GPU is visible"),
    ],
)
def test_each_rank_trains_on_its_own_gpu(local_rank, visible, expected):
    from flows.distributed import rank_gpu

    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected) as info:
            rank_gpu(local_rank, visible)
        assert "--device cpu" in str(info.value) or "--nproc_per_node" in str(info.value)
    else:
        assert rank_gpu(local_rank, visible) == expected


def test_data_parallel_training_with_torchrun(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = ["--L", "4", "--n_layers", "2", "--hidden", "4", "--steps", "12", "--batch_size", "8"]
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29613",
            "-m",
            "flows.train",
            *args,
            "--eval_samples",
            "500",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # rank 0 alone prints
    assert summary["world_size"] == 2 and summary["steps"] == 12
    assert load_checkpoint(tmp_path / "checkpoint.pt")["world_size"] == 2


def test_sigusr1_checkpoints_and_training_goes_on(tmp_path):
    out = tmp_path / "out"
    args = ["--L", "4", "--n_layers", "2", "--hidden", "4", "--batch_size", "16", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.train", *args, "--steps", "400", "--log_every", "1",
         "--checkpoint_every", "0", "--eval_samples", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    for line in proc.stderr:
        if "step 20/" in line:
            break
    proc.send_signal(signal.SIGUSR1)
    for line in proc.stderr:
        if "step 40/" in line:
            break
    assert (out / "checkpoint.pt").exists()  # written on the signal, not only at the end
    mid = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 20 <= mid < 400
    proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 400
