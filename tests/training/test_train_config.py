"""TrainConfig: shipped configs load; bad values fail with a ConfigError naming the field; batch and path checks."""

from __future__ import annotations

import pytest

from wp_policy.config_io import ConfigError, from_dict
from wp_policy.paths import config_dir
from wp_training.engine.train_config import (
    TrainConfig,
    check_global_batch,
    check_paths,
    global_batch,
    load_train_config,
)

from .conftest import toy_config_dict

SHIPPED = ["waypoint_ae_libero", "waypoint_vlm_libero", "waypoint_ae_r1lite", "waypoint_vlm_r1lite",
           "tiny_ae_libero", "tiny_vlm_libero"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_train_config(config_dir() / "train" / f"{name}.yaml")
    assert cfg.mode in ("ae", "vlm")
    if name.startswith("tiny"):
        assert cfg.memory.spec_path() is None and cfg.precision == "fp32" and cfg.dist.device == "cpu"
    else:
        assert cfg.memory.spec_path().is_file() and global_batch(cfg, 2) >= cfg.min_global_batch


def test_seed_values_in_full_configs():
    ae = load_train_config(config_dir() / "train" / "waypoint_ae_libero.yaml")
    vlm = load_train_config(config_dir() / "train" / "waypoint_vlm_libero.yaml")
    assert (ae.batch_size, ae.num_steps, ae.optim.peak_lr, ae.lora.enabled) == (32, 30000, 5e-5, False)
    assert (vlm.batch_size, check_global_batch(vlm, 2)) == (12, 24)
    assert vlm.data["stride"] == 4 and vlm.model["num_waypoints"] == 7 and vlm.data["max_token_len"] == 256


@pytest.mark.parametrize(
    "override, field",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"batch_size": -1}, "batch_size"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"min_global_batch": 0}, "min_global_batch"),
        ({"optim": {"peak_lr": -1.0}}, "optim.peak_lr"),
        ({"optim": {"peak_lr": float("nan")}}, "optim.peak_lr"),
        ({"optim": {"end_lr": 1.0}}, "optim.end_lr"),
        ({"optim": {"warmup_steps": 12}}, "optim.warmup_steps"),
        ({"optim": {"betas": [0.9, 1.0]}}, "optim.betas"),
        ({"optim": {"clip_grad_norm": 0.0}}, "optim.clip_grad_norm"),
        ({"checkpoint": {"keep_last": 0}}, "checkpoint.keep_last"),
        ({"checkpoint": {"every_steps": 0}}, "checkpoint.every_steps"),
        ({"log": {"every_steps": 0}}, "log.every_steps"),
        ({"lora": {"rank": 0}}, "lora.rank"),
        ({"lora": {"dropout": 1.0}}, "lora.dropout"),
        ({"loader": {"num_workers": -1}}, "loader.num_workers"),
        ({"precision": "fp16"}, "precision"),
        ({"dist": {"strategy": "zero3"}}, "dist.strategy"),
        ({"dist": {"strategy": "fsdp"}, "frozen_dtype": "bfloat16"}, "frozen_dtype"),
        ({"precision": "bf16", "frozen_dtype": "bfloat16"}, "frozen_dtype"),
        ({"precision": "fp32", "frozen_dtype": "bfloat16"}, "frozen_dtype"),
        ({"run_dir": ""}, "run_dir"),
        ({"batch_sise": 4}, "batch_sise"),
    ],
)
def test_bad_values_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        from_dict(TrainConfig, toy_config_dict(tmp_path, **override), source="bad.yaml")


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("mode: ae\nrun_dir: r\nnum_steps: ten\nbatch_size: 2\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: num_steps: expected an integer"):
        load_train_config(path)


def test_overrides_apply(tmp_path):
    cfg = load_train_config(config_dir() / "train" / "waypoint_ae_libero.yaml",
                            {"optim.peak_lr": 6e-5, "batch_size": 48})
    assert cfg.optim.peak_lr == 6e-5 and cfg.batch_size == 48


def test_global_batch_checked_against_minimum(toy_config):
    cfg = toy_config(batch_size=4, grad_accum=2, min_global_batch=16)
    assert check_global_batch(cfg, 2) == 16
    with pytest.raises(ConfigError, match=r"min_global_batch.*4 \(batch_size\) x 1 \(processes\) x 2.*grad_accum=4"):
        check_global_batch(cfg, 1)


def test_missing_paths_name_the_field(toy_config, tmp_path):
    with pytest.raises(ConfigError, match="pretrained_path: .*does not exist"):
        check_paths(toy_config(pretrained_path=str(tmp_path / "nope.safetensors")))
    with pytest.raises(ConfigError, match="memory.spec: .*does not exist"):
        check_paths(toy_config(memory={"spec": "memory/nope.yaml"}))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="run_dir: .*not a directory"):
        check_paths(toy_config(run_dir=str(tmp_path / "file")))
