"""Bad configuration stops a node at start-up with one clear line and exit code 1; wp-stop fails clearly when nobody
listens."""

from __future__ import annotations

import sys

import pytest
from ros_helpers import Proc

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def node(module: str, *params: str) -> Proc:
    args = [a for p in params for a in ("-p", p)]
    return Proc([sys.executable, "-m", f"wp_policy.ros.{module}", "--ros-args", *args])


def test_bad_parameters_stop_the_nodes_with_a_clear_message(policy_files):
    files = [f"stats:={policy_files.stats}", f"tokenizer:={policy_files.tokenizer}"]
    procs = {
        "no checkpoint": (node("planner_node", *files), "parameter 'checkpoint' is empty: pass vlm_checkpoint:="),
        "bad mode": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "clock_mode:=sometimes"),
                     "clock_mode must be wall or lockstep, got 'sometimes'"),
        "bad pairs": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "pairs_per_plan:=-1"),
                      "pairs_per_plan must be >= 0 (0: every pair of a plan), got -1"),
        "wrong robot": (node("planner_node", f"checkpoint:={policy_files.vlm}", *files, "robot_config:=libero"),
                        "plans 14-D waypoints but robot libero has 8 proprio dims"),
    }
    for what, (proc, message) in procs.items():
        assert proc.wait(120) == 1, f"{what}: {proc.output}"
        assert "cannot start" in proc.output and message in proc.output, f"{what}: {proc.output}"


def test_wp_stop_without_a_graph_fails_clearly():
    stop = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--timeout", "1"])
    resume = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--resume", "--timeout", "1"])
    assert stop.wait(60) == 1 and "nobody subscribes to /wp/waypoints" in stop.output
    assert resume.wait(60) == 1 and "/wp/resume is not available" in resume.output
    bad = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--timeout", "0"])
    assert bad.wait(60) == 2 and "--timeout must be positive" in bad.output
