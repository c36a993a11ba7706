"""Fault injection against the running R1 Lite graph (separate processes, real DDS, tiny models, a stand-in robot
that tracks its commands): the stop latch and the ways around it, the one stop rule, and how the graph ends.

Each case reproduces a defect an outside safety review found: a valid plan after a stop moved the robot; a
restarted planner acted on the latched instruction and moved a stopped robot; a first point at 1 ms stopped the
filler but not the planner; a dead or stopped graph fell silent without a final hold.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from fake_robot import FakeRobot
from ros_helpers import Listener, Proc, diagnostics_of, wait_for, wp_launch
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from wp_policy.paths import config_dir
from wp_policy.ros.conversions import sec_to_duration
from wp_policy.ros.diagnostics import status_values
from wp_policy.ros.plan_msgs import plan_to_message, stop_message
from wp_policy.ros.qos import qos_profile
from wp_policy.runtime import Plan, Waypoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]

QUIET_S = 2.0  # how long a stopped robot is watched for motion after each bypass attempt


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    data = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    data["planner"]["ros__parameters"].update(num_waypoints=3, cpu_threads=1, diagnostics_period=0.25)
    data["filler"]["ros__parameters"].update(cpu_threads=1, diagnostics_period=0.25, obs_timeout=0.5,
                                             feedback_timeout=0.5, replan_retry_s=1.0)
    path = tmp_path_factory.mktemp("params") / "wall.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def setup(policy_files, params_file, rclpy_context, r1lite_config):
    args = [*policy_files.launch_args(), "device:=cpu", f"params_file:={params_file}"]
    robot = FakeRobot(r1lite_config)
    listener = Listener("safety_faults_listener")
    listener.listen(JointTrajectory, "/wp/waypoints")
    listener.listen(DiagnosticArray, "/diagnostics", depth=1000)
    latched = qos_profile("reliable_latched")
    listener.create_subscription(String, "/wp/stop_state", lambda m: listener._store("/wp/stop_state", m), latched)
    instruction_pub = listener.create_publisher(String, "/wp/instruction", latched)
    instruction_pub.publish(String(data="pick up the cup"))  # latched: every node gets it when it matches
    graph = wp_launch("r1lite", "--nodes", "aggregator,filler", *args)
    planners = [wp_launch("r1lite", "--nodes", "planner", *args)]  # its own supervisor, so it can die alone
    ctx = {"robot": robot, "listener": listener, "graph": graph, "planners": planners, "args": args,
           "instruction_pub": instruction_pub,
           "pub": listener.create_publisher(JointTrajectory, "/wp/waypoints", qos_profile("reliable"))}
    wait_for(lambda: moving(robot, 0.5) or graph.popen.poll() is not None, 120, "the first plan to move the robot")
    assert graph.popen.poll() is None, graph.output
    yield ctx
    for proc in ctx["planners"]:
        proc.stop()
    if ctx["graph"].popen.poll() is None:
        ctx["graph"].stop()
    listener.close()
    robot.close()


def moving(robot: FakeRobot, window: float) -> bool:
    cmds = robot.commands_since(time.monotonic() - window)
    return len(cmds) > 2 and len({c.tobytes() for _, c in cmds}) > 1


def holding(robot: FakeRobot, since: float) -> bool:
    cmds = robot.commands_since(since)
    return len(cmds) > 2 and len({c.tobytes() for _, c in cmds}) == 1


def node_values(listener, node: str) -> dict:
    statuses = diagnostics_of(listener, node)
    return status_values(statuses[-1]) if statuses else {}


def stop_state(listener) -> dict:
    states = listener.get("/wp/stop_state")
    return json.loads(states[-1].data) if states else {}


def stop_and_wait(ctx) -> float:
    robot = ctx["robot"]
    wait_for(lambda: moving(robot, 0.3), 30, "motion before the stop")
    sent = time.monotonic()
    ctx["pub"].publish(stop_message(time.time_ns()))
    wait_for(lambda: holding(robot, sent + 0.3), 5, "holds after the stop")
    return sent


def resume(ctx) -> None:
    proc = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--resume"])
    assert proc.wait(60) == 0 and "resuming" in proc.output, proc.output
    wait_for(lambda: moving(ctx["robot"], 0.5), 30, "motion after /wp/resume")


def a_valid_plan(ctx, r1lite_config) -> JointTrajectory:
    """A well-formed plan from a fresh observation, away from where the robot stands."""
    target = ctx["robot"].state + 0.05
    return plan_to_message(Plan((Waypoint(target, 5), Waypoint(target + 0.05, 5)), time.time_ns()), r1lite_config)


def test_a_valid_plan_after_a_stop_does_not_move_the_robot(setup, r1lite_config):
    robot, listener = setup["robot"], setup["listener"]
    sent = stop_and_wait(setup)
    for _ in range(3):
        setup["pub"].publish(a_valid_plan(setup, r1lite_config))  # no /wp/resume
        time.sleep(0.2)
    time.sleep(QUIET_S)
    assert holding(robot, sent + 0.3)
    assert set(robot.reasons_since(sent + 0.3)) == {"hold:stopped"}
    wait_for(lambda: int(node_values(listener, "/filler").get("count.dropped_plans.stopped", 0)) >= 3, 5,
             "the filler counting the dropped plans")
    values = node_values(listener, "/filler")
    assert (values["stop.stopped"], values["stop.source"]) == ("true", "stop_message")
    assert stop_state(listener)["stopped"] is True and stop_state(listener)["source"] == "stop_message"
    resume(setup)
    assert stop_state(listener) | {"since": 0} == {"stopped": False, "source": "resume_service", "since": 0,
                                                    "instruction_id": stop_state(listener)["instruction_id"],
                                                    "detail": ""}


def test_a_restarted_planner_does_not_act_on_the_instruction_latched_before_the_stop(setup):
    robot, listener, planner = setup["robot"], setup["listener"], setup["planners"][-1]
    sent = stop_and_wait(setup)
    pid = int(re.search(r"started planner \(pid (\d+)\)", planner.output)[1])
    os.kill(pid, signal.SIGKILL)
    assert planner.wait(30) == 1
    restarted = time.monotonic()
    n_plans = len(listener.get("/wp/waypoints"))
    n_status = len(diagnostics_of(listener, "/planner"))
    setup["planners"].append(wp_launch("r1lite", "--nodes", "planner", *setup["args"]))
    wait_for(lambda: len(diagnostics_of(listener, "/planner")) > n_status + 2, 120, "the restarted planner's status")
    time.sleep(QUIET_S)
    assert len(listener.get("/wp/waypoints")) == n_plans, "the restarted planner planned while the robot is stopped"
    assert holding(robot, sent + 0.3) and time.monotonic() - restarted > QUIET_S
    assert "stopped" in diagnostics_of(listener, "/planner")[-1].message
    resume(setup)  # a deliberate resume makes the restarted planner plan, with the instruction it kept
    assert len(listener.get("/wp/waypoints")) > n_plans


def test_a_new_instruction_message_resumes(setup):
    robot, listener = setup["robot"], setup["listener"]
    sent = stop_and_wait(setup)
    time.sleep(0.5)
    assert holding(robot, sent + 0.3)
    setup["instruction_pub"].publish(String(data="pick up the cup"))  # same text, but a new message
    wait_for(lambda: moving(robot, 0.5), 30, "motion after a new instruction")
    assert stop_state(listener)["source"] == "instruction" and stop_state(listener)["stopped"] is False


def test_a_first_point_due_in_1_ms_stops_the_filler_and_the_planner(setup, r1lite_config):
    robot, listener = setup["robot"], setup["listener"]
    wait_for(lambda: moving(robot, 0.3), 30, "motion")
    stops = int(node_values(listener, "/planner").get("count.stops", 0))
    msg = a_valid_plan(setup, r1lite_config)
    msg.points[0].time_from_start = sec_to_duration(0.001)  # rounds to 0 ticks at 15 Hz
    sent = time.monotonic()
    setup["pub"].publish(msg)
    wait_for(lambda: holding(robot, sent + 0.3), 5, "holds after the 1 ms stop")
    wait_for(lambda: int(node_values(listener, "/planner").get("count.stops", 0)) > stops, 5, "the planner's stop")
    assert stop_state(listener)["stopped"] is True
    n_plans = len(listener.get("/wp/waypoints"))
    time.sleep(QUIET_S)
    assert holding(robot, sent + 0.3) and len(listener.get("/wp/waypoints")) == n_plans
    resume(setup)


def test_stopping_the_graph_ends_with_final_holds(setup):
    robot = setup["robot"]
    wait_for(lambda: moving(robot, 0.3), 30, "motion")
    before = time.monotonic()
    assert setup["graph"].stop(30) == 0, setup["graph"].output
    time.sleep(0.5)
    reasons = robot.reasons_since(before)
    assert reasons and reasons[-1] == "hold:shutdown", reasons[-10:]
    last = robot.commands_since(before)[-1][1]
    np.testing.assert_allclose(last, robot.state, atol=1e-9)  # the measured position
    assert "sent 3 final hold(s)" in setup["graph"].output


def test_a_killed_filler_gets_a_final_hold_from_the_launcher(setup, r1lite_config):
    robot = setup["robot"]
    graph = wp_launch("r1lite", "--nodes", "aggregator,filler", *setup["args"])
    setup["graph"] = graph
    try:
        wait_for(lambda: "started filler" in graph.output, 60, "the filler process")
        start = time.monotonic()
        wait_for(lambda: len(robot.commands_since(start)) > 5 or graph.popen.poll() is not None, 120,
                 "commands from the new filler")
        pid = int(re.search(r"started filler \(pid (\d+)\)", graph.output)[1])
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        assert graph.wait(60) == 1
        assert "filler was killed by SIGKILL: running final_hold" in graph.output, graph.output
        assert re.search(r"\[final_hold\] wp_final_hold: sent 5 hold\(s\)", graph.output), graph.output
        reasons = robot.reasons_since(killed)
        assert reasons.count("hold:filler_gone") >= 1, reasons
        gone = [a for (_, a), r in zip(robot.commands_since(killed), reasons) if r == "hold:filler_gone"]
        np.testing.assert_allclose(gone[-1], robot.state, atol=1e-9)
        lim = r1lite_config.limits
        assert np.all(gone[-1] >= lim.lower) and np.all(gone[-1] <= lim.upper)
    finally:
        graph.stop()
