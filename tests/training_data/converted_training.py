"""Training on converted robot data with the project's own commands: extract waypoints -> stats -> tokenizer -> a
few tiny AE and VLM steps (used by the recording-to-commands chain tests)."""

import json

import numpy as np

from wp_policy.paths import config_dir
from wp_policy.robot_config import load_robot_config
from wp_training.data_cli import main as data_main
from wp_training.train_cli import main as train_main

TRAIN = ["num_steps=3", "optim.warmup_steps=1", "log.every_steps=1", "checkpoint.every_steps=3"]


def prepare_and_train(robot_name: str, rlds, keys: list[str], tmp_path) -> dict:
    wp, stats, tok = tmp_path / "wp", tmp_path / "stats.json", tmp_path / "tokenizer.model"
    assert data_main(["extract-waypoints", "--rlds", str(rlds), "--robot", robot_name, "--keys", *keys,
                      "--threshold", "0.01", "--workers", "0", "--out", str(wp)]) == 0
    assert data_main(["stats", "--rlds", str(rlds), "--robot", robot_name, "--out", str(stats)]) == 0
    assert data_main(["tokenizer", "--rlds", str(rlds), "--out", str(tok)]) == 0
    robot = load_robot_config(robot_name)
    filtered = next((wp / f"waypoint_filtered_rlds__{robot.robot_type}").iterdir())
    common = [f"data.robot={robot_name}", f"data.stats_path={stats}", f"data.tokenizer_path={tok}", *TRAIN]
    assert train_main(["--mode", "ae", "--config", str(config_dir() / "train/tiny_ae_libero.yaml"),
                       f"run_dir={tmp_path / 'ae'}", f"data.rlds_dir={rlds}",
                       f"data.waypoint_indices={wp / 'waypoint_indices.json'}", "data.prompt_len=128", *common]) == 0
    assert train_main(["--mode", "vlm", "--config", str(config_dir() / "train/tiny_vlm_libero.yaml"),
                       f"run_dir={tmp_path / 'vlm'}", f"data.rlds_dir={filtered}", "data.max_token_len=320",
                       *common]) == 0
    for mode in ("ae", "vlm"):
        rows = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
        losses = [r["train/loss"] for r in rows if "train/loss" in r]
        assert len(losses) == 3 and np.all(np.isfinite(losses))
    return {"stats": stats, "tokenizer": tok}
