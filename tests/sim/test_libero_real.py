"""The real LIBERO suites (installed by ``make setup``): task catalogue, init states, and one rendered task that is
built, reset from its init state, stepped and rendered (in a child process, libero_probe.py).

Skipped where LIBERO or its assets are missing; test_libero_path.py covers the errors such machines get.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wp_policy.sim.conventions import libero_state
from wp_policy.sim.libero_env import libero_missing
from wp_policy.sim.protocol import NUM_TRIALS_PER_TASK, SUITE_MAX_STEPS

pytestmark = [pytest.mark.sim, pytest.mark.slow, pytest.mark.skipif(bool(libero_missing()), reason=libero_missing())]
SUITE_SIZES = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}


def test_every_suite_lists_its_tasks_with_50_init_states():
    """All five suites: LIBERO's task order and language, the suite's budget, 50 init states of the scene's size."""
    from wp_policy.sim.libero_env import LiberoEnv

    assert set(SUITE_SIZES) == set(SUITE_MAX_STEPS)
    for suite, size in SUITE_SIZES.items():
        env = LiberoEnv(suite)  # builds no scene
        assert len(env.tasks) == size and len({t.name for t in env.tasks}) == size
        assert all(t.max_steps == SUITE_MAX_STEPS[suite] and t.instruction for t in env.tasks)
        for task in env.tasks:
            bddl, init_file = env.task_files(task.name)
            assert bddl.is_file() and init_file.is_file()
            states = env.init_states(task.name)
            assert states.shape[0] == NUM_TRIALS_PER_TASK and states.dtype == np.float64
    spatial = LiberoEnv("libero_spatial").tasks[0]
    assert spatial.instruction == "pick up the black bowl between the plate and the ramekin and place it on the plate"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """libero_object task 0 at the protocol's 256 px: reset from init state 0, 10 wait steps, 4 steps +x, 6 closing
    the gripper, then the same reset again."""
    out = tmp_path_factory.mktemp("libero") / "probe.npz"
    script = Path(__file__).with_name("libero_probe.py")
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"LIBERO probe failed:\n{proc.stderr[-3000:]}"
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def test_real_task_resets_to_its_init_state(probe):
    assert str(probe["task"]) == "pick_up_the_alphabet_soup_and_place_it_in_the_basket"
    assert str(probe["obs_instruction"]) == str(probe["instruction"]) == \
        "pick up the alphabet soup and place it in the basket"
    assert int(probe["max_steps"]) == 280 and int(probe["num_tasks"]) == 10
    np.testing.assert_array_equal(probe["flat_state"], probe["init_states"][0])


def test_real_views_are_rotated_180_degrees_at_256(probe):
    for view, raw in (("primary", "raw_agentview"), ("wrist", "raw_wrist")):
        img = probe[view]
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and img.std() > 10
        np.testing.assert_array_equal(img, probe[raw][::-1, ::-1])


def test_real_state_follows_the_conventions(probe):
    raw = {"robot0_eef_pos": probe["raw_eef_pos"], "robot0_eef_quat": probe["raw_eef_quat"],
           "robot0_gripper_qpos": probe["raw_gripper_qpos"]}
    np.testing.assert_array_equal(probe["state"], libero_state(raw))
    assert probe["state"].dtype == np.float32 and probe["state"].shape == (8,)


def test_real_actions_move_the_arm_and_close_the_gripper(probe):
    waited, moved, closed = probe["waited"], probe["moved"], probe["closed"]
    assert moved[0] - waited[0] > 0.02  # +1 on x: world-frame +x
    assert np.abs(moved[1:3] - waited[1:3]).max() < 0.01
    assert waited[6] > 0.035 and closed[6] < waited[6] - 0.01  # -1 holds it open, +1 closes it
    assert not probe["done"].any() and not probe["success"].any()


def test_same_init_state_gives_the_same_scene(probe):
    np.testing.assert_array_equal(probe["again_primary"], probe["primary"])
    np.testing.assert_array_equal(probe["again_state"], probe["state"])
