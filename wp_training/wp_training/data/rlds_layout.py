"""The RLDS layout shared by the reader and the writer: what a step holds, checks against a robot, dataset paths.

Layout (one TFDS example per episode; feature names come from the robot config):

  steps (tfds Dataset), per step:
    observation/<camera rlds_key>   Image uint8 [H, W, 3], JPEG (default) or PNG (lossless)
    observation/<state key>         Tensor float32 [d], one per ``robot.state_keys`` entry
    action                          Tensor float32 [dataset_action_dim]
    language_instruction            Text
    reward, discount                float32: reward 1 on the last step of a successful episode, discount 1
    is_first, is_last, is_terminal  bool: is_terminal = is_last and the episode succeeded
    <step fields>                   optional scalars (the waypoint-filtered RLDS adds ``duration``, ``source_step``)
  episode_metadata: file_path (Text), success (bool)

For the LIBERO config this is the ``*_no_noops`` layout (observation/image, observation/wrist_image,
observation/state [8], action [7]); for R1 Lite the three ``image_camera_*`` views, the four joint/gripper state
keys and the 26-D action. Readers take the directory that directly contains ``dataset_info.json`` (what
``tfds.builder_from_directory`` needs); :func:`resolve_dataset_dir` names the right subdirectory when given a parent.

Writing (:mod:`wp_training.data.rlds_writer`) goes through TFDS, so the files are ordinary TFDS datasets; reading
(:mod:`wp_training.data.rlds_reader`) does not import TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from wp_policy.robot_config import RobotConfig

DATASET_INFO = "dataset_info.json"
ENCODINGS = ("jpeg", "png")
JPEG_QUALITY = 95
DERIVED_STEP_KEYS = ("reward", "discount", "is_first", "is_last", "is_terminal")
EPISODE_KEYS = ("observation", "action", "language_instruction", "success", "file_path")
STEP_FIELD_DTYPES = ("int32", "int64", "float32", "bool")


class RldsError(ValueError):
    """An RLDS directory or episode is missing, malformed or does not match the robot config."""


def tf_modules():
    """Import TensorFlow + TFDS quietly and keep TF off the GPUs (the GPUs belong to torch)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised in this process: too late to change, and nothing to do
        pass
    tfds.disable_progress_bar()
    return tf, tfds


def resolve_dataset_dir(path: str | Path) -> Path:
    """``path`` if it directly contains dataset_info.json; otherwise an error naming the directory to use."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RldsError(f"{path}: RLDS dataset directory not found")
    if (path / DATASET_INFO).is_file():
        return path
    found = sorted({p.parent for pattern in ("*/", "*/*/", "*/*/*/") for p in path.glob(pattern + DATASET_INFO)})
    if found:
        rest = f" (other candidates: {', '.join(map(str, found[1:4]))})" if len(found) > 1 else ""
        raise RldsError(
            f"{path} does not directly contain {DATASET_INFO}; TFDS needs the version directory that does. "
            f"Point at {found[0]}{rest}"
        )
    raise RldsError(f"{path}: no {DATASET_INFO} here or up to three levels below; this is not a TFDS/RLDS dataset")


# ---- layout -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RldsLayout:
    """What a dataset's steps hold (read from its features, or built for writing)."""

    image_shapes: Mapping[str, tuple[int, int, int]]  # camera rlds_key -> (H, W, 3)
    image_encoding: str
    state_dims: Mapping[str, int]  # non-image observation key -> dim
    action_dim: int
    step_fields: Mapping[str, str]  # extra scalar step field -> dtype name

    def features(self):
        """The TFDS FeaturesDict of this layout."""
        _, tfds = tf_modules()
        F = tfds.features
        observation = {k: F.Image(shape=s, dtype=np.uint8, encoding_format=self.image_encoding)
                       for k, s in self.image_shapes.items()}
        observation.update({k: F.Tensor(shape=(d,), dtype=np.float32) for k, d in self.state_dims.items()})
        steps = {
            "observation": F.FeaturesDict(observation),
            "action": F.Tensor(shape=(self.action_dim,), dtype=np.float32),
            "language_instruction": F.Text(),
            "reward": F.Scalar(dtype=np.float32),
            "discount": F.Scalar(dtype=np.float32),
            **{k: F.Scalar(dtype=np.bool_) for k in ("is_first", "is_last", "is_terminal")},
            **{k: F.Scalar(dtype=np.dtype(t)) for k, t in self.step_fields.items()},
        }
        return F.FeaturesDict({
            "steps": F.Dataset(steps),
            "episode_metadata": F.FeaturesDict({"file_path": F.Text(), "success": F.Scalar(dtype=np.bool_)}),
        })

    def check_robot(self, robot: RobotConfig, where: str, cameras: bool = True) -> None:
        """Raise RldsError listing every way this dataset does not fit ``robot``."""
        problems = []
        if cameras:
            missing = [c.rlds_key for c in robot.cameras if c.rlds_key not in self.image_shapes]
            if missing:
                problems.append(f"camera key(s) {missing} missing (images present: {sorted(self.image_shapes)})")
        missing = [k for k in robot.state_keys if k not in self.state_dims]
        if missing:
            problems.append(f"state key(s) {missing} missing (present: {sorted(self.state_dims)})")
        elif sum(self.state_dims[k] for k in robot.state_keys) <= max(robot.proprio.indices):
            total = sum(self.state_dims[k] for k in robot.state_keys)
            problems.append(f"state keys {list(robot.state_keys)} hold {total} dims, proprio.indices need "
                            f"{max(robot.proprio.indices) + 1}")
        if self.action_dim != robot.dataset_action_dim:
            problems.append(f"action has {self.action_dim} dims, robot {robot.robot_type} expects "
                            f"dataset_action_dim {robot.dataset_action_dim}")
        if problems:
            raise RldsError(f"{where}: does not match robot config {robot.robot_type!r}: " + "; ".join(problems))


ImageSize = int | tuple[int, int] | Mapping[str, tuple[int, int]]


def layout_for_robot(
    robot: RobotConfig,
    state_dims: Mapping[str, int],
    image_size: ImageSize,
    image_encoding: str = "jpeg",
    step_fields: Mapping[str, str] | None = None,
) -> RldsLayout:
    """The layout :func:`write_rlds` uses; ``image_size``: one square side, one ``(H, W)``, or one per rlds_key."""
    shapes = {}
    for cam in robot.cameras:
        size = image_size.get(cam.rlds_key) if isinstance(image_size, Mapping) else image_size
        if size is None:
            raise RldsError(f"image_size has no entry for camera {cam.rlds_key!r}")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h <= 0 or w <= 0:
            raise RldsError(f"image_size must be positive, got {size} for camera {cam.rlds_key!r}")
        shapes[cam.rlds_key] = (int(h), int(w), 3)
    if image_encoding not in ENCODINGS:
        raise RldsError(f"image_encoding must be one of {list(ENCODINGS)}, got {image_encoding!r}")
    fields = dict(step_fields or {})
    bad = {k: t for k, t in fields.items() if t not in STEP_FIELD_DTYPES}
    if bad:
        raise RldsError(f"step field dtypes {bad} not supported; use {list(STEP_FIELD_DTYPES)}")
    clash = set(fields) & {*DERIVED_STEP_KEYS, "observation", "action", "language_instruction"}
    if clash:
        raise RldsError(f"step field name(s) {sorted(clash)} are reserved by the RLDS layout")
    return RldsLayout(
        image_shapes=shapes,
        image_encoding=image_encoding,
        state_dims={k: int(state_dims[k]) for k in robot.state_keys},
        action_dim=robot.dataset_action_dim,
        step_fields=fields,
    )
