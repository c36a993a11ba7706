"""ROS messages <-> numpy, in one place. Stamps travel as integer nanoseconds so they round-trip exactly.

Malformed messages raise :class:`wp_policy.obs_sync.InvalidInput` (JointState / JointTrajectory) or
:class:`wp_policy.image_proc.ImageDecodeError` (images), so nodes can count and drop them without dying.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wp_policy.command_map import CommandPayload
from wp_policy.image_proc import image_msg_to_rgb  # noqa: F401  (re-exported: ROS-free, shared with wp-data)
from wp_policy.obs_sync import InvalidInput, joint_state_position  # noqa: F401  (re-exported, as above)
from wp_policy.robot_config import FLOAT64_MULTI_ARRAY, JOINT_STATE, JOINT_TRAJECTORY
from wp_policy.runtime.stop_latch import message_identity

_NS = 1_000_000_000


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"a ROS time cannot be negative, got {ns} ns")
    return Time(sec=ns // _NS, nanosec=ns % _NS)


def duration_to_sec(d: Duration) -> float:
    return int(d.sec) + int(d.nanosec) * 1e-9


def sec_to_duration(seconds: float) -> Duration:
    ns = int(round(float(seconds) * _NS))
    if ns < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds} s")
    return Duration(sec=ns // _NS, nanosec=ns % _NS)


def clock_msg(ns: int) -> Clock:
    return Clock(clock=ns_to_stamp(ns))


def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "") -> Image:
    """``uint8 [H, W, 3]`` -> sensor_msgs/Image rgb8."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got shape {rgb.shape}")
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = rgb.tobytes()
    return msg


def make_joint_state(
    names: Sequence[str], position: Sequence[float], stamp_ns: int, velocity: Sequence[float] = ()
) -> JointState:
    msg = JointState(name=list(names), position=[float(v) for v in position], velocity=[float(v) for v in velocity])
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg


def payload_to_joint_state(payload: CommandPayload, stamp_ns: int) -> JointState:
    """A robot command (see wp_policy.command_map) as a JointState."""
    return make_joint_state(payload.names, payload.position, stamp_ns, payload.velocity)


COMMAND_MSG_CLASSES = {JOINT_STATE: JointState, FLOAT64_MULTI_ARRAY: Float64MultiArray,
                       JOINT_TRAJECTORY: JointTrajectory}


def command_msg_class(msg_type: str) -> type:
    """The rclpy message class of a robot config command ``msg_type``."""
    return COMMAND_MSG_CLASSES[msg_type]


def command_message(payload: CommandPayload, stamp_ns: int, frame_id: str = ""):
    """A robot command as its topic's message type (``payload.msg_type``, see wp_policy.command_map).

    ``stamp_ns`` and ``frame_id`` (a hold reason) go into the header where the type has one. A JointTrajectory keeps
    a zero stamp: a joint trajectory controller starts it on receipt, whereas a stamp from another machine's clock
    could put its single point in the past, and such a trajectory is rejected.
    """
    if payload.msg_type == FLOAT64_MULTI_ARRAY:
        return Float64MultiArray(data=payload.position.tolist())
    if payload.msg_type == JOINT_TRAJECTORY:
        msg = make_trajectory(payload.names, payload.position[None], [payload.period_s], 0)
    else:
        msg = payload_to_joint_state(payload, stamp_ns)
    msg.header.frame_id = frame_id
    return msg


def make_trajectory(
    names: Sequence[str], positions: np.ndarray, times_from_start: Sequence[float], stamp_ns: int
) -> JointTrajectory:
    """``positions`` float [N, D] with ``times_from_start`` [N] seconds -> JointTrajectory (header = ``stamp_ns``)."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != len(names) or pos.shape[0] != len(times_from_start):
        raise ValueError(f"positions {pos.shape} must be [N={len(times_from_start)}, D={len(names)}]")
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.points = [
        JointTrajectoryPoint(positions=row.tolist(), time_from_start=sec_to_duration(t))
        for row, t in zip(pos, times_from_start)
    ]
    return msg


def trajectory_arrays(msg: JointTrajectory) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """JointTrajectory -> (joint names, positions float64 [N, D], times_from_start float64 [N] seconds)."""
    names = tuple(msg.joint_names)
    rows = [np.asarray(p.positions, dtype=np.float64) for p in msg.points]
    bad = [i for i, r in enumerate(rows) if r.size != len(names)]
    if bad:
        raise InvalidInput(f"trajectory points {bad} do not have {len(names)} positions (one per joint name)")
    pos = np.stack(rows) if rows else np.zeros((0, len(names)))
    if not np.all(np.isfinite(pos)):
        raise InvalidInput("trajectory has non-finite positions")
    times = np.array([duration_to_sec(p.time_from_start) for p in msg.points], dtype=np.float64)
    return names, pos, times


def message_info_identity(info) -> str:
    """Identity of a received message (rclpy ``MessageInfo``) that survives re-delivery of a latched sample:
    publisher GID + sequence number (see :func:`wp_policy.runtime.stop_latch.message_identity`)."""
    gid = info.get("publisher_gid") or {}
    data = gid.get("data") if isinstance(gid, dict) else gid
    return message_identity(bytes(data) if data else None, info.get("publication_sequence_number"),
                            int(info.get("source_timestamp") or 0))
