"""From robot data to robot commands, with the project's own commands only.

A recorded R1 Lite teleoperation bag (three cameras, joint feedback, the commanded targets, the instruction) ->
``wp-data from-bags`` -> waypoints, stats, tokenizer -> a few tiny AE and VLM training steps -> a policy file ->
the r1lite graph running that policy, fed by a replay of the same bag's sensor topics -> commands on the robot's
arm and gripper topics, within its limits. And a small LeRobot data set -> ``wp-data from-lerobot`` -> the same
training -> an episode on the simulated graph. Each hand-off is tested on its own elsewhere; these catch a break
between them (layouts, keys, units, the policy file, graph parameters).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import Listener, wait_for, wp_bag, wp_launch
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from wp_policy.command_map import CommandMapper
from wp_training.data_cli import main as data_main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training_data"))
from converted_training import prepare_and_train  # noqa: E402
from test_from_bags import INSTRUCTION, SPEC, make_bag  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_a_recording_trains_a_policy_that_commands_the_robot_through_the_graph(tmp_path, rclpy_context,
                                                                               r1lite_config):
    from wp_policy.ros.bag_synth import write_synthetic_bag

    robot = r1lite_config
    write_synthetic_bag(tmp_path / "raw.mcap", robot, SPEC)
    bag = make_bag(robot, tmp_path / "raw.mcap", tmp_path / "teleop.mcap")
    assert data_main(["from-bags", str(bag), "--robot", "r1lite", "--out", str(tmp_path / "rlds"),
                      "--name", "teleop", "--image-size", "32"]) == 0
    rlds = tmp_path / "rlds" / "teleop" / "1.0.0"
    paths = prepare_and_train("r1lite", rlds, ["joint_position_arm_left", "joint_position_arm_right"], tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"robot: r1lite\nvlm_checkpoint: vlm/final_model\nae_checkpoint: ae/final_model\n"
                      f"stats_path: {paths['stats'].name}\ntokenizer_path: {paths['tokenizer'].name}\n"
                      f"device: cpu\nmax_token_len: 320\n")

    command_topics = CommandMapper(robot).topics
    listener = Listener("recording_chain_listener")
    for topic in command_topics:
        listener.listen(JointState, topic, reliable=False)  # command topics are best effort
    listener.listen(JointTrajectory, "/wp/waypoints")
    listener.listen(JointTrajectory, "/wp/action_chunk")
    graph = wp_launch("r1lite", f"policy:={policy}", f"instruction:={INSTRUCTION}")
    try:
        wait_for(lambda: listener.count_publishers("/wp/waypoints") > 0 and
                 listener.count_publishers(command_topics[-1]) > 0 or graph.popen.poll() is not None,
                 120, "the planner and filler to come up")
        assert graph.popen.poll() is None, graph.output
        sensors = [c.topic for c in robot.cameras] + [f.topic for f in robot.ros.feedback]
        replay = wp_bag("replay", str(bag), "--topics", *sensors, "--rate", "0.5")
        assert replay.wait(180) == 0, replay.output + graph.output
        wait_for(lambda: listener.get("/wp/waypoints") and listener.get("/wp/action_chunk") and
                 all(len(listener.get(t)) >= 5 for t in command_topics), 30, "plans, fills and commands")
    finally:
        assert graph.stop() == 0, graph.output
        listener.close()
    mapper = CommandMapper(robot)
    per_topic = {t: listener.get(t) for t in command_topics}
    n = min(len(msgs) for msgs in per_topic.values())
    actions = np.stack([mapper.join({t: per_topic[t][i].position for t in command_topics}) for i in range(n)])
    assert np.isfinite(actions).all()
    lim = robot.limits
    assert np.all(actions >= np.array(lim.lower) - 1e-9) and np.all(actions <= np.array(lim.upper) + 1e-9)
    plans = listener.get("/wp/waypoints")
    assert all(len(p.points) >= 1 for p in plans)


def test_a_lerobot_data_set_trains_a_policy_that_runs_an_episode_on_the_simulated_graph(tmp_path, rclpy_context):
    """The LeRobot path to the same end: a small LeRobot v3.0 set in LIBERO's layout -> ``wp-data from-lerobot`` ->
    training -> a policy file that the simulated graph (aggregator, planner, filler, simulator bridge) runs."""
    import json
    import os
    import subprocess

    import yaml
    from test_from_lerobot import LIBERO_MAP, make_v30

    src = make_v30(tmp_path / "lerobot", [30, 36, 28], codec="libx264")
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(LIBERO_MAP))
    assert data_main(["from-lerobot", str(src), "--map", str(tmp_path / "map.yaml"), "--robot", "libero",
                      "--out", str(tmp_path / "rlds"), "--image-size", "32"]) == 0
    paths = prepare_and_train("libero", tmp_path / "rlds" / "libero_lerobot" / "1.0.0", ["state"], tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"robot: libero\nvlm_checkpoint: vlm/final_model\nae_checkpoint: ae/final_model\n"
                      f"stats_path: {paths['stats'].name}\ntokenizer_path: {paths['tokenizer'].name}\n"
                      f"device: cpu\nmax_token_len: 320\n")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "wp_policy.demo", "--policy", str(policy), "--episodes", "1",
                           "--output-dir", str(out), "--set", "image_size=64", "--set", "max_steps=5",
                           "--set", "record_video=false", "--no-progress"],
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (episode,) = json.loads((out / "results.json").read_text())["episodes"]
    assert 1 <= episode["steps"] <= 5 and np.isfinite(np.asarray(episode["actions"])).all()
