"""Gripper conventions: the robot's gripper values (dataset action, command, measurement) <-> model space.

Model space is the same for every robot: a gripper value in [0, 1] with 0 = closed and 1 = open. Gripper dims are
excluded from q99 normalisation (mask False), so this [0, 1] value is what the models see and predict.

A robot describes its gripper by numbers, not by name (robot config ``gripper:``): for the dataset action, the
command and the measurement, the value that means *closed* and the value that means *open*, in the robot's unit.
Between them the mapping is linear; ``open < closed`` (a "close" command of +1) is allowed.

- action -> model: ``(x - closed) / (open - closed)``, clipped to [0, 1] (a recorded value past the range is the
  range's end);
- model -> command: ``closed + m (open - closed)`` clipped to the command range; a ``binary`` command sends only
  ``open`` (m > 0.5) or ``closed`` (m <= 0.5: a tie closes, never an ambiguous middle value);
- measurement <-> model: the same linear map, not clipped (so it inverts exactly).

The shipped robots in these terms (configs/robots/):

- R1 Lite (Galaxea SDK): stroke 0..100 mm, 0 = closed, for action, command and feedback:
  ``action: {closed: 0.0, open: 100.0, unit: mm}``;
- LIBERO (docs/models.md, Gripper): dataset action in [-1, +1] with -1 = open, +1 = close, mapped as
  ``1 - clip(x, 0, 1)``, i.e. ``action: {closed: 1.0, open: 0.0}`` (every value <= 0 is open); the command is the
  binarised {-1 open, +1 close}: ``command: {closed: 1.0, open: -1.0, binary: true}``. LIBERO's proprio holds finger
  joint positions (no gripper dims), so its measurement range is the model range:
  ``proprio: {closed: 0.0, open: 1.0}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GripperRange:
    """The values meaning fully closed and fully open on one side (action, command or measurement)."""

    closed: float
    open: float
    unit: str = ""  # documentation and plot labels only ("mm", "m", "")
    binary: bool = False  # commands only: send ``closed`` or ``open``, nothing in between

    def __post_init__(self):
        if not (np.isfinite(self.closed) and np.isfinite(self.open)) or self.closed == self.open:
            raise ValueError(f"closed and open must be different finite numbers, got {self.closed} / {self.open}")

    def to_model(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.closed) / (self.open - self.closed)

    def from_model(self, m: np.ndarray) -> np.ndarray:
        return self.closed + np.asarray(m, dtype=np.float64) * (self.open - self.closed)


@dataclass(frozen=True)
class GripperConfig:
    """Robot config ``gripper:``. ``command`` and ``proprio`` default to the ``action`` range."""

    action: GripperRange
    command: GripperRange | None = None
    proprio: GripperRange | None = None

    def __post_init__(self):
        for side in ("command", "proprio"):
            if getattr(self, side) is None:
                object.__setattr__(self, side, self.action)
        for side in ("action", "proprio"):
            if getattr(self, side).binary:
                raise ValueError(f"{side}: binary applies to the command only")

    def action_to_model(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.action.to_model(x), 0.0, 1.0) + 0.0  # + 0.0: a closed value maps to 0, never -0

    def action_to_execution(self, m: np.ndarray) -> np.ndarray:
        c = self.command
        if c.binary:
            return np.where(np.asarray(m, dtype=np.float64) > 0.5, c.open, c.closed)
        return np.clip(c.from_model(m), min(c.closed, c.open), max(c.closed, c.open))

    def proprio_to_model(self, x: np.ndarray) -> np.ndarray:
        return self.proprio.to_model(x)

    def proprio_to_physical(self, m: np.ndarray) -> np.ndarray:
        return self.proprio.from_model(m)


REMOVED_GRIPPER_TRANSFORM = (
    "replaced by `gripper:` (closed/open values per side, see docs/robots.md); the old names are "
    "libero -> {action: {closed: 1.0, open: 0.0}, command: {closed: 1.0, open: -1.0, binary: true}, "
    "proprio: {closed: 0.0, open: 1.0}}, r1lite_stroke -> {action: {closed: 0.0, open: 100.0, unit: mm}}, "
    "identity -> {action: {closed: 0.0, open: 1.0}}"
)
