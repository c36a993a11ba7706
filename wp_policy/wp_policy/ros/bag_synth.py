"""Synthetic robot bags: what a robot's drivers would record, for dry-running the graph without the robot.

For a robot config it writes every camera topic (JPEG CompressedImage or raw Image, ~15 Hz, a few ms of phase offset
between cameras as on unsynchronised hardware) and every joint feedback topic (JointState, >= 100 Hz) with smooth,
seeded joint motion inside the robot's limits: each joint follows a sum of two slow sinusoids (< 0.3 Hz) whose peak
speed stays under half of what the safety filter allows, and grippers open and close smoothly. Header stamps are
capture times; log times add a driver latency, as a real recording would. The images show discs whose positions
follow the joints, so frames change with the motion.

    wp-bag synth r1lite -o /tmp/r1lite_synth.mcap --duration 10
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from wp_policy.image_proc import encode_jpeg
from wp_policy.obs_sync import feedback_layout
from wp_policy.robot_config import CameraConfig, RobotConfig
from wp_policy.ros.bag_io import BagWriter, msg_class, serialize
from wp_policy.ros.topics import camera_topic

JOINT_STATE = "sensor_msgs/msg/JointState"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
_NS = 1_000_000_000


@dataclass(frozen=True)
class SynthSpec:
    duration_s: float = 3.0
    camera_hz: float = 15.0
    feedback_hz: float = 100.0
    width: int = 320
    height: int = 240
    seed: int = 0
    start_ns: int = 1_700_000_000 * _NS  # header stamps start here (a plausible wall-clock epoch)
    camera_offset_s: float = 0.003  # camera k captures k * offset after camera 0
    camera_latency_s: float = 0.030  # log time = capture stamp + latency
    feedback_latency_s: float = 0.002
    jpeg_quality: int = 80

    def __post_init__(self):
        if self.duration_s <= 0 or self.camera_hz <= 0 or self.feedback_hz <= 0:
            raise ValueError(f"duration_s, camera_hz, feedback_hz must be positive, got {self}")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"images must be at least 8x8, got {self.width}x{self.height}")


def proprio_ranges(robot: RobotConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-proprio-dim motion range: the action limits of the same-named dim, else [-0.5, 0.5]."""
    lo, hi = np.full(robot.proprio.dim, -0.5), np.full(robot.proprio.dim, 0.5)
    for i, name in enumerate(robot.proprio.names):
        if name in robot.action.names:
            j = robot.action.names.index(name)
            lo[i], hi[i] = robot.limits.lower[j], robot.limits.upper[j]
    return lo, hi


def joint_motion(robot: RobotConfig, t: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth proprio trajectory at times ``t`` [T] s -> (position [T, P], velocity [T, P]), physical units."""
    rng = np.random.default_rng(seed)
    lo, hi = proprio_ranges(robot)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    P = robot.proprio.dim
    amp = rng.uniform(0.1, 0.3, size=(2, P)) * half  # stays well inside the limits
    freq = rng.uniform(0.05, 0.3, size=(2, P))
    phase = rng.uniform(0, 2 * np.pi, size=(2, P))
    grip = np.zeros(P, dtype=bool)
    grip[list(robot.proprio.gripper_dims)] = True
    amp[:, grip] = [[0.8], [0.0]] * half[grip]  # grippers: one slow open/close cycle
    w = 2 * np.pi * freq
    amp *= np.minimum(1.0, _max_speed(robot) / (amp * w).sum(axis=0))[None]  # peak speed within bounds
    arg = w[None] * t[:, None, None] + phase[None]  # [T, 2, P]
    pos = centre + (amp * np.sin(arg)).sum(axis=1)
    vel = (amp * w * np.cos(arg)).sum(axis=1)
    return pos, vel


def _max_speed(robot: RobotConfig) -> np.ndarray:
    """Per-proprio-dim speed bound: half of what the safety filter allows (max_step * control rate), if known."""
    out = np.full(robot.proprio.dim, np.inf)
    if robot.limits.max_step is not None:
        for i, name in enumerate(robot.proprio.names):
            if name in robot.action.names:
                out[i] = 0.5 * robot.limits.max_step[robot.action.names.index(name)] * robot.control_hz
    return out


def render_view(index: int, proprio: np.ndarray, lo: np.ndarray, hi: np.ndarray, spec: SynthSpec,
                rng: np.random.Generator) -> np.ndarray:
    """A ``uint8 [H, W, 3]`` frame: a per-view background and one disc per joint pair, placed by the joints."""
    img = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    img[:] = (40 + 60 * index, 90, 160 - 40 * index)
    unit = (proprio - lo) / np.maximum(hi - lo, 1e-9)  # [P] in [0, 1]
    radius = max(2, min(spec.width, spec.height) // 12)
    for k in range(0, len(unit) - 1, 2):
        centre = (int(unit[k] * (spec.width - 1)), int(unit[k + 1] * (spec.height - 1)))
        colour = tuple(int(c) for c in (255 - 20 * k, 40 + 15 * k, 30 * index + 10 * k))
        cv2.circle(img, centre, radius, colour, thickness=-1)
    noise = rng.integers(-6, 7, size=img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _header(stamp_ns: int, frame_id: str):
    hdr, stamp = msg_class("std_msgs/msg/Header"), msg_class("builtin_interfaces/msg/Time")
    return hdr(stamp=stamp(sec=stamp_ns // _NS, nanosec=stamp_ns % _NS), frame_id=frame_id)


def _camera_msg(camera: CameraConfig, rgb: np.ndarray, stamp_ns: int, quality: int) -> tuple[str, bytes]:
    if camera.encoding == "jpeg":
        msg = msg_class(COMPRESSED)(header=_header(stamp_ns, camera.view), format="jpeg",
                                    data=np.frombuffer(encode_jpeg(rgb, quality), dtype=np.uint8))
        return COMPRESSED, serialize(msg, COMPRESSED)
    h, w = rgb.shape[:2]
    msg = msg_class(IMAGE)(header=_header(stamp_ns, camera.view), height=h, width=w, encoding="rgb8",
                           is_bigendian=0, step=w * 3, data=rgb.reshape(-1))
    return IMAGE, serialize(msg, IMAGE)


def _feedback_msgs(robot: RobotConfig, pos: np.ndarray, vel: np.ndarray, stamp_ns: int) -> list[tuple[str, bytes]]:
    out = []
    for fb in robot.ros.feedback:
        names, p = feedback_layout(fb, pos)
        msg = msg_class(JOINT_STATE)(header=_header(stamp_ns, ""), name=names, position=p,
                                     velocity=feedback_layout(fb, vel)[1], effort=np.zeros(0))
        out.append((fb.topic, serialize(msg, JOINT_STATE)))
    return out


def write_synthetic_bag(path, robot: RobotConfig, spec: SynthSpec = SynthSpec()) -> dict[str, int]:
    """Write the bag (see module docstring); returns message counts per topic."""
    if not robot.ros.feedback:
        raise ValueError(f"{robot.robot_type}: robot config has no ros.feedback topics to synthesise")
    rng = np.random.default_rng(spec.seed)
    lo, hi = proprio_ranges(robot)
    events = []  # (log_ns, topic, msgtype, data)
    t_fb = np.arange(0.0, spec.duration_s, 1.0 / spec.feedback_hz)
    pos, vel = joint_motion(robot, t_fb, spec.seed)
    for t, p, v in zip(t_fb, pos, vel):
        stamp = spec.start_ns + int(round(t * _NS))
        log = stamp + int(spec.feedback_latency_s * _NS)
        events += [(log, topic, JOINT_STATE, data) for topic, data in _feedback_msgs(robot, p, v, stamp)]
    for k, cam in enumerate(robot.cameras):
        t_cam = np.arange(k * spec.camera_offset_s, spec.duration_s, 1.0 / spec.camera_hz)
        cam_pos, _ = joint_motion(robot, t_cam, spec.seed)
        for t, p in zip(t_cam, cam_pos):
            stamp = spec.start_ns + int(round(t * _NS))
            msgtype, data = _camera_msg(cam, render_view(k, p, lo, hi, spec, rng), stamp, spec.jpeg_quality)
            events.append((stamp + int(spec.camera_latency_s * _NS), camera_topic(cam), msgtype, data))
    events.sort(key=lambda e: e[0])
    with BagWriter(path) as writer:
        for cam in robot.cameras:
            writer.add_topic(camera_topic(cam), COMPRESSED if cam.encoding == "jpeg" else IMAGE)
        for fb in robot.ros.feedback:
            writer.add_topic(fb.topic, JOINT_STATE)
        for log, topic, _, data in events:
            writer.write(topic, log, data)
        return dict(writer.counts)
