"""The robosuite stand-ins against LIBERO's conventions: image rotation, state layout, gripper sign, action frame,
seeded resets and init-state files."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from wp_policy.sim.base import SimUnavailableError
from wp_policy.sim.conventions import quat_xyzw_to_axis_angle
from wp_policy.sim.libero_env import load_init_states
from wp_policy.sim.registry import SimEnvConfig, make_env
from wp_policy.sim.robosuite_env import RobosuiteEnv

pytestmark = [pytest.mark.sim, pytest.mark.slow]

OPEN = [0, 0, 0, 0, 0, 0, -1]
CLOSE = [0, 0, 0, 0, 0, 0, 1]


def _opening(state):
    return float(state[6] - state[7])  # finger joints: +q left, -q right; 0 when closed


def test_views_are_rotated_180_degrees_at_256(rendered):
    for view, raw in (("primary", "raw_agentview"), ("wrist", "raw_wrist")):
        img = rendered[view]
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3)
        assert np.array_equal(img, rendered[raw][::-1, ::-1])
    assert str(rendered["instruction"]) == "pick up the red cube"


def test_rotated_agentview_is_upright(rendered):
    # the camera looks over the table towards the robot: upright, the bright table fills the bottom rows and the
    # darker floor and robot base the top rows; robosuite's raw (OpenGL) frame has them the other way round
    gray = rendered["primary"].astype(float).mean(axis=2)
    assert gray[-32:].mean() > gray[:32].mean() + 40
    raw = rendered["raw_agentview"].astype(float).mean(axis=2)
    assert raw[:32].mean() > raw[-32:].mean() + 40


def test_rendering_refuses_a_tensorflow_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.delenv("WP_SIM_ALLOW_TF_RENDER", raising=False)
    env = RobosuiteEnv(("Lift",), render=True)
    with pytest.raises(SimUnavailableError, match="imported TensorFlow.*separate process"):
        env.reset("Lift", seed=0)


def test_state_layout_follows_libero(state_env):
    obs = state_env.reset("Lift", seed=2)
    raw = state_env.last_raw_obs
    assert obs.state.dtype == np.float32 and obs.state.shape == (8,)
    assert np.allclose(obs.state[:3], raw["robot0_eef_pos"], atol=1e-6)
    assert np.allclose(obs.state[3:6], quat_xyzw_to_axis_angle(raw["robot0_eef_quat"]), atol=1e-6)
    assert np.allclose(obs.state[6:8], raw["robot0_gripper_qpos"], atol=1e-6)
    # the gripper points down: a rotation of about pi, which only the xyzw reading gives
    assert abs(np.linalg.norm(obs.state[3:6]) - np.pi) < 0.3
    assert obs.images == {}


def test_gripper_sign_plus_one_closes(state_env):
    obs = state_env.reset("Lift", seed=3)
    for _ in range(10):
        obs = state_env.step(OPEN).obs
    opened = _opening(obs.state)
    for _ in range(10):
        obs = state_env.step(CLOSE).obs
    closed = _opening(obs.state)
    for _ in range(10):
        obs = state_env.step(OPEN).obs
    assert closed < opened - 0.04 and _opening(obs.state) > closed + 0.04


def test_actions_are_world_frame_deltas(state_env):
    start = state_env.reset("Lift", seed=4).state
    for _ in range(5):
        obs = state_env.step([1, 0, 0, 0, 0, 0, -1]).obs
    moved = obs.state[:3] - start[:3]
    assert moved[0] > 0.03 and abs(moved[1]) < 0.01  # +x action -> +x in the world, at most 5 cm per step
    assert moved[0] < 5 * 0.05 + 1e-6


def test_seeded_reset_is_reproducible_and_leaves_numpy_alone(state_env):
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    a = state_env.reset("Stack", seed=11)
    pa = state_env.privileged_state()
    flat_a = state_env.flat_state()
    state_env.step([0.5, 0, 0, 0, 0, 0, 1])
    b = state_env.reset("Stack", seed=11)
    assert np.random.random() == expected_next  # the caller's global generator is untouched
    assert np.array_equal(a.state, b.state) and np.array_equal(flat_a, state_env.flat_state())
    assert np.array_equal(pa["cubeA_pos"], state_env.privileged_state()["cubeA_pos"])
    state_env.reset("Stack", seed=12)
    assert not np.allclose(pa["cubeA_pos"], state_env.privileged_state()["cubeA_pos"])


def test_same_seed_same_scene_in_a_fresh_env(state_env):
    state_env.reset("Lift", seed=5)
    flat = state_env.flat_state()
    with make_env(SimEnvConfig(env="robosuite:Lift", render=False)) as fresh:
        fresh.reset("Lift", seed=5)
        assert np.array_equal(fresh.flat_state(), flat)


def test_saved_init_states_restore_the_scene(state_env, tmp_path):
    seeds = (21, 22, 23)
    rows, states, cubes = [], [], []
    for seed in seeds:
        obs = state_env.reset("Lift", seed=seed)
        rows.append(state_env.flat_state())
        states.append(obs.state)
        cubes.append(state_env.privileged_state()["cube_pos"])
    path = tmp_path / "Lift.pruned_init"
    torch.save(np.stack(rows), path)  # the format of LIBERO's suite files
    init_states = load_init_states(path)
    assert init_states.shape == (3, rows[0].size)
    for i in (2, 0):  # out of order: each row stands on its own
        obs = state_env.reset("Lift", seed=999, init_state=init_states[i])
        assert np.allclose(obs.state, states[i], atol=1e-6)
        assert np.allclose(state_env.privileged_state()["cube_pos"], cubes[i], atol=1e-9)
    with pytest.raises(ValueError, match="1 \\+ nq \\+ nv"):
        state_env.reset("Lift", init_state=init_states[0][:-1])


def test_bad_calls(state_env):
    with pytest.raises(KeyError, match="unknown task 'Door'.*Lift"):
        state_env.reset("Door")
    state_env.reset("Lift", seed=0)
    with pytest.raises(ValueError, match="NaN"):
        state_env.step([np.nan] * 7)
    with pytest.raises(ValueError, match="unknown robosuite stand-in"):
        RobosuiteEnv(("Door",))
