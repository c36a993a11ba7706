"""The scripted expert on real LIBERO tasks, and ``wp-data collect-sim --task libero:<suite>`` writing LIBERO RLDS.

The expert tests run without cameras (no GL context: safe in the pytest process next to TensorFlow); collect-sim
renders in its own worker process. Skipped where LIBERO or its assets are missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from wp_policy.sim.libero_env import libero_missing

pytestmark = [pytest.mark.sim, pytest.mark.slow, pytest.mark.skipif(bool(libero_missing()), reason=libero_missing())]

# (suite, task id, init state): reliable ones (docs/simulation.md, "Scripted LIBERO demonstrations")
CASES = [("libero_object", 9, 1), ("libero_spatial", 0, 1)]


@pytest.mark.parametrize(("suite", "task_id", "init_state"), CASES)
def test_expert_solves_a_real_libero_task(suite, task_id, init_state):
    from wp_policy.sim.libero_env import LiberoEnv
    from wp_training.sim_demos.libero_expert import PickPlaceGoal
    from wp_training.sim_demos.scripted_expert import run_expert_episode

    env = LiberoEnv(suite, render=False)
    try:
        task = env.tasks[task_id]
        ep = run_expert_episode(env, task.name, seed=init_state, init_state=init_state)
        goal = PickPlaceGoal.from_task_env(env.scene.env)
    finally:
        env.close()
    assert ep.success and ep.num_steps < task.max_steps  # LIBERO's own done, within the suite's budget
    assert ep.init_state == init_state and ep.instruction == task.instruction and ep.images == {}
    assert goal.predicate == ("in" if suite == "libero_object" else "on")
    a = ep.actions
    assert a.dtype == np.float32 and a.shape == (ep.num_steps, 7) and np.all(np.abs(a) <= 1.0)
    gripper = a[:, 6]
    assert gripper[0] == -1.0 and set(np.unique(gripper).tolist()) == {-1.0, 1.0}  # open, close (+1) ...
    assert np.count_nonzero(np.diff(gripper)) >= 1
    assert ep.states.shape == (ep.num_steps, 8) and ep.states.dtype == np.float32


def test_goal_parsing_names_what_it_cannot_do():
    from wp_training.sim_demos.libero_expert import PickPlaceGoal

    class Scene:
        parsed_problem = {"goal_state": [["open", "wooden_cabinet_1_top_region"]]}

    with pytest.raises(ValueError, match="needs a goal of one \\(On obj target\\) or \\(In obj region\\)"):
        PickPlaceGoal.from_task_env(Scene())


def test_collect_sim_writes_libero_rlds(tmp_path, capsys):
    from wp_training.sim_demos.collect_sim import SUMMARY_FILE, main
    from wp_training.data.rlds_reader import RldsReader, read_rlds

    args = ["--task", "libero:libero_object", "--task-ids", "9", "--episodes", "1", "--first-init-state", "1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    reader = RldsReader(tmp_path / "sim_libero_object" / "1.0.0")
    assert reader.num_episodes == 1
    assert dict(reader.layout.image_shapes) == {"image": (256, 256, 3), "wrist_image": (256, 256, 3)}
    assert dict(reader.layout.state_dims) == {"state": 8} and reader.layout.action_dim == 7
    for key in ("is_first", "is_last", "is_terminal"):
        assert reader.fields[f"steps/{key}"].dtype == "bool"
    (ep,) = read_rlds(reader.dir)
    n = len(ep["action"])
    assert ep["language_instruction"] == "pick up the orange juice and place it in the basket" and ep["success"]
    assert ep["file_path"] == "pick_up_the_orange_juice_and_place_it_in_the_basket_init1"
    for key in ("image", "wrist_image"):
        images = ep["observation"][key]
        assert images.shape == (n, 256, 256, 3) and images.dtype == np.uint8 and images.std() > 10
    assert ep["observation"]["state"].shape == (n, 8) and ep["observation"]["state"].dtype == np.float32
    assert ep["action"].dtype == np.float32 and set(np.unique(ep["action"][:, 6]).tolist()) == {-1.0, 1.0}
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    tally = summary["tasks"]["pick_up_the_orange_juice_and_place_it_in_the_basket"]
    assert tally["successes"] == 1 and tally["success_rate"] == 1.0 and tally["steps_kept"] == n
    assert summary["first_init_state"] == 1
    assert "1/1 (100%)" in capsys.readouterr().out
