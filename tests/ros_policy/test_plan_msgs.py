"""Plans on /wp/waypoints: the encoding docs/ros_graph.md fixes, the stop rule, and rejection of malformed messages."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wp_policy.obs_sync import InvalidInput
from wp_policy.ros.conversions import duration_to_sec, stamp_to_ns
from wp_policy.ros.plan_msgs import chunk_message, is_stop_message, message_to_plan, plan_to_message, stop_message
from wp_policy.runtime import Plan, Waypoint

STAMP = 1_700_000_001_234_567_891


@pytest.fixture
def plan(r1lite_config):
    rng = np.random.default_rng(0)
    return Plan(tuple(Waypoint(rng.normal(size=14), d) for d in (3, 9, 0)), STAMP)


def test_plan_encoding_round_trips(plan, r1lite_config):
    msg = plan_to_message(plan, r1lite_config)
    assert list(msg.joint_names) == list(r1lite_config.proprio.names)
    assert stamp_to_ns(msg.header.stamp) == STAMP
    assert [duration_to_sec(p.time_from_start) for p in msg.points] == pytest.approx([3 / 15, 12 / 15, 12 / 15])
    back = message_to_plan(msg, r1lite_config, max_duration=32)
    assert back.stamp_ns == STAMP and [w.duration for w in back.waypoints] == [3, 9, 0]
    for a, b in zip(back.waypoints, plan.waypoints):
        np.testing.assert_array_equal(a.proprio, b.proprio)
    assert not is_stop_message(msg, r1lite_config.control_period)


def test_joint_order_follows_the_names(plan, r1lite_config):
    msg = plan_to_message(plan, r1lite_config)
    order = list(reversed(range(14)))
    msg.joint_names = [msg.joint_names[i] for i in order]
    for p in msg.points:
        p.positions = [p.positions[i] for i in order]
    np.testing.assert_array_equal(message_to_plan(msg, r1lite_config, 32).waypoints[1].proprio,
                                  plan.waypoints[1].proprio)


PERIOD = 1 / 15


def test_stop_rule():
    assert is_stop_message(stop_message(5), PERIOD)  # no joint names, no positions needed
    nan = JointTrajectory(joint_names=["x"], points=[JointTrajectoryPoint(positions=[float("nan")])])
    assert is_stop_message(nan, PERIOD)
    later = JointTrajectoryPoint(time_from_start=Duration(sec=1))
    assert not is_stop_message(JointTrajectory(points=[later, JointTrajectoryPoint()]), PERIOD)
    assert not is_stop_message(JointTrajectory(), PERIOD)


def test_a_first_point_that_rounds_to_zero_ticks_is_a_stop_for_every_reader(r1lite_config):
    """One rule: what the filler's plan reader turns into a 0-tick first waypoint, every node treats as a stop."""
    for ns, stop in ((1_000_000, True), (33_000_000, True), (34_000_000, False), (66_666_667, False)):
        msg = JointTrajectory(points=[JointTrajectoryPoint(time_from_start=Duration(nanosec=ns))])
        assert is_stop_message(msg, PERIOD) is stop, ns
        msg = plan_to_message(Plan((Waypoint(np.zeros(14), 3),), STAMP), r1lite_config)
        msg.points[0].time_from_start = Duration(nanosec=ns)
        assert message_to_plan(msg, r1lite_config, 32).is_stop is stop, ns


def _edit(msg, fn):
    fn(msg)
    return msg


@pytest.mark.parametrize("change, match", [
    (lambda m: setattr(m.points[1], "positions", [float("nan")] * 14), "non-finite"),
    (lambda m: setattr(m.points[0], "positions", [0.0] * 13), r"points \[0\] do not have 14 positions"),
    (lambda m: setattr(m, "joint_names", ["a"] * 14), "not the robot's proprio names"),
    (lambda m: setattr(m.points[1], "time_from_start", Duration(sec=0, nanosec=100_000_000)), "must not decrease"),
    (lambda m: setattr(m.points[2], "time_from_start", Duration(sec=5)), r"durations \[63\] exceed 32 ticks"),
    (lambda m: setattr(m, "points", []), "no points"),
])
def test_malformed_plans_are_rejected_with_the_reason(plan, r1lite_config, change, match):
    msg = _edit(plan_to_message(plan, r1lite_config), change)
    with pytest.raises(InvalidInput, match=match):
        message_to_plan(msg, r1lite_config, max_duration=32)


def test_chunk_message(r1lite_config):
    actions = np.arange(3 * 14, dtype=float).reshape(3, 14)
    msg = chunk_message(actions, r1lite_config, STAMP)
    assert list(msg.joint_names) == list(r1lite_config.action.names) and len(msg.points) == 3
    assert duration_to_sec(msg.points[2].time_from_start) == pytest.approx(0.2)
    assert list(msg.points[1].positions) == actions[1].tolist()
