"""The direct loop (``wp_policy.sim.rollout.run_episode`` with a ``PolicyActor``) in a spawned child, for comparing
with the ROS graph.

Rendering must not share the pytest process with TensorFlow (other suites import it there; see tests/sim), so
episodes run in a child; this module is its picklable entry point (``tests/ros_policy`` is on the child's path).
"""

from __future__ import annotations


def direct_rollouts(policy_yaml: str, env_name: str, image_size: int, specs: list[dict], replan: dict) -> list[dict]:
    """Run ``specs`` (EpisodeSpec fields) in order with one env and one single-threaded policy, ``replan`` being
    ReplanConfig's node parameters (what the graph got): EpisodeResult JSON."""
    import torch

    from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
    from wp_policy.runtime.replan import ReplanConfig
    from wp_policy.sim.registry import SimEnvConfig, make_env
    from wp_policy.sim.rollout import EpisodeSpec, PolicyActor, run_episode

    torch.set_num_threads(1)  # the graph's nodes run with cpu_threads 1: same float reduction order
    policy = WaypointPolicy.from_config(load_policy_config(policy_yaml))
    with make_env(SimEnvConfig(env=env_name, image_size=image_size)) as env:
        actor = PolicyActor(policy, ReplanConfig.from_params(replan))
        return [run_episode(env, EpisodeSpec(**spec), actor).to_json() for spec in specs]
