"""Does the Action Expert follow the waypoints it is given? Its response to moved end waypoints, in simulation.

A diagnostic for a policy whose arm lags its plan (the gripper then closes on schedule, above or beside the object).
From a real observation of the task (the scene after a seeded reset and the wait steps), each policy's AE fills
one pair from the measured proprio to that proprio moved by ``+-offset`` along x, y and z, and the summed position
actions of the chunk are compared. An AE that follows its end waypoint answers a move along an axis mostly on that
axis (a large diagonal gain) and nearly nothing when told to stay (end = start); one that predicts the demo's motion
from the images answers every request with about the same motion. Columns: the gain of each axis (summed action per
cm of requested motion), the largest cross-axis gain, and the summed action when asked to stay (norm). Policies are
compared side by side on the same observations. Example (about 20 s per policy on 2 cores)::

    .venv/bin/python bench/bench_ae_following.py --policy wp_policy/wp_policy/assets/policies/lift_demo/policy.yaml
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
from wp_policy.sim.protocol import NUM_WAIT_STEPS, WAIT_ACTION
from wp_policy.sim.registry import SimEnvConfig, make_env
from wp_policy.sim.rollout import sim_obs_to_obsset

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--policy", nargs="+", required=True, help="PolicyConfig YAML(s) of LIBERO-layout policies")
    p.add_argument("--env", default="robosuite:Lift", help="sim env whose first task gives the observations")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(7, 12)), help="reset seeds (one scene each)")
    p.add_argument("--offset", type=float, default=0.03, help="requested motion per axis in metres")
    p.add_argument("--duration", type=int, default=4, help="ticks of the filled pair")
    p.add_argument("--wait-steps", type=int, default=NUM_WAIT_STEPS)
    p.add_argument("--image-size", type=int, default=128)
    return p.parse_args(argv)


def observations(env_name: str, seeds: list[int], wait_steps: int, image_size: int) -> list:
    """One observation per seed: the scene after a seeded reset and the wait steps (the episode's first tick)."""
    env = make_env(SimEnvConfig(env=env_name, image_size=image_size))
    task = env.tasks[0].name
    out = []
    for seed in seeds:
        obs = env.reset(task, seed=seed)
        for _ in range(wait_steps):
            obs = env.step(WAIT_ACTION).obs
        out.append(obs)
    env.close()
    return out


def response(policy: WaypointPolicy, obs_list: list, offset: float, duration: int) -> tuple[np.ndarray, float]:
    """(gain [3 requested axes, 3 action axes] in summed action per cm, mean norm of the stay response). Fills are
    seeded from the observation stamp and the end waypoint, so every policy gets the same noise draws."""
    gains, stays = [], []
    for i, obs in enumerate(obs_list):
        obs_set = sim_obs_to_obsset(obs, policy.robot, (i + 1) * 10**9)
        start = np.asarray(obs_set.proprio, np.float64)

        def moved(delta: np.ndarray) -> np.ndarray:
            end = start.copy()
            end[:3] += delta
            return policy.fill(obs_set, obs.instruction, start, end, duration)[:, :3].sum(0)

        stays.append(np.linalg.norm(moved(np.zeros(3))))
        gain = np.zeros((3, 3))
        for axis in range(3):
            step = np.zeros(3)
            step[axis] = offset
            gain[axis] = (moved(step) - moved(-step)) / (2 * offset * 100)
        gains.append(gain)
    return np.mean(gains, axis=0), float(np.mean(stays))


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    obs_list = observations(args.env, args.seeds, args.wait_steps, args.image_size)
    print(f"# {args.env}: seeds {args.seeds}, offset +-{args.offset * 100:g} cm, duration {args.duration}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print("| policy | gain x | gain y | gain z | largest cross-axis gain | stay response |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in args.policy:
        policy = WaypointPolicy.from_config(load_policy_config(path))
        gain, stay = response(policy, obs_list, args.offset, args.duration)
        cross = np.abs(gain - np.diag(np.diag(gain))).max()
        print(f"| {path} | {gain[0, 0]:.3f} | {gain[1, 1]:.3f} | {gain[2, 2]:.3f} | {cross:.3f} | {stay:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
