"""Scripted experts: they solve Lift and Stack, act in LIBERO's action convention, and are seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wp_training.sim_demos.scripted_expert import (
    ExpertParams,
    Pushes,
    _rotvec,
    _rot_z,
    _wrap_quarter,
    make_expert,
    missed_grasp_params,
    run_expert_episode,
)


def _check_actions(ep):
    a = ep.actions
    assert a.dtype == np.float32 and a.shape == (ep.num_steps, 7) and np.all(np.isfinite(a))
    assert np.all(np.abs(a) <= 1.0)
    assert set(np.unique(a[:, 6]).tolist()) == {-1.0, 1.0}
    assert a[0, 6] == -1.0  # starts open (LIBERO: -1 opens)
    assert ep.states.shape == (ep.num_steps, 8) and ep.states.dtype == np.float32


@pytest.mark.sim
@pytest.mark.slow
def test_lift_expert_succeeds_and_closes_with_plus_one(state_env):
    ep = run_expert_episode(state_env, "Lift", seed=0)
    assert ep.success and ep.num_steps < state_env.task("Lift").max_steps
    _check_actions(ep)
    closing = np.nonzero(ep.actions[:, 6] == 1.0)[0]
    after = ep.states[closing[0] + 8:, 6] - ep.states[closing[0] + 8:, 7]
    assert np.all(after < ep.states[0, 6] - ep.states[0, 7])  # +1 has closed the fingers on the cube
    assert ep.states[-1, 2] > ep.states[closing[0], 2] + 0.01  # and the hand went up afterwards


@pytest.mark.sim
@pytest.mark.slow
def test_post_success_steps_extend_the_demo_past_the_success_line(state_env):
    base = run_expert_episode(state_env, "Lift", seed=0)
    longer = run_expert_episode(state_env, "Lift", seed=0, post_success_steps=6)
    assert longer.success and longer.num_steps == base.num_steps + 6
    np.testing.assert_array_equal(longer.actions[: base.num_steps], base.actions)  # same episode, just longer
    assert longer.states[-1, 2] > base.states[-1, 2]  # the hand kept lifting: the stop now has a margin
    with pytest.raises(ValueError, match="post_success_steps must be >= 0"):
        run_expert_episode(state_env, "Lift", seed=0, post_success_steps=-1)


@pytest.mark.sim
@pytest.mark.slow
def test_stack_expert_succeeds_and_releases(state_env):
    ep = run_expert_episode(state_env, "Stack", seed=0)
    assert ep.success
    _check_actions(ep)
    grip = ep.actions[:, 6]
    changes = np.nonzero(np.diff(grip))[0]
    assert len(changes) >= 2 and grip[-1] == -1.0  # open -> close (pick) -> open (place)


@pytest.mark.sim
@pytest.mark.slow
def test_episodes_are_a_function_of_the_seed(state_env):
    a = run_expert_episode(state_env, "Lift", seed=7, max_steps=30)
    b = run_expert_episode(state_env, "Lift", seed=7, max_steps=30)
    c = run_expert_episode(state_env, "Lift", seed=8, max_steps=30)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.states, b.states)
    assert not np.allclose(a.actions, c.actions)


@pytest.mark.sim
@pytest.mark.slow
def test_pushes_disturb_the_motion_and_the_expert_recovers(state_env):
    """A pushed demo still succeeds, its pushes are recorded as actions of the push speed, and it is seeded."""
    clean = run_expert_episode(state_env, "Lift", seed=3)
    pushed = run_expert_episode(state_env, "Lift", seed=3, pushes=Pushes(rate=0.15))
    again = run_expert_episode(state_env, "Lift", seed=3, pushes=Pushes(rate=0.15))
    assert pushed.success and pushed.pushed_steps >= 2 and clean.pushed_steps == 0
    _check_actions(pushed)
    np.testing.assert_array_equal(pushed.actions, again.actions)
    n = min(clean.num_steps, pushed.num_steps)
    assert not np.allclose(clean.states[:n, :3], pushed.states[:n, :3], atol=0.01)
    speeds = np.linalg.norm(pushed.actions[:, :3], axis=1)
    constant = np.isclose(speeds[1:], speeds[:-1], atol=1e-6) & (speeds[1:] >= 0.3 - 1e-6)
    assert constant.sum() >= 2  # pushes: a few steps of one translation at 0.3..0.7
    closing = pushed.actions[:, 6] == 1.0
    first_close = np.nonzero(closing)[0][0]
    assert pushed.states[first_close + 8, 6] - pushed.states[first_close + 8, 7] < 0.07  # the grasp was not pushed


def test_pushes_never_hit_the_gripper_phases_and_are_validated():
    expert = make_expert("Lift", np.random.default_rng(0))
    expert.disturb(Pushes(rate=1.0, steps=(3, 3), speed=(0.5, 0.5)), np.random.default_rng(1))
    down = np.array([1.0, 0.0, 0.0, 0.0])
    priv = {"robot0_eef_pos": np.array([0.0, 0.0, 1.0]), "robot0_eef_quat": down,
            "cube_pos": np.array([0.1, 0.0, 0.82]), "cube_quat": np.array([0.0, 0.0, 0.0, 1.0])}
    pushes = [expert.act(priv)[:3] for _ in range(3)]
    assert np.allclose([np.linalg.norm(p) for p in pushes], 0.5) and np.allclose(pushes[0], pushes[2])
    assert expert.pushed_steps == 3
    expert.phase_index = [name for name, _ in expert.phases()].index("close")
    expert._memory.update(grasp_pos=priv["robot0_eef_pos"], grasp_yaw=0.0)
    expert.act(priv)
    assert expert.pushed_steps == 3  # closing is never pushed
    with pytest.raises(ValueError, match="push rate must be in \\[0, 1\\]"):
        Pushes(rate=1.5)
    with pytest.raises(ValueError, match="push steps"):
        Pushes(rate=0.1, speed=(0.5, 1.5))


def test_params_vary_per_episode_and_are_validated():
    p0 = ExpertParams.sample(np.random.default_rng(0))
    p1 = ExpertParams.sample(np.random.default_rng(1))
    assert p0 != p1 and p0 == ExpertParams.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_speed must be in \\(0, 1\\]"):
        ExpertParams(**{**p0.__dict__, "max_speed": 1.5})
    with pytest.raises(ValueError, match="smoothing"):
        ExpertParams(**{**p0.__dict__, "smoothing": 1.0})
    with pytest.raises(ValueError, match="no scripted expert for task 'Door'"):
        make_expert("Door", np.random.default_rng(0))


def test_rotation_helpers():
    assert np.allclose(_rotvec(_rot_z(0.4)), [0, 0, 0.4])
    assert np.allclose(_rotvec(np.eye(3)), 0.0)
    flip = np.diag([1.0, -1.0, -1.0])  # pi about x
    assert np.allclose(np.abs(_rotvec(flip)), [math.pi, 0, 0])
    assert math.isclose(_wrap_quarter(math.pi / 2 + 0.1), 0.1)
    assert math.isclose(_wrap_quarter(-0.3), -0.3)


def test_a_dropped_cube_sends_the_expert_back_to_grasp():
    expert = make_expert("Lift", np.random.default_rng(0))
    down = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: pointing down
    priv = {"robot0_eef_pos": np.array([0.0, 0.0, 0.83]), "robot0_eef_quat": down,
            "cube_pos": np.array([0.0, 0.0, 0.82]), "cube_quat": np.array([0.0, 0.0, 0.0, 1.0])}
    priv["robot0_eef_pos"] = expert._grasp_point(priv["cube_pos"])
    expert.phase_index = [name for name, _ in expert.phases()].index("descend")
    expert.act(priv)  # at the grasp point: descend finishes, closing starts
    assert expert.phase == "close"
    for _ in range(expert.params.close_steps + 1):
        action = expert.act(priv)
    assert expert.phase == "lift" and action[6] == 1.0
    priv["cube_pos"] = np.array([0.1, 0.0, 0.82])  # the cube stayed behind
    action = expert.act(priv)
    assert expert.phase == "approach" and expert.regrasps == 1 and action[6] == -1.0


@pytest.mark.sim
@pytest.mark.slow
def test_a_missed_grasp_start_records_the_recovery(state_env):
    """The recording starts with an empty closed hand away from the cube; the demo opens, grasps again and lifts."""
    clean = run_expert_episode(state_env, "Lift", seed=2)
    kept = []
    for seed in range(2, 6):
        ep = run_expert_episode(state_env, "Lift", seed=seed, missed_grasp=True)
        assert ep.missed_grasp
        if ep.num_steps:
            kept.append(ep)
    assert kept, "every missed-grasp attempt caught the cube"
    for ep in kept:
        assert ep.success
        _check_actions(ep)
        fingers_closed = ep.states[0, 6] - ep.states[0, 7] < 0.5 * (clean.states[0, 6] - clean.states[0, 7])
        assert fingers_closed  # the first recorded frame: the hand already shut
        assert not np.allclose(ep.states[0, :3], clean.states[0, :3], atol=0.02)  # and not at the start pose
        assert np.nonzero(ep.actions[:, 6] == 1.0)[0][0] > 0  # it opens before it closes again
    again = run_expert_episode(state_env, "Lift", seed=kept[0].seed, missed_grasp=True)
    np.testing.assert_array_equal(again.actions, kept[0].actions)  # seeded like every demo


def test_missed_grasp_params_put_the_fingers_where_they_cannot_hold():
    base = ExpertParams.sample(np.random.default_rng(0))
    for seed in range(50):
        miss = missed_grasp_params(base, np.random.default_rng(seed))
        above = miss.grasp_dz - base.grasp_dz
        beside = math.hypot(*miss.grasp_xy)
        assert (0.03 <= above <= 0.07 and beside <= 0.015) or (above == 0.0 and 0.035 <= beside <= 0.05)
        assert (miss.gain, miss.noise, miss.close_steps) == (base.gain, base.noise, base.close_steps)
