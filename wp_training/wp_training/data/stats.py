"""Normalisation statistics of an RLDS dataset: the one stats file the AE and the VLM share.

Statistics are taken in model space before normalisation, i.e. on exactly what the normaliser will see:
actions = ``robot.action_to_model(robot.select_action(action))`` (selected dims, gripper mapped to [0, 1]) and
proprio = ``robot.proprio_to_model(robot.select_proprio(concat(state_keys)))``, over every step of every episode.
Output is :meth:`wp_policy.normalize.DatasetStats.save`'s JSON (mean/std/min/max/q01/q99 per dim + counts).

Example::

    wp-data stats --rlds data/libero_object_no_noops/libero_object_no_noops/1.0.0 --robot libero \\
        --out data/libero_object_wp/norm_stats/dataset_statistics.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wp_policy.normalize import DatasetStats, fit_stats
from wp_policy.robot_config import RobotConfig
from wp_policy.transforms import dataset_action_to_model
from wp_training.data.rlds_reader import RldsReader, concat_keys


def model_action(episode: dict, robot: RobotConfig) -> np.ndarray:
    """Dataset actions -> model space, not normalised: ``float64 [T, action.dim]``."""
    return dataset_action_to_model(robot, episode["action"])


def episode_proprio(episode: dict, robot: RobotConfig) -> np.ndarray:
    """Concatenated state keys -> the robot's physical proprio ``[T, proprio.dim]`` (what a runtime observation
    holds; :class:`wp_policy.transforms.ProprioTransform` takes it from there)."""
    return robot.select_proprio(concat_keys(episode["observation"], robot.state_keys))


def model_proprio(episode: dict, robot: RobotConfig) -> np.ndarray:
    """Concatenated state keys -> model space, not normalised: ``float64 [T, proprio.dim]``."""
    return robot.proprio_to_model(episode_proprio(episode, robot))


def model_space(episode: dict, robot: RobotConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(actions [T, action.dim], proprio [T, proprio.dim])`` of one episode in model space, checked finite."""
    action, proprio = model_action(episode, robot), model_proprio(episode, robot)
    for name, x in (("action", action), ("proprio", proprio)):
        if not np.all(np.isfinite(x)):
            steps = np.unique(np.nonzero(~np.isfinite(x))[0])[:5].tolist()
            raise ValueError(f"episode {index}: {name} contains NaN or inf (first steps: {steps})")
    return action, proprio


def compute_stats(reader: RldsReader, robot: RobotConfig, progress=None) -> DatasetStats:
    reader.check_robot(robot, cameras=False)
    actions, proprios = [], []
    for index, episode in reader.episodes(observation_keys=robot.state_keys, step_keys=("action",)):
        a, p = model_space(episode, robot, index)
        actions.append(a.astype(np.float32))
        proprios.append(p.astype(np.float32))
        if progress is not None:
            progress.update(1)
    if not actions:
        raise ValueError(f"{reader.dir}: split {reader.split!r} has no episodes")
    action, proprio = np.concatenate(actions), np.concatenate(proprios)
    return DatasetStats(fit_stats(action), fit_stats(proprio), num_transitions=len(action),
                        num_trajectories=len(actions))


def run_stats(rlds_dir: str | Path, robot: RobotConfig, out: str | Path, split: str = "train",
              show_progress: bool = True) -> tuple[Path, DatasetStats]:
    from tqdm import tqdm

    reader = RldsReader(rlds_dir, split)
    with tqdm(total=reader.num_episodes, desc="statistics", unit="ep", disable=not show_progress) as bar:
        stats = compute_stats(reader, robot, bar)
    return stats.save(out), stats
