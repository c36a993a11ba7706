"""A robot that exists nowhere in configs/, described by a temporary YAML only, runs the whole graph: ``wp-launch
robot robot_config:=<yaml>`` against a stand-in that tracks its commands (separate processes, real DDS, tiny models).

The robot: one 7-DoF arm and a parallel gripper (width 0..0.08 m), two JPEG cameras, commands on
``std_msgs/Float64MultiArray`` (ros2_control forward command controllers), one feedback topic whose driver names the
joints differently from the model and publishes them in reverse order.
"""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from fake_robot import FakeRobot
from policy_files import write_tiny_policy
from ros_helpers import Listener, diagnostics_of, wait_for, wp_launch
from std_msgs.msg import Float64MultiArray

from wp_policy.paths import config_dir
from wp_policy.robot_config import load_robot_config

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ARM_TOPIC = "/arm7/position_controller/commands"
GRIPPER_TOPIC = "/arm7/gripper_controller/commands"
FEEDBACK_TOPIC = "/arm7/joint_states"
JOINTS = [f"joint{i}" for i in range(1, 8)]
ARM7 = {
    "robot_type": "test_arm7",
    "action_kind": "joint_position",
    "control_hz": 15.0,
    "dataset_action_dim": 8,
    "action": {"dim": 8, "indices": list(range(8)), "norm_mask": [True] * 7 + [False], "names": [*JOINTS, "gripper"],
               "gripper_dims": [7]},
    "proprio": {"dim": 8, "indices": list(range(8)), "norm_mask": [True] * 7 + [False], "names": [*JOINTS, "gripper"],
                "gripper_dims": [7]},
    "state_keys": ["joint_positions"],
    "cameras": [
        {"view": "scene", "rlds_key": "image_scene", "model_key": "base_0_rgb", "topic": "/arm7/scene/compressed",
         "encoding": "jpeg"},
        {"view": "wrist", "rlds_key": "image_wrist", "model_key": "left_wrist_0_rgb",
         "topic": "/arm7/wrist/compressed", "encoding": "jpeg"},
    ],
    "gripper": {"action": {"closed": 0.0, "open": 0.08, "unit": "m"}},
    # asymmetric limits: every joint's mid-range (the stand-in's start) differs, so misread joints would show
    "limits": {"lower": [-2.9, -1.76, -2.9, -3.07, -2.9, -0.02, -2.9, 0.0],
               "upper": [2.9, 1.76, 2.9, -0.07, 2.9, 3.75, 2.9, 0.08],
               "max_step": [0.04] * 7 + [0.01]},
    "ros": {
        "feedback": [{"topic": FEEDBACK_TOPIC, "proprio_dims": list(range(8)),
                      "joint_names": [f"arm7_joint{i}" for i in range(1, 8)] + ["arm7_finger_joint"]}],
        "commands": [
            {"topic": ARM_TOPIC, "action_dims": list(range(7)), "kind": "joint_position",
             "msg_type": "std_msgs/Float64MultiArray"},
            {"topic": GRIPPER_TOPIC, "action_dims": [7], "kind": "gripper", "msg_type": "std_msgs/Float64MultiArray"},
        ],
    },
}


@pytest.fixture(scope="module")
def arm7(tmp_path_factory, sp_model_path, rclpy_context):
    folder = tmp_path_factory.mktemp("arm7")
    robot_yaml = folder / "arm7.yaml"
    robot_yaml.write_text(yaml.safe_dump(ARM7, sort_keys=False))
    robot = load_robot_config(robot_yaml)
    files = write_tiny_policy(folder / "policy", robot, sp_model_path)
    params = yaml.safe_load((config_dir() / "graphs" / "robot.yaml").read_text())
    params["planner"]["ros__parameters"].update(num_waypoints=3, cpu_threads=1, diagnostics_period=0.25)
    params["filler"]["ros__parameters"].update(cpu_threads=1, diagnostics_period=0.25, feedback_timeout=0.5)
    params["aggregator"]["ros__parameters"].update(diagnostics_period=0.25)
    # the final hold is a fresh process: on a loaded 2-core runner its discovery of the feedback can exceed 5 s
    params["final_hold"]["ros__parameters"]["feedback_wait_s"] = 10.0
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    fake = FakeRobot(robot, reverse_feedback=True)
    start = fake.state.copy()
    listener = Listener("arm7_listener")
    listener.listen(DiagnosticArray, "/diagnostics", depth=1000)
    graph = wp_launch("robot", f"robot_config:={robot_yaml}", *files.launch_args(), "device:=cpu",
                      "instruction:=pick up the cube", f"params_file:={params_file}")
    try:
        wait_for(lambda: moving(fake, 0.5) or graph.popen.poll() is not None, 120, "the first plan to move the arm")
        assert graph.popen.poll() is None, graph.output
        ctx = {"robot": robot, "fake": fake, "start": start, "listener": listener, "graph": graph, "exit_code": 0}
        yield ctx
    finally:
        code = graph.stop()
        listener.close()
        fake.close()
    assert code == ctx["exit_code"], graph.output


def moving(fake: FakeRobot, window: float) -> bool:
    cmds = fake.commands_since(time.monotonic() - window)
    return len(cmds) > 2 and len({c.tobytes() for _, c in cmds}) > 1


def test_commands_arrive_on_the_configured_topics_types_and_lengths(arm7):
    fake, robot = arm7["fake"], arm7["robot"]
    arm, gripper = fake.last_message[ARM_TOPIC], fake.last_message[GRIPPER_TOPIC]
    assert isinstance(arm, Float64MultiArray) and len(arm.data) == 7
    assert isinstance(gripper, Float64MultiArray) and len(gripper.data) == 1
    actions = np.stack([a for _, a in fake.commands_since(0.0)])
    lim = robot.limits
    assert np.all(actions >= lim.lower) and np.all(actions <= lim.upper)
    assert np.all(np.abs(np.diff(actions, axis=0)) <= np.array(lim.max_step) + 1e-9)
    # the feedback came in reverse order under other names: read by name, the first command starts where the arm is
    # (read by position, joint 1 would have been the gripper's 0.04 m and joint 4 the arm's joint 4 mirrored)
    first = actions[0]
    assert np.all(np.abs(first - arm7["start"]) <= np.array(lim.max_step) + 1e-9), (first, arm7["start"])


def test_a_joint_missing_from_the_feedback_is_an_error_and_a_hold(arm7):
    fake, listener, graph = arm7["fake"], arm7["listener"], arm7["graph"]
    fake.renamed = {"arm7_joint4": "elbow"}  # the driver stops publishing a configured name

    def error_naming_the_joint(node: str) -> bool:
        return any(s.level == DiagnosticStatus.ERROR and "arm7_joint4" in s.message
                   for s in diagnostics_of(listener, node))

    wait_for(lambda: error_naming_the_joint("/aggregator") and error_naming_the_joint("/filler"), 30,
             "ERRORs naming the missing joint from the aggregator and the filler")
    time.sleep(1.0)
    held = fake.commands_since(time.monotonic() - 0.7)
    assert len(held) > 3 and len({a.tobytes() for _, a in held}) == 1  # holding one position
    assert graph.popen.poll() is None, graph.output  # nothing crashed
    fake.renamed = {}
    wait_for(lambda: moving(fake, 0.5), 60, "motion once the driver names the joint again")


def test_a_killed_filler_gets_final_holds_in_the_configured_types(arm7):
    """Last in the module: it ends the graph. The launcher's final_hold node publishes on the Float64MultiArray
    topics too, the arm's measured position."""
    fake, graph = arm7["fake"], arm7["graph"]
    wait_for(lambda: moving(fake, 0.5), 60, "motion before the kill")
    pid = int(re.search(r"started filler \(pid (\d+)\)", graph.output)[1])
    os.kill(pid, signal.SIGKILL)
    killed, at_kill = time.monotonic(), fake.state.copy()
    arm7["exit_code"] = 1  # a node died: wp-launch stops the graph and exits 1
    assert graph.wait(60) == 1, graph.output
    assert re.search(r"\[final_hold\] wp_final_hold: sent 5 hold\(s\) \[.*\] on /arm7/position_controller/commands, "
                     r"/arm7/gripper_controller/commands", graph.output), graph.output
    wait_for(lambda: len(fake.commands_since(killed)) >= 5, 5, "the final holds at the stand-in")
    held = fake.commands_since(killed)[-1][1]  # where the arm was (a command in flight may have moved it one step)
    assert np.all(np.abs(held - at_kill) <= np.array(arm7["robot"].limits.max_step) + 1e-9), (held, at_kill)
    assert isinstance(fake.last_message[ARM_TOPIC], Float64MultiArray)
