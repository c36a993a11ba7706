"""Tiny synthetic RLDS datasets in the LIBERO and R1 Lite layouts, written with the real writer.

Trajectories move piecewise-linearly through random keypoints (with small noise), so waypoint extraction has
real structure to find, and grippers close and open once per episode. Images are flat colours that encode where
they came from, so a dataset sample can be traced back to its episode and step:

    channel 0 = step % 256, channel 1 = episode % 256, channel 2 = 40 * camera index

(PNG by default, so the values survive exactly.) Episode ``i`` has ``T + 3 i`` steps (distinct lengths catch
index mix-ups). Used by tests/training_data and bench/; other suites can import it after putting this directory
on ``sys.path`` (conftest.py here re-exports the builders as fixtures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_training.data.rlds_writer import write_rlds

INSTRUCTIONS = ("pick up the red cube and lift it", "put the bowl on the plate", "open the top drawer")


def step_image(episode: int, step: np.ndarray | int, camera: int, size: int) -> np.ndarray:
    """``uint8 [len(step), size, size, 3]`` flat images encoding (step, episode, camera)."""
    steps = np.atleast_1d(step)
    img = np.empty((len(steps), size, size, 3), np.uint8)
    img[..., 0] = (steps % 256)[:, None, None]
    img[..., 1] = episode % 256
    img[..., 2] = 40 * camera
    return img


def piecewise_path(rng: np.random.Generator, n: int, dim: int, scale: float, noise: float) -> np.ndarray:
    """``[n, dim]``: straight moves between 3..6 random keypoints plus gaussian noise."""
    k = int(rng.integers(3, 7))
    knots_t = np.sort(np.concatenate([[0, n - 1], rng.choice(np.arange(1, n - 1), k - 2, replace=False)]))
    knots = np.cumsum(rng.normal(0, scale, (k, dim)), axis=0)
    path = np.stack([np.interp(np.arange(n), knots_t, knots[:, d]) for d in range(dim)], axis=1)
    return path + rng.normal(0, noise, path.shape)


def _gripper_closed(rng: np.random.Generator, n: int) -> np.ndarray:
    close, reopen = sorted(rng.choice(np.arange(2, n - 2), 2, replace=False))
    closed = np.zeros(n, bool)
    closed[close:reopen] = True
    return closed


def libero_episodes(n_episodes: int, T: int, seed: int = 0, image_size: int = 32) -> list[dict]:
    """LIBERO layout: state [8] = eef pos 3 + axis-angle 3 + fingers 2; action [7] with gripper -1 open / +1 close."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_episodes):
        n = T + 3 * i
        closed = _gripper_closed(rng, n)
        pose = piecewise_path(rng, n, 6, 0.05, 0.0005)
        fingers = np.where(closed, 0.001, 0.039)[:, None] * np.array([1.0, -1.0])
        delta = np.diff(pose, axis=0, append=pose[-1:])
        action = np.concatenate([np.clip(delta[:, :3] / 0.05, -1, 1), np.clip(delta[:, 3:] / 0.5, -1, 1),
                                 np.where(closed, 1.0, -1.0)[:, None]], axis=1)
        out.append({
            "observation": {"image": step_image(i, np.arange(n), 0, image_size),
                            "wrist_image": step_image(i, np.arange(n), 1, image_size),
                            "state": np.concatenate([pose, fingers], axis=1)},
            "action": action,
            "language_instruction": INSTRUCTIONS[i % len(INSTRUCTIONS)],
            "success": True,
            "file_path": f"synthetic/libero_{i}.hdf5",
        })
    return out


def r1lite_episodes(n_episodes: int, T: int, seed: int = 0, image_size: int = 32) -> list[dict]:
    """R1 Lite layout: 6 + 1 + 6 + 1 state keys (joints in rad, grippers in mm stroke), 26-D action."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_episodes):
        n = T + 3 * i
        arms = piecewise_path(rng, n, 12, 0.2, 0.0002)
        strokes = [np.where(_gripper_closed(rng, n), 5.0, 95.0)[:, None] for _ in range(2)]
        target = np.concatenate([arms[:, :6], strokes[0], arms[:, 6:], strokes[1]], axis=1)
        target = np.concatenate([target[1:], target[-1:]])  # command = next state
        extra = rng.normal(0, 0.01, (n, 12))  # torso + chassis dims the policy drops
        out.append({
            "observation": {
                "image_camera_head": step_image(i, np.arange(n), 0, image_size),
                "image_camera_wrist_left": step_image(i, np.arange(n), 1, image_size),
                "image_camera_wrist_right": step_image(i, np.arange(n), 2, image_size),
                "joint_position_arm_left": arms[:, :6],
                "gripper_state_left": strokes[0],
                "joint_position_arm_right": arms[:, 6:],
                "gripper_state_right": strokes[1],
            },
            "action": np.concatenate([target, extra], axis=1),
            "language_instruction": INSTRUCTIONS[(i + 1) % len(INSTRUCTIONS)],
            "success": i % 4 != 3,
        })
    return out


def make_libero_rlds(tmp_path: str | Path, n_episodes: int = 4, T: int = 40, *, seed: int = 0,
                     image_size: int = 32, encoding: str = "png", name: str = "libero_tiny",
                     robot: RobotConfig | None = None) -> Path:
    """Write a LIBERO-layout RLDS under ``tmp_path``; returns the directory holding dataset_info.json."""
    robot = robot or load_robot_config("libero")
    return write_rlds(tmp_path, libero_episodes(n_episodes, T, seed, image_size), robot, name,
                      image_size=image_size, image_encoding=encoding)


def make_r1lite_rlds(tmp_path: str | Path, n_episodes: int = 4, T: int = 40, *, seed: int = 0,
                     image_size: int = 32, encoding: str = "png", name: str = "r1lite_tiny",
                     robot: RobotConfig | None = None) -> Path:
    """Write an R1-Lite-layout RLDS under ``tmp_path``; returns the directory holding dataset_info.json."""
    robot = robot or load_robot_config("r1lite")
    return write_rlds(tmp_path, r1lite_episodes(n_episodes, T, seed, image_size), robot, name,
                      image_size=image_size, image_encoding=encoding)
