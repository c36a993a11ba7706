"""Execution-space action vector <-> per-topic robot commands, as the robot config's ``ros.commands`` describes.

Each command topic takes some action dims, in one of three message types (``msg_type``; the ROS messages are built in
:func:`wp_policy.ros.conversions.command_message`):
- ``sensor_msgs/JointState``: ``name`` = the joint names, ``position`` = the values; kind ``joint_position`` (R1 Lite
  arms) adds the config's max velocities in ``velocity``; ``gripper`` (R1 Lite: stroke in mm) and ``raw`` (LIBERO:
  the 7-D delta pose + gripper) send none;
- ``std_msgs/Float64MultiArray`` (ros2_control forward command controllers): ``data`` = the values in ``action_dims``
  order (the controller's joint order; the message has no names);
- ``trajectory_msgs/JointTrajectory`` (joint trajectory controller): one point with the values, ``time_from_start`` =
  one control period, so the controller reaches each command by the next tick.

The action must already have passed :class:`wp_policy.safety.SafetyFilter`; this module only routes values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wp_policy.obs_sync import InvalidInput, pick_joints
from wp_policy.robot_config import FLOAT64_MULTI_ARRAY, JOINT_STATE, JOINT_TRAJECTORY, CommandConfig, RobotConfig


@dataclass(frozen=True)
class CommandPayload:
    """One command message's content (ROS-free); ``position``/``velocity`` are float64 [len(names)] / [] ."""

    topic: str
    kind: str
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    msg_type: str = JOINT_STATE
    period_s: float = 0.0  # one control tick: a JointTrajectory point's time_from_start


def command_values(cmd: CommandConfig, msg: Any, msg_type: str) -> np.ndarray:
    """What a command message asks for, ``float64 [len(cmd.action_dims)]`` in ``action_dims`` order (inverse of
    :func:`wp_policy.ros.conversions.command_message`). Joints are found by name where the message names them.
    ``msg`` is an rclpy or a rosbags message; ``msg_type`` may be written ``pkg/msg/Type``. InvalidInput when it
    is malformed or of another type."""
    msg_type = msg_type.replace("/msg/", "/")
    if msg_type == JOINT_STATE:
        names, values = list(msg.name), np.asarray(msg.position, dtype=np.float64).reshape(-1)
    elif msg_type == FLOAT64_MULTI_ARRAY:
        names, values = [], np.asarray(msg.data, dtype=np.float64).reshape(-1)
    elif msg_type == JOINT_TRAJECTORY:
        if not msg.points:
            raise InvalidInput(f"{cmd.topic}: trajectory has no points")
        names, values = list(msg.joint_names), np.asarray(msg.points[0].positions, dtype=np.float64).reshape(-1)
    else:
        raise InvalidInput(f"{cmd.topic}: command message type {msg_type} is not supported ({JOINT_STATE}, "
                           f"{FLOAT64_MULTI_ARRAY}, {JOINT_TRAJECTORY})")
    if len(names) and len(names) != values.size:
        raise InvalidInput(f"{cmd.topic}: {len(names)} names but {values.size} positions")
    if not len(names) and values.size != len(cmd.action_dims):
        raise InvalidInput(f"{cmd.topic}: {values.size} command values, expected {len(cmd.action_dims)}")
    return pick_joints(values, names, cmd.joint_names, range(len(cmd.action_dims)), cmd.topic)


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
        return [CommandPayload(cmd.topic, cmd.kind, cmd.joint_names, a[list(cmd.action_dims)].copy(),
                               np.asarray(cmd.max_velocity, dtype=np.float64), cmd.msg_type,
                               self.robot.control_period)
                for cmd in self.commands]

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
