"""Gripper conventions: dataset space -> model space -> execution space, per robot family.

Model space is the same for every robot: a gripper value in [0, 1] with 0 = closed and 1 = open. Gripper dims are
excluded from q99 normalisation (mask False), so this [0, 1] value is what the models see and predict.

LIBERO (docs/models.md, Gripper): dataset action in [-1, +1] with -1 = open, +1 = close.
  to model:     clip(x, 0, 1) then 1 - x          -> [0, 1], 0 = close, 1 = open
  to execution: 2x - 1, binarise with sign, negate -> {-1 (open), +1 (close)}; a tie (x == 0.5) closes, so the
                robot never receives the ambiguous 0 a plain np.sign would give.
  LIBERO proprio holds finger joint positions (continuous, normalised like any joint): no gripper transform.
R1 Lite (Galaxea SDK): stroke 0..100 mm, 0 = closed, 100 = open, for both feedback and command.
  to model: stroke / 100; to execution: clip(100 x, 0, 100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GripperTransform:
    """Maps gripper values between the dataset/robot convention and model space. Arrays of any shape."""

    name: str

    def action_to_model(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def action_to_execution(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def proprio_to_model(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def proprio_to_physical(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class LiberoGripper(GripperTransform):
    name: str = "libero"

    def action_to_model(self, x):
        return 1.0 - np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)

    def action_to_execution(self, x):
        signed = np.asarray(x, dtype=np.float64) * 2.0 - 1.0
        return -np.where(signed > 0.0, 1.0, -1.0)

    def proprio_to_model(self, x):
        return np.asarray(x, dtype=np.float64)

    def proprio_to_physical(self, x):
        return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class StrokeGripper(GripperTransform):
    """Parallel gripper commanded by stroke in [0, max_stroke], 0 = closed (Galaxea R1 Lite: 100 mm)."""

    name: str = "stroke"
    max_stroke: float = 100.0

    def action_to_model(self, x):
        return np.asarray(x, dtype=np.float64) / self.max_stroke

    def action_to_execution(self, x):
        return np.clip(np.asarray(x, dtype=np.float64) * self.max_stroke, 0.0, self.max_stroke)

    def proprio_to_model(self, x):
        return np.asarray(x, dtype=np.float64) / self.max_stroke

    def proprio_to_physical(self, x):
        return np.asarray(x, dtype=np.float64) * self.max_stroke


@dataclass(frozen=True)
class IdentityGripper(GripperTransform):
    """For robots whose data already stores the gripper in model space ([0, 1], 1 = open)."""

    name: str = "identity"

    def action_to_model(self, x):
        return np.asarray(x, dtype=np.float64)

    def action_to_execution(self, x):
        return np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)

    def proprio_to_model(self, x):
        return np.asarray(x, dtype=np.float64)

    def proprio_to_physical(self, x):
        return np.asarray(x, dtype=np.float64)


GRIPPER_TRANSFORMS: dict[str, GripperTransform] = {
    "libero": LiberoGripper(),
    "r1lite_stroke": StrokeGripper(name="r1lite_stroke", max_stroke=100.0),
    "identity": IdentityGripper(),
}


def get_gripper_transform(name: str) -> GripperTransform:
    try:
        return GRIPPER_TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown gripper transform {name!r}; known: {sorted(GRIPPER_TRANSFORMS)}") from None
