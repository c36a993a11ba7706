"""Per-message CPU cost of the aggregator's and the command path's ROS-free work (no DDS, no models).

Times, per call: JPEG decode + resize-with-pad to the model resolution (per camera frame), ObsSynchronizer assembly
(per set), SafetyFilter.check + CommandMapper.split + JointState conversion (per control tick). These bound what
the aggregator and filler add on top of model compute and transport.

Example (a few seconds)::

    .venv/bin/python bench/bench_obs_pipeline.py --robot r1lite --sizes 640x480 1280x720
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from wp_policy.command_map import CommandMapper
from wp_policy.image_proc import decode_jpeg, encode_jpeg, resize_with_pad
from wp_policy.obs_sync import ObsSynchronizer
from wp_policy.robot_config import load_robot_config
from wp_policy.ros.bag_synth import SynthSpec, joint_motion, proprio_ranges, render_view
from wp_policy.safety import SafetyFilter


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--robot", default="r1lite", help="robot config name or YAML path")
    p.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="camera frame sizes WxH")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    return p.parse_args(argv)


def time_calls(fn: Callable[[int], object], repeats: int) -> tuple[float, float]:
    """(p50, p99) in ms of ``fn(i)`` over ``repeats`` calls, after 5 untimed ones."""
    for i in range(5):
        fn(i)
    samples = []
    for i in tqdm(range(repeats), leave=False, disable=None):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    p50, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


def bench_decode(robot, size: str, repeats: int) -> tuple[float, float]:
    w, h = (int(v) for v in size.split("x"))
    spec = SynthSpec(width=w, height=h)
    lo, hi = proprio_ranges(robot)
    frame = render_view(0, (lo + hi) / 2, lo, hi, spec, np.random.default_rng(0))
    jpeg = encode_jpeg(frame, quality=90)
    return time_calls(lambda _: resize_with_pad(decode_jpeg(jpeg), robot.image_size, robot.image_size), repeats)


def bench_sync(robot, repeats: int) -> tuple[float, float]:
    sync = ObsSynchronizer.from_robot(robot, tolerance=0.05, timeout=1e9)
    img = np.zeros((robot.image_size, robot.image_size, 3), dtype=np.uint8)
    period = int(1e9 / 15)
    counter = iter(range(10**9))

    def one_set(_: int) -> None:
        i = next(counter)  # stamps must keep increasing across warm-up and timed calls
        for k in range(7):  # ~100 Hz feedback between frames
            for fb in robot.ros.feedback:
                sync.add_feedback(fb.topic, i * period + k * period // 6, np.zeros(max(fb.source_indices) + 1), 0.0)
        for view in robot.camera_views:
            sync.add_image(view, i * period, img, 0.0)
        if sync.try_assemble(0.0) is None:
            raise RuntimeError("benchmark inputs did not form a set")

    return time_calls(one_set, repeats)


def bench_command(robot, repeats: int) -> tuple[float, float]:
    from wp_policy.ros.conversions import payload_to_joint_state

    safety, mapper = SafetyFilter.from_robot(robot, 1e9, 1e9), CommandMapper(robot)
    pos, _ = joint_motion(robot, np.arange(repeats) / robot.control_hz)
    safety.observe_feedback(pos[0], 0.0)
    safety.observe_obs(0.0)

    def tick(i: int) -> None:
        decision = safety.check(pos[i], 0.0)
        for payload in mapper.split(decision.action):
            payload_to_joint_state(payload, i)

    return time_calls(tick, repeats)


def main(argv=None) -> None:
    args = parse_args(argv)
    robot = load_robot_config(args.robot)
    rows = [(f"decode+resize {s} -> {robot.image_size}", bench_decode(robot, s, args.repeats)) for s in args.sizes]
    rows.append((f"sync one set ({len(robot.cameras)} views)", bench_sync(robot, args.repeats)))
    rows.append(("safety + command map + JointState", bench_command(robot, args.repeats)))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"robot {robot.robot_type}")
    print(f"| {'step':<44} | p50 ms | p99 ms |\n|{'-' * 46}|--------|--------|")
    for name, (p50, p99) in rows:
        print(f"| {name:<44} | {p50:6.3f} | {p99:6.3f} |")


if __name__ == "__main__":
    main()
