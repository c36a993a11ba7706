"""LIBERO observation/action conventions: pure conversions and the interface's input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wp_policy.sim.base import SimObservation, TaskSpec, validate_action
from wp_policy.sim.conventions import libero_images, libero_state, quat_xyzw_to_axis_angle, rotate_180


def test_axis_angle_reads_the_quaternion_as_xyzw():
    assert np.allclose(quat_xyzw_to_axis_angle([0, 0, 0, 1]), 0.0)  # identity: w is last
    half = 0.3 / 2
    assert np.allclose(quat_xyzw_to_axis_angle([0, 0, math.sin(half), math.cos(half)]), [0, 0, 0.3])
    # the top-down gripper of LIBERO: pi about x, i.e. xyzw (1, 0, 0, 0); read as wxyz it would be the identity
    assert np.allclose(quat_xyzw_to_axis_angle([1, 0, 0, 0]), [math.pi, 0, 0])


def test_axis_angle_matches_scipy_for_random_rotations():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(200, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats[quats[:, 3] < 0] *= -1  # scipy reports angles in [0, pi]; LIBERO's formula agrees for w >= 0
    expected = Rotation.from_quat(quats).as_rotvec()  # scipy's quaternions are scalar-last (xyzw) too
    got = np.stack([quat_xyzw_to_axis_angle(q) for q in quats])
    assert np.allclose(got, expected, atol=1e-9)


def test_axis_angle_keeps_libero_behaviour_for_negative_w():
    # LIBERO does not canonicalise: w < 0 gives an angle above pi (same rotation, different numbers)
    q = np.array([0.0, 0.0, math.sin(2.0), math.cos(2.0)])  # 4 rad about z, w < 0
    assert np.allclose(quat_xyzw_to_axis_angle(q), [0, 0, 4.0])
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        quat_xyzw_to_axis_angle([0, 0, 1])


def test_rotate_180_is_a_half_turn():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = rotate_180(img)
    assert np.array_equal(out, np.rot90(img, 2, axes=(0, 1)))
    assert out[0, 0].tolist() == img[-1, -1].tolist() and out.flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="\\[H, W, C\\]"):
        rotate_180(np.zeros((4, 4), np.uint8))


def test_libero_state_layout_from_a_robosuite_observation():
    raw = {
        "robot0_eef_pos": np.array([0.1, -0.2, 1.0]),
        "robot0_eef_quat": np.array([1.0, 0.0, 0.0, 0.0]),
        "robot0_gripper_qpos": np.array([0.04, -0.04]),
        "agentview_image": np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3),
    }
    state = libero_state(raw)
    assert state.dtype == np.float32 and state.shape == (8,)
    assert np.allclose(state, [0.1, -0.2, 1.0, math.pi, 0, 0, 0.04, -0.04], atol=1e-6)
    images = libero_images(raw)
    assert list(images) == ["primary"]  # the wrist camera is absent from this dict
    assert np.array_equal(images["primary"], raw["agentview_image"][::-1, ::-1])
    with pytest.raises(KeyError, match="robot0_gripper_qpos"):
        libero_state({k: v for k, v in raw.items() if k != "robot0_gripper_qpos"})


def test_validate_action_rejects_bad_input():
    assert validate_action([0, 0, 0, 0, 0, 0, -1]).shape == (7,)
    with pytest.raises(ValueError, match="shape \\(7,\\)"):
        validate_action(np.zeros(6))
    with pytest.raises(ValueError, match="NaN or inf"):
        validate_action([0, 0, np.nan, 0, 0, 0, 1])


def test_observation_and_task_validation():
    state = np.zeros(8, np.float32)
    SimObservation({"primary": np.zeros((4, 4, 3), np.uint8)}, state, "lift")
    with pytest.raises(ValueError, match="float32 \\[8\\]"):
        SimObservation({}, np.zeros(8), "lift")
    with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
        SimObservation({"primary": np.zeros((4, 4, 3), np.float32)}, state, "lift")
    with pytest.raises(ValueError, match="max_steps must be positive"):
        TaskSpec("Lift", "pick up the red cube", 0)
