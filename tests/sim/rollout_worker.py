"""Rollouts in a spawned child process for the simulation tests: rendering must not share the pytest process
with TensorFlow (see conftest.py). Functions here are picklable entry points for ``ProcessPoolExecutor``."""

from __future__ import annotations

import numpy as np


def _stop_after_first(policy_cls):
    """A WaypointPolicy whose planner predicts stop (d = 0) right after its first waypoint, due in 3 ticks."""
    from wp_policy.runtime.plan import Plan, Waypoint

    class StopAfterFirst(policy_cls):
        def plan(self, obs, instruction):
            plan = super().plan(obs, instruction)
            first = plan.waypoints[0]
            return Plan((Waypoint(first.proprio, 3), Waypoint(first.proprio, 0)), plan.stamp_ns)

    return StopAfterFirst


INIT_STATE_SEEDS = (3, 4)  # init state row i = the scene a reset with seed INIT_STATE_SEEDS[i] gives


def _with_init_states(env_cls):
    """A stand-in env with LIBERO-style fixed init states (flat MuJoCo states saved from seeded resets)."""

    class WithInitStates(env_cls):
        def init_states(self, task):
            states = []
            for seed in INIT_STATE_SEEDS:
                self.reset(task, seed=seed)
                states.append(self.flat_state())
            return np.stack(states)

    return WithInitStates


def rollouts(policy_yaml: str, task: str, image_size: int, jobs: list[dict], video_dir: str | None,
             video_size: int = 64) -> list[dict]:
    """Run ``jobs`` (EpisodeSpec fields + ``mode`` + optional ``stop_policy``) in order with one stand-in env (with
    init states, see above) and one policy."""
    import torch

    from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
    from wp_policy.sim.robosuite_env import RobosuiteEnv
    from wp_policy.runtime.replan import ReplanConfig
    from wp_policy.sim.rollout import EpisodeSpec, PolicyActor, run_episode

    torch.set_num_threads(1)
    config = load_policy_config(policy_yaml)
    policy = WaypointPolicy.from_config(config)
    stopper = _stop_after_first(WaypointPolicy).from_config(config)
    out = []
    with _with_init_states(RobosuiteEnv)((task,), image_size=image_size) as env:
        for job in jobs:
            job = dict(job)
            mode = job.pop("mode")
            pol = stopper if job.pop("stop_policy", False) else policy
            result = run_episode(env, EpisodeSpec(**job), PolicyActor(pol, ReplanConfig(mode)), video_dir=video_dir,
                                 video_size=video_size)
            out.append(result.to_json())
    return out
