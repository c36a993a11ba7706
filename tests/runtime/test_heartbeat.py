"""Heartbeat bookkeeping (ROS-free) and the launcher's process-state probe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from wp_policy.heartbeat import HeartbeatMonitor
from wp_policy.supervisor import _process_state


def test_only_nodes_heard_before_and_silent_too_long_are_reported():
    hb = HeartbeatMonitor(["planner", "/filler"], timeout=3.0)
    hb.beat("/planner", 0.0)
    hb.beat("/filler", 0.0)
    hb.beat("/someone_else", 0.0)  # not watched
    assert hb.silent(2.9) == {}
    hb.beat("/planner", 2.0)
    assert hb.silent(4.0) == {"/filler": 4.0}
    assert hb.newly_silent(4.0, {}) == ["/filler"] and hb.newly_silent(4.5, {"/filler": 4.0}) == []
    assert hb.lost == {"/planner": 0, "/filler": 1}
    with pytest.raises(ValueError, match="timeout must be > 0"):
        HeartbeatMonitor(["x"], 0.0)


def test_a_stopped_process_reads_as_state_t():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        assert _process_state(proc.pid) in ("S", "R")
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.3)
        assert _process_state(proc.pid) == "T"
    finally:
        proc.kill()
        proc.wait()
    assert _process_state(proc.pid) == ""
