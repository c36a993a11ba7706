"""Waypoint extraction throughput on a synthetic R1-Lite-sized dataset, against the naive O(N^3) reference.

The original recipe's R1 Lite run (docs/training-data.md): 23,039 episodes, 5,108,454 steps, 12 arm joints +
gripper changes, threshold 0.001 rad (target here: under 10 minutes on 2 cores). Synthetic episodes have R1 Lite's
shape: 100..343 steps at 15 Hz, 12 joints moving as slow sums of sinusoids with a pause and 1e-4 rad sensor noise,
two grippers that close and reopen once (forced waypoints), tuned to a retention near its 43%.

Rows: the naive reference DP (pure Python, a few episodes, extrapolated), the vectorised DP and greedy in one
process and in ``--workers`` processes (the extractor's own worker function and chunking), and the whole
``run_extraction`` on an R1-layout RLDS written to disk (reading state + action from TFRecords, selection in
worker processes, JSON; images tiny, not decoded; the filtered RLDS is not written).

Example (full size, ~3 minutes on 2 cores)::

    .venv/bin/python bench/bench_extraction.py

Quicker: ``--fraction 0.1`` (every row is also extrapolated to the full 5.1M steps).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time

import numpy as np

from wp_policy.robot_config import load_robot_config
from wp_training.data.extract import ExtractConfig, run_extraction
from wp_training.data.rlds_reader import RldsReader
from wp_training.data.rlds_writer import write_rlds
from wp_training.data.waypoints import gripper_change_frames, reference_dp, select_job

FULL_EPISODES, FULL_STEPS = 23_039, 5_108_454


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fraction", type=float, default=1.0, help="share of the 23,039 episodes to generate")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.001)
    p.add_argument("--max-segment", type=int, default=32)
    p.add_argument("--naive-episodes", type=int, default=4, help="episodes timed with the pure-Python reference")
    p.add_argument("--rlds-episodes", type=int, default=1000, help="episodes in the on-disk end-to-end run")
    p.add_argument("--chunk-steps", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def synthetic_episode(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(arm joints [n, 12] rad, gripper strokes [n, 2] mm)`` of one R1-Lite-like episode."""
    t = np.arange(n)[:, None] / 15.0
    freq, amp, phase = rng.uniform(0.02, 0.14, (3, 12)), rng.uniform(0.05, 0.3, (3, 12)), rng.uniform(0, 6.3, (3, 12))
    joints = sum(amp[i] * np.sin(2 * np.pi * freq[i] * t + phase[i]) for i in range(3))
    a, b = sorted(rng.integers(0, n, 2))
    joints[a:b] = joints[a]  # the arms pause
    joints += rng.normal(0, 1e-4, joints.shape)
    strokes = np.full((n, 2), 95.0)
    for g in range(2):
        close, reopen = sorted(rng.choice(np.arange(1, n - 1), 2, replace=False))
        strokes[close:reopen, g] = 5.0
    return joints, strokes


def synthetic_dataset(fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    count = max(1, round(FULL_EPISODES * fraction))
    lengths = rng.integers(100, 344, count)
    xs, forced = [], []
    for n in lengths:
        joints, strokes = synthetic_episode(rng, int(n))
        xs.append(joints)
        forced.append(gripper_change_frames(strokes / 100.0))
    return xs, forced


def chunks(xs, forced, chunk_steps):
    batch_x, batch_f, steps = [], [], 0
    for x, f in zip(xs, forced):
        batch_x.append(x)
        batch_f.append(f)
        steps += len(x)
        if steps >= chunk_steps:
            yield batch_x, batch_f
            batch_x, batch_f, steps = [], [], 0
    if batch_x:
        yield batch_x, batch_f


class Clock:
    """Wall time and CPU time of this process plus its finished children (load-independent work measure)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_fast(xs, forced, args, method: str, workers: int) -> tuple[Clock, list]:
    """The extractor's worker function and chunking, on in-memory trajectories."""
    jobs = [(cx, cf, args.threshold, method, args.max_segment) for cx, cf in chunks(xs, forced, args.chunk_steps)]
    with Clock() as clock:
        if workers <= 1:
            out = [w for job in jobs for w in select_job(job)]
        else:
            with multiprocessing.Pool(workers) as pool:
                out = [w for part in pool.imap(select_job, jobs) for w in part]
    return clock, out


def run_naive(xs, forced, args) -> tuple[Clock, list]:
    with Clock() as clock:
        out = [reference_dp(x, args.threshold, f, args.max_segment) for x, f in zip(xs, forced)]
    return clock, out


def write_r1lite_rlds(directory: str, args) -> tuple[str, int]:
    robot = load_robot_config("r1lite")
    rng = np.random.default_rng(args.seed + 1)
    lengths = rng.integers(100, 344, args.rlds_episodes)

    def episodes():
        for n in lengths:
            joints, strokes = synthetic_episode(rng, int(n))
            target = np.concatenate([joints[:, :6], strokes[:, :1], joints[:, 6:], strokes[:, 1:]], 1)
            obs = {c.rlds_key: np.zeros((n, 8, 8, 3), np.uint8) for c in robot.cameras}
            obs.update(joint_position_arm_left=joints[:, :6], gripper_state_left=strokes[:, :1],
                       joint_position_arm_right=joints[:, 6:], gripper_state_right=strokes[:, 1:])
            yield {"observation": obs, "action": np.concatenate([target, np.zeros((n, 12))], 1),
                   "language_instruction": "fold the towel"}

    return str(write_rlds(directory, episodes(), robot, "r1lite_bench", image_size=8)), int(lengths.sum())


def run_read(src: str) -> Clock:
    keys = ("joint_position_arm_left", "joint_position_arm_right")
    with Clock() as clock:
        for _ in RldsReader(src).episodes(observation_keys=keys, step_keys=("action",)):
            pass
    return clock


def run_on_disk(src: str, out: str, args) -> tuple[Clock, float]:
    cfg = ExtractConfig(source_dir=src, out_dir=out, robot="r1lite",
                        keys=("joint_position_arm_left", "joint_position_arm_right"), threshold=args.threshold,
                        max_segment=args.max_segment, workers=args.workers, chunk_steps=args.chunk_steps,
                        filtered=False)
    with Clock() as clock:
        result = run_extraction(cfg, show_progress=False)
    return clock, result.summary["retention"]


def main(argv=None) -> None:
    args = parse_args(argv)
    xs, forced = synthetic_dataset(args.fraction, args.seed)
    steps = sum(len(x) for x in xs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; synthetic: {len(xs)} episodes, {steps} steps; threshold {args.threshold}, "
          f"max_segment {args.max_segment}")
    rows = []
    n_naive = args.naive_episodes
    clock, naive_out = run_naive(xs[:n_naive], forced[:n_naive], args)
    rows.append(("naive reference DP (1 proc)", n_naive, sum(len(x) for x in xs[:n_naive]), clock, None))
    for method, workers in (("dp", 1), ("dp", args.workers), ("greedy", args.workers)):
        clock, out = run_fast(xs, forced, args, method, workers)
        rows.append((f"vectorised {method} ({workers} proc)", len(xs), steps, clock, sum(map(len, out)) / steps))
        if method == "dp":
            assert all(np.array_equal(a, b) for a, b in zip(out, naive_out)), "fast DP differs from the reference"
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        src, disk_steps = write_r1lite_rlds(tmp, args)
        rows.append(("read state+action from RLDS (1 proc)", args.rlds_episodes, disk_steps, run_read(src), None))
        clock, retention = run_on_disk(src, os.path.join(tmp, "out"), args)
        rows.append((f"run_extraction on RLDS ({args.workers} proc)", args.rlds_episodes, disk_steps, clock, retention))
    print(f"\n| {'method':<38} | {'episodes':>8} | {'steps':>9} | {'wall s':>7} | {'CPU s':>7} | {'steps/s':>8} | "
          f"{'5.1M steps':>10} | {'retention':>9} |")
    print("|" + "|".join("-" * (w + 2) for w in (38, 8, 9, 7, 7, 8, 10, 9)) + "|")
    for name, n_ep, n_steps, clock, ret in rows:
        rate = n_steps / clock.wall
        full = FULL_STEPS / rate
        full_text = f"{full / 60:.1f} min" if full < 36000 else f"{full / 3600:.0f} h"
        ret_text = f"{100 * ret:.1f}%" if ret is not None else "-"
        print(f"| {name:<38} | {n_ep:>8} | {n_steps:>9} | {clock.wall:>7.2f} | {clock.cpu:>7.2f} | {rate:>8.0f} | "
              f"{full_text:>10} | {ret_text:>9} |")
    print("\nsteps/s and '5.1M steps' use wall time; CPU s counts this process and its workers.")


if __name__ == "__main__":
    main()
