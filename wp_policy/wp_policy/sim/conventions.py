"""LIBERO observation conventions, shared by the real LIBERO env and the robosuite stand-ins.

LIBERO's RLDS data (and every published LIBERO evaluation) sees the robosuite scene through these conversions, so a
policy trained on LIBERO data only works if simulation observations go through exactly the same ones:

- images: robosuite renders in the OpenGL convention (upside down); LIBERO rotates both views by 180 degrees
  (``img[::-1, ::-1]``), uint8 HWC RGB.
- state (8-D, float32): ``robot0_eef_pos`` (3) + axis-angle of ``robot0_eef_quat`` (3, the quaternion is **xyzw**)
  + ``robot0_gripper_qpos`` (2 finger joints; about +-0.04 open, 0 closed).
- action (7-D): delta position (3) + delta axis-angle (3) in the world frame, each in [-1, 1] (OSC_POSE scales +-1 to
  +-0.05 m and +-0.5 rad per step), gripper -1 = open, +1 = close.

The axis-angle conversion is the one LIBERO's data pipelines use (robosuite ``quat2axisangle``): angle
``2 acos(w)`` in [0, 2 pi] with no sign canonicalisation, so values match the datasets bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

STATE_DIM = 8
ACTION_DIM = 7
GRIPPER_OPEN = -1.0  # LIBERO action sign: -1 opens the fingers
GRIPPER_CLOSE = 1.0  # +1 closes them
WAIT_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, GRIPPER_OPEN)  # "do nothing, gripper open"

# our view name -> robosuite camera name (LIBERO protocol cameras); views match configs/robots/libero.yaml
CAMERAS: Mapping[str, str] = {"primary": "agentview", "wrist": "robot0_eye_in_hand"}

EEF_POS_KEY = "robot0_eef_pos"
EEF_QUAT_KEY = "robot0_eef_quat"  # xyzw
GRIPPER_QPOS_KEY = "robot0_gripper_qpos"
EEF_POS_DIMS = (0, 1, 2)  # where the state holds robot0_eef_pos (world frame, metres)


def camera_of_view(view: str) -> str:
    """The robosuite camera behind one of our view names (``primary`` -> ``agentview``)."""
    try:
        return CAMERAS[view]
    except KeyError:
        raise ValueError(f"unknown view {view!r}; views: {list(CAMERAS)}") from None


def quat_xyzw_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Axis-angle [3] of an xyzw quaternion [4], exactly as LIBERO's data conversion computes it."""
    q = np.asarray(quat, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"quaternion must have shape (4,) (xyzw), got {q.shape}")
    w = float(np.clip(q[3], -1.0, 1.0))
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def rotate_180(image: np.ndarray) -> np.ndarray:
    """LIBERO's image fix: rotate a robosuite frame [H, W, C] by 180 degrees (contiguous copy)."""
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    return np.ascontiguousarray(image[::-1, ::-1])


def libero_state(raw_obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The 8-D LIBERO state (float32) from a robosuite observation dict."""
    missing = [k for k in (EEF_POS_KEY, EEF_QUAT_KEY, GRIPPER_QPOS_KEY) if k not in raw_obs]
    if missing:
        raise KeyError(f"robosuite observation lacks {missing}; got keys {sorted(raw_obs)}")
    state = np.concatenate(
        [
            np.asarray(raw_obs[EEF_POS_KEY], dtype=np.float64),
            quat_xyzw_to_axis_angle(raw_obs[EEF_QUAT_KEY]),
            np.asarray(raw_obs[GRIPPER_QPOS_KEY], dtype=np.float64),
        ]
    )
    if state.shape != (STATE_DIM,):
        raise ValueError(f"LIBERO state must have {STATE_DIM} values, got {state.shape}")
    return state.astype(np.float32)


def libero_images(raw_obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """View -> uint8 [H, W, 3] image rotated 180 degrees, for every protocol camera present in ``raw_obs``."""
    images = {}
    for view, camera in CAMERAS.items():
        frame = raw_obs.get(f"{camera}_image")
        if frame is not None:
            images[view] = rotate_180(np.asarray(frame, dtype=np.uint8))
    return images
