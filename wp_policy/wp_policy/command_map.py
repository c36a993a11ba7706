"""Execution-space action vector <-> per-topic robot commands, as the robot config's ``ros.commands`` describes.

Each command topic takes some action dims. Kinds (all sent as ``sensor_msgs/JointState``, names from the config):
- ``joint_position`` (R1 Lite arms): ``position`` = joint targets (rad), ``velocity`` = the config's max velocities;
- ``gripper`` (R1 Lite grippers): ``position`` = [stroke] in mm, 0 = closed, 100 = open;
- ``raw`` (LIBERO): ``position`` = the action values as they are (7-D delta pose + gripper), no velocity.

The action must already have passed :class:`wp_policy.safety.SafetyFilter`; this module only routes values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wp_policy.robot_config import RobotConfig


@dataclass(frozen=True)
class CommandPayload:
    """One command message's content (ROS-free); ``position``/``velocity`` are float64 [len(names)] / [] ."""

    topic: str
    kind: str
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray


class CommandMapper:
    """Routes an execution-space action ``float [action.dim]`` to the robot's command topics and back."""

    def __init__(self, robot: RobotConfig):
        if not robot.ros.commands:
            raise ValueError(f"{robot.robot_type}: robot config has no ros.commands to send actions to")
        self.robot = robot
        self.commands = robot.ros.commands
        self.dim = robot.action.dim

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(c.topic for c in self.commands)

    def split(self, action: Sequence[float] | np.ndarray) -> list[CommandPayload]:
        """``float [action.dim]`` -> one payload per command topic, in config order."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.size != self.dim:
            raise ValueError(f"action has {a.size} values, {self.robot.robot_type} commands need {self.dim}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action has non-finite values: {a.tolist()}")
        out = []
        for cmd in self.commands:
            dims = list(cmd.action_dims)
            velocity = np.asarray(cmd.max_velocity, dtype=np.float64) if cmd.kind == "joint_position" else np.empty(0)
            names = tuple(self.robot.action.names[d] for d in dims)
            out.append(CommandPayload(cmd.topic, cmd.kind, names, a[dims].copy(), velocity))
        return out

    def join(self, positions: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Inverse of :meth:`split`: ``{topic: position}`` for every command topic -> ``float64 [action.dim]``."""
        out = np.full(self.dim, np.nan)
        for cmd in self.commands:
            if cmd.topic not in positions:
                raise KeyError(f"no command for topic {cmd.topic}; got {sorted(positions)}")
            pos = np.asarray(positions[cmd.topic], dtype=np.float64).reshape(-1)
            if pos.size != len(cmd.action_dims):
                raise ValueError(f"{cmd.topic}: expected {len(cmd.action_dims)} positions, got {pos.size}")
            out[list(cmd.action_dims)] = pos
        return out
