"""wp-launch as a user runs it: a dying node is named and fails the launch; Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal

import pytest
from ros_helpers import wait_for, wp_launch

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def child_pids(proc) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"started (\w+) \(pid (\d+)\)", proc.output)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_node_that_fails_at_startup_is_named_in_one_line(tmp_path):
    proc = wp_launch("r1lite", "--nodes", "aggregator", "robot_config:=no_such_robot")
    assert proc.wait(60) == 1, proc.output
    (line,) = [line for line in proc.lines if "cannot start" in line]  # the node's reason, reported once
    assert line.startswith("[wp-launch] ERROR: node 'aggregator' cannot start (exited with code 1): ")
    assert "no_such_robot" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("aggregator:\n  ros__parameters:\n    sync_tolerance: -1.0\n")
    proc = wp_launch("r1lite", "--nodes", "aggregator", f"params_file:={bad}")
    assert proc.wait(60) == 1 and "sync_tolerance must be > 0, got -1.0" in proc.output


def test_node_killed_mid_run_stops_the_graph_with_an_error():
    proc = wp_launch("r1lite", "--nodes", "aggregator")
    wait_for(lambda: "aggregator" in child_pids(proc) and "cameras" in proc.output, 30, "the aggregator")
    os.kill(child_pids(proc)["aggregator"], signal.SIGKILL)
    assert proc.wait(30) == 1
    assert "node 'aggregator'" in proc.output and "was killed by SIGKILL" in proc.output


def test_ctrl_c_stops_every_node():
    proc = wp_launch("r1lite", "--nodes", "aggregator")
    wait_for(lambda: "cameras" in proc.output, 30, "the aggregator")
    pids = child_pids(proc)
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, proc.output
    assert pids and not any(alive(pid) for pid in pids.values())


def test_bad_arguments_fail_before_starting_anything():
    proc = wp_launch("r1lite", "no_such_arg:=1")
    assert proc.wait(30) == 2 and "unknown argument(s) ['no_such_arg']" in proc.output
    proc = wp_launch("r1lite", "replan_mode:=sometimes")
    assert proc.wait(30) == 2 and "replan_mode" in proc.output


def test_print_shows_the_commands_of_every_node():
    proc = wp_launch("libero_sim", "--print", "task_id:=4")
    assert proc.wait(30) == 0, proc.output
    lines = [line for line in proc.lines if "--ros-args" in line]
    assert [re.search(r"-m (\S+)", line)[1] for line in lines] == [
        "wp_policy.ros.libero_bridge_node", "wp_policy.ros.aggregator_node", "wp_policy.ros.planner_node",
        "wp_policy.ros.filler_node"]
    assert "'task_id': 4" in proc.output
