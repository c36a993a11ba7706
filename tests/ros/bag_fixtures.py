"""Reusable synthetic-bag settings and readers for the ROS tests (the generator itself is wp_policy.ros.bag_synth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wp_policy.ros.bag_io import BagReader, deserialize
from wp_policy.ros.bag_synth import SynthSpec

CAMERA_PERIOD_S = 1.0 / 15.0


def r1lite_bag_spec(duration_s: float = 3.0) -> SynthSpec:
    """R1 Lite rates (JPEG views at 15 Hz, feedback at 100 Hz), small frames to keep 2-core tests fast."""
    return SynthSpec(duration_s=duration_s, camera_hz=15.0, feedback_hz=100.0, width=320, height=240, seed=3)


def header_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def camera_stamps(bag: Path, topic: str) -> list[int]:
    with BagReader(bag) as reader:
        return [header_ns(deserialize(m.data, m.msgtype)) for m in reader.messages([topic])]


def feedback_samples(bag: Path, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """(header stamps ns [N], positions [N, n]) of one JointState topic."""
    with BagReader(bag) as reader:
        msgs = [deserialize(m.data, m.msgtype) for m in reader.messages([topic])]
    return np.array([header_ns(m) for m in msgs]), np.stack([np.asarray(m.position) for m in msgs])
