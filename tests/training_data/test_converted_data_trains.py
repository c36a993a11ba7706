"""From a robot recording or a LeRobot data set to a policy, with the project's own commands only: convert ->
extract waypoints -> stats -> tokenizer -> a few tiny AE and VLM training steps -> the exported checkpoints plan and
fill through ``WaypointPolicy`` on an observation of the converted data."""

import json

import numpy as np
import pytest
import yaml

from wp_policy.obs_sync import ObsSet
from wp_policy.paths import config_dir
from wp_policy.robot_config import load_robot_config
from wp_policy.runtime.policy import PolicyConfig, WaypointPolicy
from wp_training.data_cli import main as data_main
from wp_training.rlds_io import read_rlds
from wp_training.train_cli import main as train_main

pytestmark = pytest.mark.slow
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


def serve_one_step(robot_name: str, rlds, paths: dict, tmp_path) -> None:
    robot = load_robot_config(robot_name)
    policy = WaypointPolicy.from_config(PolicyConfig(
        robot=robot_name, vlm_checkpoint=str(tmp_path / "vlm" / "final_model"),
        ae_checkpoint=str(tmp_path / "ae" / "final_model"), stats_path=str(paths["stats"]),
        tokenizer_path=str(paths["tokenizer"]), max_token_len=320))
    ep = next(iter(read_rlds(rlds)))
    state = np.concatenate([ep["observation"][k][3] for k in robot.state_keys])
    obs = ObsSet(stamp_ns=1, images={c.view: ep["observation"][c.rlds_key][3] for c in robot.cameras},
                 proprio=robot.select_proprio(state).astype(np.float64))
    plan = policy.plan(obs, ep["language_instruction"])
    assert 1 <= len(plan.waypoints) <= 7
    for wp in plan.waypoints:
        assert wp.proprio.shape == (robot.proprio.dim,) and np.isfinite(wp.proprio).all()
    actions = policy.fill(obs, ep["language_instruction"], obs.proprio, plan.waypoints[0].proprio, duration=5)
    assert actions.shape == (5, robot.action.dim) and np.isfinite(actions).all()


def test_bag_to_trained_r1lite_policy(tmp_path):
    from test_from_bags import SPEC, make_bag
    from wp_policy.ros.bag_synth import write_synthetic_bag

    robot = load_robot_config("r1lite")
    write_synthetic_bag(tmp_path / "raw.mcap", robot, SPEC)
    bag = make_bag(robot, tmp_path / "raw.mcap", tmp_path / "demo.mcap")
    assert data_main(["from-bags", str(bag), "--robot", "r1lite", "--out", str(tmp_path / "rlds"),
                      "--image-size", "32"]) == 0
    rlds = tmp_path / "rlds" / "galaxea_r1_lite_bags" / "1.0.0"
    paths = prepare_and_train("r1lite", rlds, ["joint_position_arm_left", "joint_position_arm_right"], tmp_path)
    serve_one_step("r1lite", rlds, paths, tmp_path)


def test_lerobot_to_trained_libero_policy(tmp_path):
    from test_from_lerobot import LIBERO_MAP, make_v30

    src = make_v30(tmp_path / "lerobot", [30, 36, 28], codec="libx264")
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(LIBERO_MAP))
    assert data_main(["from-lerobot", str(src), "--map", str(tmp_path / "map.yaml"), "--robot", "libero",
                      "--out", str(tmp_path / "rlds"), "--image-size", "32"]) == 0
    rlds = tmp_path / "rlds" / "libero_lerobot" / "1.0.0"
    paths = prepare_and_train("libero", rlds, ["state"], tmp_path)
    serve_one_step("libero", rlds, paths, tmp_path)
