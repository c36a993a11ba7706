"""Multi-process runs through the real CLI: 2-process gloo DDP and FSDP under torchrun, and a SIGKILLed run that
resumes bit-exactly. Each starts fresh interpreters (forking a process that has run torch's OpenMP pool can hang),
hence slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

import toy_task
from wp_policy.config_io import from_dict
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.train_config import TrainConfig
from wp_training.engine.train_state import list_checkpoints
from wp_training.engine.trainer import train

from .conftest import TOY_DIR, toy_config_dict

pytestmark = pytest.mark.slow


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOY_DIR), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _write_config(tmp_path, name, **extra) -> tuple:
    data = toy_config_dict(tmp_path / name, **extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, from_dict(TrainConfig, data, source=str(path))


def _cli(config_path, *extra_args, torchrun=False, env=None, timeout=240) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else []
    mode = yaml.safe_load(config_path.read_text())["mode"]
    cmd = [sys.executable, *launcher, "-m", "wp_training.train_cli", "--mode", mode, "--config", str(config_path),
           *extra_args]
    return subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ddp_and_fsdp_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    runs = {}
    for strategy in ("ddp", "fsdp"):
        path, cfg = _write_config(tmp, strategy, num_steps=6, batch_size=4, grad_accum=2,
                                  checkpoint={"every_steps": 3}, dist={"strategy": strategy})
        proc = _cli(path, torchrun=True, env=_env(OMP_NUM_THREADS="1"))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        runs[strategy] = cfg
    return runs


def test_ddp_two_processes_stay_in_sync(ddp_and_fsdp_runs):
    cfg = ddp_and_fsdp_runs["ddp"]
    ckpts = list_checkpoints(cfg.run_dir / "checkpoints")
    assert [s for s, _ in ckpts] == [3, 6]
    for _, path in ckpts:
        ranks = [json.loads((path / f"rank_{r}.json").read_text()) for r in (0, 1)]
        assert ranks[0]["param_checksum"] == ranks[1]["param_checksum"]  # identical replicas...
        assert ranks[0]["rng"]["torch"] != ranks[1]["rng"]["torch"]  # ...drawing different noise per rank
        assert ranks[0]["data_batches"] == ranks[1]["data_batches"]
    _, summaries = read_jsonl(cfg.run_dir / "metrics.jsonl")
    assert summaries[0]["summary"]["world_size"] == 2 and summaries[0]["summary"]["global_batch"] == 16
    assert (cfg.run_dir / "final_model" / "model.safetensors").is_file()


def test_fsdp_matches_ddp(ddp_and_fsdp_runs):
    """Full sharding changes where the states live, not the maths: same data, same seeds, same weights."""
    final = {s: load_file(str(c.run_dir / "checkpoints" / "step_00000006" / "model.safetensors"))
             for s, c in ddp_and_fsdp_runs.items()}
    assert final["ddp"].keys() == final["fsdp"].keys()
    for key, value in final["ddp"].items():
        torch.testing.assert_close(final["fsdp"][key], value, rtol=1e-5, atol=1e-6)
    exported = toy_task.ToyModel.from_pretrained(ddp_and_fsdp_runs["fsdp"].run_dir / "final_model")
    assert torch.equal(exported.state_dict()["head.weight"], final["fsdp"]["head.weight"])


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    extra = {"mode": "toy_task:killing_task", "num_steps": 10, "batch_size": 6, "grad_accum": 2,
             "data": {"num_samples": 40}, "checkpoint": {"every_steps": 3}}
    path, cfg = _write_config(tmp_path, "killed", **extra)
    one_thread = {"OMP_NUM_THREADS": "1"}  # bit-exact comparisons need the same reduction order everywhere
    killed = _cli(path, env=_env(TOY_KILL_AFTER_SAMPLES=str(7 * 12 + 5), **one_thread))  # dies mid-step 8
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [s for s, _ in list_checkpoints(cfg.run_dir / "checkpoints")] == [3, 6]
    resumed = _cli(path, "--resume", env=_env(**one_thread))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train(from_dict(TrainConfig, toy_config_dict(tmp_path / "reference", **extra)), toy_task.TASK)
    finally:
        torch.set_num_threads(threads)
    for name in ("model.safetensors", "optimizer.safetensors"):
        ref = load_file(str(reference.checkpoint / name))
        got = load_file(str(cfg.run_dir / "checkpoints" / "step_00000010" / name))
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), name
