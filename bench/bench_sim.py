"""Simulation speed of the robosuite stand-ins and the scripted experts' success rate.

Rows: env creation, seeded reset, control steps per second without cameras and with both LIBERO cameras at 256x256
(each step renders agentview + robot0_eye_in_hand), and for each expert the success rate over ``--episodes``
seeded episodes (no rendering; the protocol's 10 wait steps first, then up to the task's max steps) with mean /
max episode length and regrasps. Rendering numbers are what collection and evaluation pay per step.

Example (~5 minutes on 2 cores)::

    .venv/bin/python bench/bench_sim.py --episodes 100

Quicker: ``--episodes 10 --steps 40``; speed only: ``--episodes 0``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from wp_policy.sim.conventions import WAIT_ACTION
from wp_policy.sim.robosuite_env import STANDIN_TASKS, RobosuiteEnv
from wp_training.sim_demos.scripted_expert import run_expert_episode


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="timed control steps per speed row")
    p.add_argument("--episodes", type=int, default=100, help="seeded expert episodes per task (0: speed only)")
    p.add_argument("--tasks", nargs="+", default=list(STANDIN_TASKS), choices=list(STANDIN_TASKS))
    p.add_argument("--seed", type=int, default=0, help="expert episode i uses seed + i")
    return p.parse_args(argv)


def speed_rows(task: str, render: bool, steps: int) -> list[tuple[str, str]]:
    label = "256x256 x2 cameras" if render else "no cameras"
    start = time.perf_counter()
    env = RobosuiteEnv((task,), render=render)
    env.reset(task, seed=0)  # builds the scene
    created = time.perf_counter() - start
    start = time.perf_counter()
    for seed in range(5):
        env.reset(task, seed=seed)
    reset_s = (time.perf_counter() - start) / 5
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(WAIT_ACTION)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(np.append(rng.uniform(-0.3, 0.3, 6), -1.0))
    rate = steps / (time.perf_counter() - start)
    env.close()
    return [
        (f"{task} create env ({label})", f"{created:.2f} s"),
        (f"{task} seeded reset ({label})", f"{1000 * reset_s:.0f} ms"),
        (f"{task} steps/s ({label})", f"{rate:.1f} ({1000 / rate:.1f} ms/step)"),
    ]


def expert_rows(task: str, episodes: int, seed: int) -> list[tuple[str, str]]:
    env = RobosuiteEnv((task,), render=False)
    start = time.perf_counter()
    results = [run_expert_episode(env, task, seed + i) for i in range(episodes)]
    wall = time.perf_counter() - start
    env.close()
    ok = [r for r in results if r.success]
    lengths = [r.num_steps for r in ok] or [0]
    failed = [r.seed for r in results if not r.success]
    return [
        (f"{task} expert success", f"{len(ok)}/{episodes} = {100 * len(ok) / episodes:.1f}%"
                                   + (f" (failed seeds {failed[:10]})" if failed else "")),
        (f"{task} expert steps (successes)", f"mean {np.mean(lengths):.1f}, max {max(lengths)} "
                                             f"(budget {STANDIN_TASKS[task].spec.max_steps})"),
        (f"{task} expert regrasps", f"{sum(r.regrasps for r in results)} in {episodes} episodes"),
        (f"{task} expert wall (no cameras)", f"{wall / episodes:.2f} s/episode"),
    ]


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'egl (default)')}")
    rows = []
    for task in args.tasks:
        rows += speed_rows(task, render=False, steps=args.steps)
        rows += speed_rows(task, render=True, steps=max(args.steps // 5, 10))
    for task in args.tasks if args.episodes > 0 else ():
        rows += expert_rows(task, args.episodes, args.seed)
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
