"""The R1 Lite graph on the wall clock against a robot stand-in that tracks its commands (separate processes, real
DDS, tiny models): command stream, operator stop / resume (wp-stop), malformed plans, a dead camera, and the planner
process killed mid-run and restarted."""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from fake_robot import FakeRobot
from ros_helpers import Listener, Proc, diagnostics_of, wait_for, wp_launch
from trajectory_msgs.msg import JointTrajectory

from wp_policy.paths import config_dir
from wp_policy.ros.diagnostics import status_values
from wp_policy.ros.plan_msgs import plan_to_message, stop_message
from wp_policy.ros.qos import qos_profile
from wp_policy.runtime import Plan, Waypoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]

OBS_TIMEOUT = 0.5
PLAN_TICKS = 27  # the tiny planner's plans: 3 waypoints of d = 9


@pytest.fixture(scope="module")
def setup(tmp_path_factory, policy_files, rclpy_context, r1lite_config):
    data = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    data["planner"]["ros__parameters"].update(num_waypoints=3, cpu_threads=1, diagnostics_period=0.25)
    data["filler"]["ros__parameters"].update(cpu_threads=1, diagnostics_period=0.25, obs_timeout=OBS_TIMEOUT,
                                             feedback_timeout=0.5, replan_retry_s=1.0)
    params = tmp_path_factory.mktemp("params") / "wall.yaml"
    params.write_text(yaml.safe_dump(data))
    args = [*policy_files.launch_args(), "device:=cpu", "instruction:=pick up the cup", f"params_file:={params}"]
    robot = FakeRobot(r1lite_config)
    listener = Listener("faults_listener")
    listener.listen(JointTrajectory, "/wp/waypoints")
    listener.listen(DiagnosticArray, "/diagnostics", depth=1000)
    graph = wp_launch("r1lite", "--nodes", "aggregator,filler", *args)
    planners = [wp_launch("r1lite", "--nodes", "planner", *args)]  # its own supervisor, so it can die alone
    ctx = {"robot": robot, "listener": listener, "graph": graph, "planners": planners, "args": args,
           "stop_pub": listener.create_publisher(JointTrajectory, "/wp/waypoints", qos_profile("reliable"))}
    wait_for(lambda: len(listener.get("/wp/waypoints")) > 0 and moving(robot, 0.5) or graph.popen.poll() is not None,
             120, "the first plan to move the robot")
    assert graph.popen.poll() is None, graph.output
    yield ctx
    for proc in planners:
        proc.stop()
    assert graph.stop() == 0, graph.output
    listener.close()
    robot.close()


def moving(robot: FakeRobot, window: float) -> bool:
    cmds = robot.commands_since(time.monotonic() - window)
    return len(cmds) > 2 and len({c.tobytes() for _, c in cmds}) > 1


def holding(robot: FakeRobot, since: float) -> bool:
    cmds = robot.commands_since(since)
    return len(cmds) > 2 and len({c.tobytes() for _, c in cmds}) == 1


def filler_values(listener) -> dict:
    statuses = diagnostics_of(listener, "/filler")
    return status_values(statuses[-1]) if statuses else {}


def test_commands_stream_at_the_control_rate_within_limits(setup, r1lite_config):
    t0 = time.monotonic()
    time.sleep(3.0)
    cmds = setup["robot"].commands_since(t0)
    periods = np.diff([t for t, _ in cmds])
    assert 0.7 * 45 <= len(cmds) <= 1.1 * 45, len(cmds)  # 15 Hz for 3 s on a loaded 2-core runner
    assert abs(np.median(periods) - 1 / 15) < 0.01
    actions = np.stack([a for _, a in cmds])
    lim = r1lite_config.limits
    assert np.all(actions >= lim.lower) and np.all(actions <= lim.upper)
    assert np.all(np.abs(np.diff(actions, axis=0)) <= np.array(lim.max_step) + 1e-9)


def test_operator_stop_holds_at_once_then_resume(setup):
    robot, listener = setup["robot"], setup["listener"]
    wait_for(lambda: moving(robot, 0.3), 20, "motion before the stop")
    sent = time.monotonic()
    setup["stop_pub"].publish(stop_message(time.time_ns()))
    n_plans = len(listener.get("/wp/waypoints"))
    wait_for(lambda: holding(robot, sent + 0.5), 5, "holds after the stop")
    time.sleep(1.0)
    cmds = robot.commands_since(sent)
    hold = cmds[-1][1]
    first = next(i for i, (_, a) in enumerate(cmds) if np.array_equal(a, hold))
    assert first <= 1 and all(np.array_equal(a, hold) for _, a in cmds[first:])  # the next command is the hold
    latency = cmds[first][0] - sent
    print(f"stop latency (publish -> hold received): {latency * 1e3:.1f} ms")
    assert latency < 0.5
    measured = [s for t, s in robot.states if sent - 0.5 <= t <= sent + latency]
    assert any(np.allclose(hold, s, atol=1e-9) for s in measured)  # the position measured at the stop
    assert len(listener.get("/wp/waypoints")) <= n_plans + 1  # the planner stopped re-planning (one may be in flight)
    assert int(filler_values(listener).get("count.stops", 0)) >= 1

    resume = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--resume"])
    assert resume.wait(60) == 0 and "resuming" in resume.output, resume.output
    wait_for(lambda: moving(robot, 0.5), 20, "motion after /wp/resume")
    stop = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli"])  # the operator's command does the same
    assert stop.wait(60) == 0 and "stop confirmed by the filler: stopped by" in stop.output, stop.output
    wait_for(lambda: holding(robot, time.monotonic() - 0.5), 5, "holds after wp-stop")
    resume = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--resume"])
    assert resume.wait(60) == 0, resume.output
    wait_for(lambda: moving(robot, 0.5), 20, "motion after the second resume")


def test_malformed_plans_are_rejected_and_the_filler_carries_on(setup, r1lite_config):
    good = plan_to_message(Plan((Waypoint(np.zeros(14), 5), Waypoint(np.ones(14), 5)), time.time_ns()),
                           r1lite_config)
    bad = [JointTrajectory(), JointTrajectory(), JointTrajectory(), JointTrajectory()]
    for msg in bad:
        msg.header, msg.joint_names, msg.points = good.header, list(good.joint_names), [type(p)() for p in good.points]
        for src, dst in zip(good.points, msg.points):
            dst.positions, dst.time_from_start = list(src.positions), src.time_from_start
    bad[0].points[1].positions = [float("nan")] * 14
    bad[1].points[0].positions = [0.0] * 6  # wrong length
    bad[2].joint_names = [f"j{i}" for i in range(14)]
    bad[3].points = list(reversed(bad[3].points))  # time going backwards
    for msg in bad:
        setup["stop_pub"].publish(msg)
    wait_for(lambda: int(filler_values(setup["listener"]).get("count.rejected.waypoints", 0)) >= 4, 5,
             "four rejections on /diagnostics")
    assert any(s.level == DiagnosticStatus.WARN and "rejected waypoints" in s.message
               for s in diagnostics_of(setup["listener"], "/filler"))
    wait_for(lambda: moving(setup["robot"], 0.5), 10, "commands after the rejections")
    assert setup["graph"].popen.poll() is None


def test_a_dead_camera_means_holds_after_the_timeout(setup):
    robot, listener = setup["robot"], setup["listener"]
    robot.cameras_on["head"] = False
    off = time.monotonic()
    wait_for(lambda: holding(robot, off + OBS_TIMEOUT + 0.3), OBS_TIMEOUT + 5, "holds once the views are stale")
    assert any(s.level == DiagnosticStatus.ERROR and "stale_obs" in s.message
               for s in diagnostics_of(listener, "/filler"))
    robot.cameras_on["head"] = True
    wait_for(lambda: moving(robot, 0.5), 20, "motion once the camera is back (a fresh plan)")


def test_planner_killed_mid_run_then_restarted(setup):
    robot, listener, planner = setup["robot"], setup["listener"], setup["planners"][0]
    n = len(listener.get("/wp/waypoints"))
    wait_for(lambda: len(listener.get("/wp/waypoints")) > n, 20, "a fresh plan")
    pid = int(re.search(r"started planner \(pid (\d+)\)", planner.output)[1])
    os.kill(pid, signal.SIGKILL)  # the node process, mid-run
    killed = time.monotonic()
    assert planner.wait(30) == 1 and "was killed by SIGKILL" in planner.output
    time.sleep(0.6)
    assert moving(robot, 0.5)  # the filler finishes the plan it has ...
    wait_for(lambda: holding(robot, time.monotonic() - 0.5), PLAN_TICKS / 15 + 5, "holds once the queue ran out")
    assert time.monotonic() - killed < PLAN_TICKS / 15 + 5
    wait_for(lambda: int(filler_values(listener).get("count.replan_retries", 0)) >= 1, 5, "re-sent replan requests")
    assert setup["graph"].popen.poll() is None
    n = len(listener.get("/wp/waypoints"))
    setup["planners"].append(wp_launch("r1lite", "--nodes", "planner", *setup["args"]))  # ... and recovers
    wait_for(lambda: len(listener.get("/wp/waypoints")) > n, 120, "a plan from the restarted planner")
    wait_for(lambda: moving(robot, 0.5), 20, "motion after the planner came back")
