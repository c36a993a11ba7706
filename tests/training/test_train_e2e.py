"""``wp-train --mode ae|vlm`` end to end on a real (tiny) LIBERO RLDS: RLDS -> waypoints -> stats -> 30 training
steps through the CLI -> the exported checkpoint serves WaypointPolicy.fill / plan. Plus exact --resume with the
real streaming data, the tasks' config checks and parameter groups, and a 2-process gloo DDP run (slow)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from wp_policy.config_io import ConfigError, to_dict
from wp_policy.models import from_pretrained
from wp_policy.obs_sync import ObsSet
from wp_policy.paths import config_dir
from wp_policy.robot_config import load_robot_config
from wp_policy.runtime.policy import PolicyConfig, WaypointPolicy
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.train_config import load_train_config
from wp_training.engine.train_state import list_checkpoints, load_model_weights
from wp_training.engine.trainer import train
from wp_training.tasks.interface import get_task
from wp_training.train_cli import main as train_main

from .e2e_data import (  # noqa: F401  (libero_data is a fixture)
    INSTRUCTIONS,
    batch_loss,
    cli_overrides,
    data_overrides,
    fixed_batch,
    initial_model,
    libero_data,
    libero_episodes,
    tiny_config,
)


def _observation(step: int = 5, episode: int = 0) -> tuple[ObsSet, str]:
    ep = libero_episodes(1 + episode, 40)[episode]
    images = {"primary": ep["observation"]["image"][step], "wrist": ep["observation"]["wrist_image"][step]}
    return ObsSet(stamp_ns=123_000_000, images=images, proprio=ep["observation"]["state"][step].astype(np.float64)), \
        INSTRUCTIONS[episode]


def _train_cli(mode: str, data: dict, run_dir, *extra: str) -> int:
    config = config_dir() / f"train/tiny_{mode}_libero.yaml"
    args = ["--mode", mode, "--config", str(config), f"run_dir={run_dir}",
            *cli_overrides(data_overrides(mode, data)), *extra]
    return train_main(args)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ae", "vlm"])
def test_thirty_cli_steps_lower_the_loss_and_the_export_serves_the_policy(mode, libero_data, tmp_path):
    run_dir = tmp_path / mode
    cfg = tiny_config(mode, libero_data, run_dir)
    task = get_task(mode)
    batch = fixed_batch(task, cfg)
    before = batch_loss(initial_model(task, cfg), batch)

    assert _train_cli(mode, libero_data, run_dir) == 0

    steps, _ = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30]
    assert all(np.isfinite(r["train/loss"]) and r["train/grad_norm"] > 0 for r in steps)
    exported = from_pretrained(run_dir / "final_model")
    after = batch_loss(exported, batch)
    print(f"{mode}: fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before, (before, after)  # held-out-seed batch, fixed noise: learning, not luck

    checkpoint = {k: v for k, v in load_model_weights(list_checkpoints(run_dir / "checkpoints")[-1][1]).items()}
    for name, tensor in exported.state_dict().items():  # the export is the last checkpoint (tied weights aside)
        if name in checkpoint:
            assert torch.equal(tensor, checkpoint[name].float()), name

    key = "vlm_checkpoint" if mode == "vlm" else "ae_checkpoint"
    policy = WaypointPolicy.from_config(PolicyConfig(
        robot="libero", stats_path=str(libero_data["stats"]), tokenizer_path=str(libero_data["tokenizer"]),
        **{key: str(run_dir / "final_model")}))
    obs, instruction = _observation()
    if mode == "ae":
        start, end = obs.proprio, obs.proprio + np.array([0.01, 0, 0, 0, 0, 0, 0, 0])
        actions = policy.fill(obs, instruction, start, end, duration=9)
        assert actions.shape == (9, 7) and np.isfinite(actions).all()
        assert np.array_equal(actions, policy.fill(obs, instruction, start, end, duration=9))  # seeded noise
    else:
        plan = policy.plan(obs, instruction)
        assert 1 <= len(plan.waypoints) <= 7 and plan.stamp_ns == obs.stamp_ns
        for wp in plan.waypoints:
            assert wp.proprio.shape == (8,) and np.isfinite(wp.proprio).all() and 0 <= wp.duration <= 32


@pytest.mark.parametrize("mode", ["ae", "vlm"])
def test_resume_continues_exactly(mode, libero_data, tmp_path):
    """Resuming from the step-4 checkpoint (real streaming data, fast-forwarded; for the VLM across an epoch
    boundary of the tiny dataset) reproduces step 8 bit for bit."""
    common = {"num_steps": 8, "checkpoint.every_steps": 4, "log.every_steps": 4, "optim.warmup_steps": 2}
    full = tiny_config(mode, libero_data, tmp_path / "full", **common)
    task = get_task(mode)
    train(full, task)
    ckpts = dict(list_checkpoints(full.run_dir / "checkpoints"))
    assert sorted(ckpts) == [4, 8]

    resumed = tiny_config(mode, libero_data, tmp_path / "resumed", **common)
    shutil.copytree(ckpts[4], resumed.run_dir / "checkpoints" / ckpts[4].name)
    result = train(resumed, task, resume=True)
    assert result.step == 8
    expected, actual = load_model_weights(ckpts[8]), load_model_weights(result.checkpoint)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


@pytest.mark.parametrize("mode", ["ae", "vlm"])
def test_groups_lora_targets_and_fsdp_units_match_the_real_model(mode, libero_data, tmp_path):
    task = get_task(mode)
    cfg = tiny_config(mode, libero_data, tmp_path / "r")
    model_cfg, _ = task.parse_configs(cfg.model, cfg.data, "<test>")
    model = task.build_model(model_cfg)
    names = [n for n, _ in model.named_parameters()]
    for group, globs in task.module_groups.items():
        assert any(fnmatch.fnmatchcase(n, g) for n in names for g in globs), group
    all_globs = [g for globs in task.module_groups.values() for g in globs]
    grouped = {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in all_globs)}
    assert grouped == set(names)  # every parameter belongs to a group: freezing by group can reach all of them
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    targets = [n for n in linears if any(fnmatch.fnmatchcase(n, g) for g in task.lora_targets)]
    assert targets and all(".layers." in n for n in targets)
    classes = {type(m).__name__ for m in model.modules()}
    assert set(task.fsdp_units) <= classes
    if mode == "vlm":
        assert model_cfg.proprio_dim == 8 and model.config.proprio_dim == 8  # filled in from data.robot


@pytest.mark.parametrize(("mode", "overrides", "message"), [
    ("ae", {"model.vision": {"widht": 64}}, "model.vision: unknown field"),
    ("ae", {"model.llm": {"depth": 3}}, "expert depth 2 must equal the llm depth 3"),
    ("ae", {"model.image_keys": ["right_wrist_0_rgb"]}, "no camera of robot libero"),
    ("vlm", {"model.proprio_dim": 14}, "model.proprio_dim 14 != robot libero"),
    ("vlm", {"data.image_keys": ["base_0_rgb"]}, "data.image_keys"),
    ("ae", {"data.tokenizer_path": ""}, "tokenizer_path must name"),
    ("ae", {"model.relative_dims": [0, 8]}, r"model.relative_dims \[8\] are not proprio dims of robot libero"),
    ("ae", {"data.relative_dims": [0, 1]}, r"data.relative_dims \[0, 1\] is filled in from model.relative_dims"),
])
def test_config_errors_name_the_field(mode, overrides, message, libero_data, tmp_path):
    cfg = tiny_config(mode, libero_data, tmp_path / "r", **overrides)
    with pytest.raises(ConfigError, match=message):
        get_task(mode).parse_configs(cfg.model, cfg.data, "cfg.yaml")


def test_cli_reports_a_config_error(libero_data, tmp_path, capsys):
    assert _train_cli("vlm", libero_data, tmp_path / "r", "model.proprio_dim=14") == 2
    assert "proprio_dim 14" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_gloo_ddp(libero_data, tmp_path):
    cfg = tiny_config("ae", libero_data, tmp_path / "ddp", num_steps=3, batch_size=2,
                      **{"checkpoint.every_steps": 3, "log.every_steps": 1, "optim.warmup_steps": 1})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "wp_training.train_cli", "--mode", "ae", "--config", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ckpt = list_checkpoints(cfg.run_dir / "checkpoints")[-1][1]
    ranks = [json.loads((ckpt / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["param_checksum"] == ranks[1]["param_checksum"]
    _, summaries = read_jsonl(cfg.run_dir / "metrics.jsonl")
    assert summaries[0]["summary"]["world_size"] == 2 and summaries[0]["summary"]["global_batch"] == 4
    assert from_pretrained(cfg.run_dir / "final_model").config.kind == "waypoint_ae"


@pytest.mark.parametrize("name", sorted(p.name for p in (config_dir() / "train").glob("*.yaml")))
def test_every_shipped_config_parses_with_its_task(name):
    """The model/data sections of every configs/train file are valid for their mode (sizes, robot, cameras)."""
    cfg = load_train_config(config_dir() / "train" / name)
    model_cfg, data_cfg = get_task(cfg.mode).parse_configs(cfg.model, cfg.data, name)
    robot = load_robot_config(data_cfg.robot)
    config = model_cfg.model_config()
    assert {c.model_key for c in robot.cameras} & set(config.image_keys)
    if cfg.mode == "vlm":
        assert config.proprio_dim == robot.proprio.dim
