"""Real data for the end-to-end AE/VLM training tests: a tiny LIBERO RLDS (tests/training_data/rlds_fixtures.py),
its waypoints, waypoint-filtered RLDS and stats, the tiny SentencePiece model, and TrainConfigs for the tiny YAMLs.

Imported by test_train_e2e.py and test_feature_cache.py (the fixture is session-scoped: written once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from wp_policy.config_io import load_config
from wp_policy.models import WaypointActionExpert
from wp_policy.paths import config_dir
from wp_policy.transforms import collate
from wp_training.engine.distributed import seed_everything
from wp_training.engine.model_setup import build_training_model
from wp_training.engine.train_config import TrainConfig
from wp_training.tasks.interface import DataShard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training_data"))

from rlds_fixtures import INSTRUCTIONS, libero_episodes, make_libero_rlds  # noqa: E402,F401  (re-exported)

TINY_CONFIGS = {"ae": "train/tiny_ae_libero.yaml", "vlm": "train/tiny_vlm_libero.yaml"}


@pytest.fixture(scope="session")
def libero_data(tmp_path_factory, sp_model_path) -> dict:
    """{"rlds", "index", "filtered", "stats", "tokenizer"} for 5 LIBERO-layout episodes of 40.. steps."""
    from wp_policy.robot_config import load_robot_config
    from wp_training.data.extract import ExtractConfig, run_extraction
    from wp_training.data.stats import run_stats

    tmp = tmp_path_factory.mktemp("e2e_data")
    rlds = make_libero_rlds(tmp / "rlds", n_episodes=5, T=40)
    result = run_extraction(ExtractConfig(source_dir=str(rlds), out_dir=str(tmp / "wp"), robot="libero",
                                          keys=("state",), threshold=0.005, workers=0), show_progress=False)
    stats, _ = run_stats(rlds, load_robot_config("libero"), tmp / "wp" / "norm_stats" / "dataset_statistics.json",
                         show_progress=False)
    return {"rlds": rlds, "index": result.index_path, "filtered": result.filtered_dir, "stats": stats,
            "tokenizer": Path(sp_model_path)}


def data_overrides(mode: str, data: dict) -> dict:
    """Dotted overrides pointing a tiny config at ``data``."""
    common = {"data.stats_path": str(data["stats"]), "data.tokenizer_path": str(data["tokenizer"])}
    if mode == "ae":
        return {**common, "data.rlds_dir": str(data["rlds"]), "data.waypoint_indices": str(data["index"])}
    return {**common, "data.rlds_dir": str(data["filtered"])}


def cli_overrides(overrides: dict) -> list[str]:
    return [f"{k}={v}" for k, v in overrides.items()]


def tiny_config(mode: str, data: dict, run_dir: Path, **overrides) -> TrainConfig:
    return load_config(TrainConfig, config_dir() / TINY_CONFIGS[mode],
                       {"run_dir": str(run_dir), **data_overrides(mode, data), **overrides})


def initial_model(task, cfg: TrainConfig):
    """The model a fresh run of ``cfg`` starts from (the trainer seeds rank 0's RNG before building)."""
    model_cfg, _ = task.parse_configs(cfg.model, cfg.data, "<test>")
    seed_everything(cfg.seed, rank=0)
    model, _ = build_training_model(task, cfg, model_cfg, load_pretrained=False)
    return model


def fixed_batch(task, cfg: TrainConfig, n: int = 12, seed: int = 1234) -> dict:
    """``n`` samples of the run's data in a stream seeded apart from training: a fixed evaluation batch."""
    model_cfg, data_cfg = task.parse_configs(cfg.model, cfg.data, "<test>")
    dataset = task.build_dataset(model_cfg, data_cfg, DataShard(0, 1, seed, 0))
    samples = []
    for sample in dataset:
        samples.append(sample)
        if len(samples) == n:
            break
    return collate(samples)


@torch.no_grad()
def batch_loss(model, batch: dict, seed: int = 0) -> float:
    """The model's loss on ``batch``; the AE's flow-matching noise and times come from a fixed generator."""
    model.eval()
    if isinstance(model, WaypointActionExpert):
        loss, _ = model(batch, generator=torch.Generator().manual_seed(seed))
    else:
        loss, _ = model(batch)
    return float(loss)
