"""The LIBERO evaluation protocol constants and pure helpers (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pytest

from wp_policy.robot_config import load_robot_config
from wp_policy.sim import protocol
from wp_policy.sim.conventions import CAMERAS, GRIPPER_CLOSE, GRIPPER_OPEN


def test_max_step_table_matches_the_published_protocol():
    assert dict(protocol.SUITE_MAX_STEPS) == {
        "libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400,
    }
    assert protocol.max_steps_for_suite("libero_10") == 520
    with pytest.raises(ValueError, match="unknown LIBERO suite 'libero_100'.*libero_spatial"):
        protocol.max_steps_for_suite("libero_100")


def test_protocol_constants():
    assert protocol.NUM_WAIT_STEPS == 10
    assert protocol.WAIT_ACTION == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    assert protocol.WAIT_ACTION[-1] == GRIPPER_OPEN and GRIPPER_CLOSE == 1.0
    assert protocol.NUM_TRIALS_PER_TASK == 50
    assert protocol.EVAL_SEED == 7
    assert protocol.RENDER_SIZE == 256
    assert protocol.VIDEO_FPS == 10
    with pytest.raises(TypeError):
        protocol.SUITE_MAX_STEPS["libero_goal"] = 1  # read-only: nobody can change the protocol at run time


def test_video_filename():
    name = protocol.video_filename("pick up the black bowl", 3, True)
    assert name == "rollout_pick_up_the_black_bowl_t3_success.mp4"
    assert protocol.video_filename("Lift", 0, False) == "rollout_Lift_t0_failure.mp4"
    assert "/" not in protocol.video_filename("put a/b in c", 1, True)
    with pytest.raises(ValueError, match="trial must be >= 0"):
        protocol.video_filename("Lift", -1, True)
    with pytest.raises(ValueError, match="no usable characters"):
        protocol.video_filename(" / ", 0, True)


def test_camera_views_match_the_libero_robot_config():
    robot = load_robot_config("libero")
    assert set(CAMERAS) == set(robot.camera_views)
    assert CAMERAS == {"primary": "agentview", "wrist": "robot0_eye_in_hand"}
    assert robot.control_hz == 20.0 and robot.proprio.dim == 8 and robot.action.dim == 7
    assert np.allclose(robot.limits.lower, -1.0) and np.allclose(robot.limits.upper, 1.0)
