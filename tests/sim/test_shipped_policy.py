"""The shipped policies (``wp_policy/assets/policies/``: ``lift_demo``, the default, and ``libero_spatial_demo``):
their files load strictly and fit each other, and the default runs seeded Lift episodes end to end, identically
twice.

Success is not asserted here (the measured rate lives in the policy's README.md); these tests guard against a
re-export that no longer loads, drifts from the robot config, or makes rollouts nondeterministic.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

import wp_policy
from wp_policy.normalize import load_stats
from wp_policy.robot_config import load_robot_config
from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
from wp_policy.sim.rollout import EpisodeResult
from wp_policy.tokenizer import TextTokenizer, TokenLayout

POLICIES = Path(wp_policy.__file__).parent / "assets" / "policies"
POLICY_DIR = POLICIES / "lift_demo"
POLICY_YAML = POLICY_DIR / "policy.yaml"
SHIPPED = {"lift_demo": "pick up the red cube",  # each shipped policy and an instruction it was trained on
           "libero_spatial_demo": "pick up the black bowl on the stove and place it on the plate"}
RENDER_SIZE = 128  # the demos' camera size (README.md); the robot config resizes to its own size either way
MAX_BYTES = 20 * 2**20  # the repository commits these files


def test_every_shipped_policy_is_listed():
    assert {p.name for p in POLICIES.iterdir() if p.is_dir()} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_files_are_small_and_relative(name):
    files = [p for p in (POLICIES / name).rglob("*") if p.is_file()]
    assert {"policy.yaml", "stats.json", "tokenizer.model", "README.md"} <= {p.name for p in files}
    for sub in ("ae", "vlm"):
        assert (POLICIES / name / sub / "model.safetensors").is_file()
        assert (POLICIES / name / sub / "model_config.yaml").is_file()
    assert sum(p.stat().st_size for p in files) < MAX_BYTES
    raw = yaml.safe_load((POLICIES / name / "policy.yaml").read_text())
    for key in ("vlm_checkpoint", "ae_checkpoint", "stats_path", "tokenizer_path"):
        assert raw[key] and not Path(raw[key]).is_absolute(), f"{key} must be relative to policy.yaml: {raw[key]}"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_policy_loads_strictly_and_files_match(name):
    config = load_policy_config(POLICIES / name / "policy.yaml")
    assert config.robot == "libero" and config.device == "cpu"
    policy = WaypointPolicy.from_config(config)  # strict safetensors loads + model/robot checks
    robot = load_robot_config("libero")
    assert policy.vlm is not None and policy.ae is not None
    assert policy.vlm.config.proprio_dim == robot.proprio.dim
    assert set(policy.vlm.config.image_keys) == set(policy.ae.config.image_keys) == {c.model_key for c in robot.cameras}
    stats = load_stats(config.stats_path)
    stats.check_dims(robot.action.dim, robot.proprio.dim, where=config.stats_path)
    assert stats.num_trajectories > 0 and stats.num_transitions > stats.num_trajectories
    text = TextTokenizer(config.tokenizer_path)  # the ids the models were trained with must fit their vocabulary
    layout = TokenLayout(policy.vlm.config.vocab_size)
    assert text.vocab_size <= layout.first_reserved  # text ids never reach the waypoint tokens
    assert text.decode(text.encode(SHIPPED[name])) == SHIPPED[name]


def _episodes(jobs: list[dict]) -> list[dict]:
    """Child-process entry point: the shipped policy on a rendered Lift env, one EpisodeSpec per job."""
    import torch

    from wp_policy.sim.registry import SimEnvConfig, make_env
    from wp_policy.sim.rollout import EpisodeSpec, PolicyActor, run_episode

    torch.set_num_threads(1)
    policy = WaypointPolicy.from_config(load_policy_config(POLICY_YAML))
    with make_env(SimEnvConfig("robosuite:Lift", image_size=RENDER_SIZE)) as env:
        return [run_episode(env, EpisodeSpec(**job), PolicyActor(policy)).to_json() for job in jobs]


def _rollouts_twice(jobs: list[dict]) -> tuple[list[EpisodeResult], list[EpisodeResult]]:
    """The same jobs in two fresh spawned children side by side (rendering never runs next to TensorFlow, which
    other suites import: conftest.py)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [pool.submit(_episodes, jobs) for _ in range(2)]
        first, second = ([EpisodeResult.from_json(r) for r in run.result(timeout=900)] for run in runs)
    return first, second


@pytest.mark.slow
@pytest.mark.sim
def test_shipped_policy_runs_seeded_lift_episodes_deterministically():
    jobs = [dict(task="Lift", trial=t, seed=seed, max_steps=60, num_wait_steps=10)
            for t, seed in enumerate((0, 1))]
    first, second = _rollouts_twice(jobs)
    for a, b in zip(first, second):
        assert a.steps > 0 and a.num_plans >= 1 and len(a.fill_latency_s) >= 1
        assert a.actions.shape == (a.steps, 7) and np.all(np.abs(a.actions) <= 1.0)
        assert (a.success, a.steps, a.termination) == (b.success, b.steps, b.termination)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(first[0].actions[:5], first[1].actions[:5])  # two scenes, two different plans
