"""Fixtures for the trainer tests: the toy task on sys.path and a factory for small TrainConfigs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wp_policy.config_io import from_dict
from wp_training.engine.train_config import TrainConfig

TOY_DIR = Path(__file__).resolve().parent
if str(TOY_DIR) not in sys.path:
    sys.path.insert(0, str(TOY_DIR))

TOY_MODE = "toy_task:TASK"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def toy_config_dict(run_path: Path, **extra) -> dict:
    base = {
        "mode": TOY_MODE,
        "run_dir": str(run_path),
        "num_steps": 12,
        "batch_size": 8,
        "seed": 3,
        "precision": "fp32",
        "optim": {"peak_lr": 3e-3, "end_lr": 1e-4, "warmup_steps": 2},
        "checkpoint": {"every_steps": 4, "keep_last": 2},
        "log": {"every_steps": 2},
        "loader": {"num_workers": 0},
        "model": {"hidden": 16},
    }
    return _merge(base, extra)


@pytest.fixture
def toy_config(tmp_path):
    """``toy_config(**overrides)`` -> TrainConfig for the toy task writing under a fresh tmp run_dir."""

    def make(run_name: str = "run", **extra) -> TrainConfig:
        return from_dict(TrainConfig, toy_config_dict(tmp_path / run_name, **extra), source="<toy>")

    return make
