"""Fixtures for the data pipeline tests: tiny LIBERO / R1 Lite RLDS datasets, stats and a waypoint tokenizer.

The builders live in ``rlds_fixtures.py`` (plain functions, also used by bench/); the session fixtures here write
each dataset once per test session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rlds_fixtures import make_libero_rlds, make_r1lite_rlds  # noqa: E402

TINY_VOCAB = 1024


@pytest.fixture(scope="session")
def libero_rlds(tmp_path_factory) -> Path:
    """5 LIBERO-layout episodes of 40, 43, ... steps (PNG images)."""
    return make_libero_rlds(tmp_path_factory.mktemp("libero_rlds"), n_episodes=5, T=40)


@pytest.fixture(scope="session")
def r1lite_rlds(tmp_path_factory) -> Path:
    """4 R1-Lite-layout episodes of 40, 43, ... steps (PNG images)."""
    return make_r1lite_rlds(tmp_path_factory.mktemp("r1lite_rlds"), n_episodes=4, T=40)


@pytest.fixture(scope="session")
def make_tokenizer(sp_model_path):
    """``make_tokenizer(robot, max_token_len=256)`` -> WaypointTokenizer over the tiny SentencePiece model."""
    from wp_policy.tokenizer import TextTokenizer, TokenLayout, WaypointTokenizer

    def make(robot, max_token_len: int = 256, num_waypoints: int = 7):
        return WaypointTokenizer(TextTokenizer(sp_model_path), TokenLayout(TINY_VOCAB), robot.proprio.dim,
                                 num_waypoints, max_token_len)

    return make


def _prepare(rlds, robot_name, keys, threshold, out):
    """Waypoints + filtered RLDS + shared stats for one tiny dataset."""
    from wp_policy.robot_config import load_robot_config
    from wp_training.data.extract import ExtractConfig, run_extraction
    from wp_training.data.stats import run_stats

    result = run_extraction(ExtractConfig(source_dir=str(rlds), out_dir=str(out), robot=robot_name, keys=keys,
                                          threshold=threshold, workers=0), show_progress=False)
    stats_path, _ = run_stats(rlds, load_robot_config(robot_name), out / "norm_stats" / "dataset_statistics.json",
                              show_progress=False)
    return {"rlds": rlds, "index": result.index_path, "filtered": result.filtered_dir, "stats": stats_path}


@pytest.fixture(scope="session")
def libero_prepared(libero_rlds, tmp_path_factory) -> dict:
    """``{"rlds", "index", "filtered", "stats"}`` paths for the LIBERO fixture (state keys, threshold 0.005)."""
    return _prepare(libero_rlds, "libero", ("state",), 0.005, tmp_path_factory.mktemp("libero_prepared"))


@pytest.fixture(scope="session")
def r1lite_prepared(r1lite_rlds, tmp_path_factory) -> dict:
    """The same for the R1 Lite fixture (arm joint keys, threshold 0.001 as in the original recipe)."""
    keys = ("joint_position_arm_left", "joint_position_arm_right")
    return _prepare(r1lite_rlds, "r1lite", keys, 0.001, tmp_path_factory.mktemp("r1lite_prepared"))
