"""Tiny random-weight policy files for a robot (VLM + AE checkpoints, q99 stats, tokenizer): nothing downloaded.

Shared by the policy/ROS tests (``tests/ros_policy``) and the simulation tests (``tests/sim``); ``tests/`` is on
``sys.path`` for every test because ``tests/conftest.py`` lives there (pytest's rootdir-relative import).

Default stats are fitted to the synthetic bag's joint motion (:func:`wp_policy.ros.bag_synth.joint_motion`), so the
normalised observations of a replayed bag fall inside [-1, 1] like real data would; :func:`sim_stats` gives stats in
LIBERO's state/action ranges for simulation rollouts. With the default ``MODEL_SEED`` the untrained planner emits
non-stop plans (d = 9 per waypoint for r1lite) for any input; seed 1 gives d = 25.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wp_policy.models import WaypointActionExpert, WaypointVLM, ae_config, save_pretrained, vlm_config
from wp_policy.normalize import DatasetStats, fit_stats
from wp_policy.robot_config import RobotConfig

MODEL_SEED = 0


@dataclass(frozen=True)
class PolicyFiles:
    vlm: Path
    ae: Path
    stats: Path
    tokenizer: Path

    def launch_args(self) -> list[str]:
        """wp-launch / ros2 launch arguments naming these files."""
        return [f"vlm_checkpoint:={self.vlm}", f"ae_checkpoint:={self.ae}", f"stats:={self.stats}",
                f"tokenizer:={self.tokenizer}"]

    def policy_yaml(self, path: Path, robot: str, **fields) -> Path:
        """A PolicyConfig YAML naming these files (``fields``: further PolicyConfig keys, e.g. num_waypoints)."""
        import yaml

        data = {"robot": robot, "vlm_checkpoint": str(self.vlm), "ae_checkpoint": str(self.ae),
                "stats_path": str(self.stats), "tokenizer_path": str(self.tokenizer), **fields}
        path.write_text(yaml.safe_dump(data))
        return path


def bag_stats(robot: RobotConfig) -> DatasetStats:
    """Stats of the synthetic bag's joint motion (what the ROS replay tests feed)."""
    from wp_policy.ros.bag_synth import joint_motion

    pos, _ = joint_motion(robot, np.arange(0.0, 60.0, 0.01), seed=3)
    return DatasetStats(action=fit_stats(robot.action_to_model(pos[:, : robot.action.dim])),
                        proprio=fit_stats(robot.proprio_to_model(pos)))


def sim_stats(robot: RobotConfig, seed: int = 0) -> DatasetStats:
    """Stats spanning LIBERO's ranges (eef pos around the table, axis-angle, finger qpos; actions in [-1, 1])."""
    rng = np.random.default_rng(seed)
    n = 2000
    lo = np.array([-0.4, -0.4, 0.7, -3.2, -3.2, -3.2, -0.045, -0.045])
    hi = np.array([0.4, 0.4, 1.3, 3.2, 3.2, 3.2, 0.045, 0.045])
    proprio = rng.uniform(lo, hi, size=(n, 8))[:, : robot.proprio.dim]
    actions = rng.uniform(-1.0, 1.0, size=(n, robot.action.dim))
    actions[:, list(robot.action.gripper_dims)] = rng.choice([-1.0, 1.0], size=(n, len(robot.action.gripper_dims)))
    return DatasetStats(action=fit_stats(robot.action_to_model(actions)),
                        proprio=fit_stats(robot.proprio_to_model(proprio)))


def write_sim_policy(out: Path, tokenizer: Path, seed: int = MODEL_SEED, **fields) -> Path:
    """Tiny LIBERO-robot policy files with :func:`sim_stats` plus a PolicyConfig YAML naming them (returned)."""
    from wp_policy.robot_config import load_robot_config

    robot = load_robot_config("libero")
    files = write_tiny_policy(out, robot, tokenizer, seed, stats=sim_stats(robot))
    return files.policy_yaml(out / "policy.yaml", "libero", **fields)


def write_tiny_policy(out: Path, robot: RobotConfig, tokenizer: Path, seed: int = MODEL_SEED,
                      stats: DatasetStats | None = None) -> PolicyFiles:
    """Checkpoints, stats (default :func:`bag_stats`) and the tokenizer path for ``robot`` under ``out``;
    ``seed`` seeds the random weights."""
    keys = tuple(c.model_key for c in robot.cameras)
    torch.manual_seed(seed)
    vlm = save_pretrained(WaypointVLM(vlm_config("tiny", proprio_dim=robot.proprio.dim, image_keys=keys)), out / "vlm")
    ae = save_pretrained(WaypointActionExpert(ae_config("tiny", image_keys=keys)), out / "ae")
    stats_path = (stats if stats is not None else bag_stats(robot)).save(out / "stats.json")
    return PolicyFiles(vlm, ae, stats_path, Path(tokenizer))
