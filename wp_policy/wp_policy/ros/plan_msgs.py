"""Plans on the wire (docs/ros_graph.md): :class:`Plan` <-> ``trajectory_msgs/JointTrajectory``, and the operator stop.

/wp/waypoints carries waypoints in physical units with the proprio joint names; ``points[i].time_from_start`` is
(d_1 + .. + d_i) x control period and ``header.stamp`` the stamp of the observation the plan was made from.
**Any** trajectory whose first point's ``time_from_start`` rounds to 0 control ticks is a stop, whatever else it
holds (no joint names or positions are needed), so an operator can stop the robot with the smallest possible
message; every node applies this one rule (:func:`wp_policy.runtime.plan.is_stop_time`). /wp/action_chunk uses the
action joint names and one point per control tick.
"""

from __future__ import annotations

import numpy as np
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wp_policy.obs_sync import InvalidInput
from wp_policy.robot_config import RobotConfig
from wp_policy.ros.conversions import duration_to_sec, make_trajectory, ns_to_stamp, stamp_to_ns, trajectory_arrays
from wp_policy.runtime.plan import Plan, is_stop_time


def is_stop_message(msg: JointTrajectory, control_period: float) -> bool:
    """True when the first point is due 0 ticks from now (operator stop or a model-predicted d_1 = 0)."""
    return bool(msg.points) and is_stop_time(duration_to_sec(msg.points[0].time_from_start), control_period)


def stop_message(stamp_ns: int) -> JointTrajectory:
    """The smallest stop: one point at time_from_start 0, no joint names."""
    msg = JointTrajectory(points=[JointTrajectoryPoint()])
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg


def plan_to_message(plan: Plan, robot: RobotConfig) -> JointTrajectory:
    """A plan as the planner publishes it (header.stamp = the plan's observation stamp)."""
    positions = np.stack([w.proprio for w in plan.waypoints]) if plan.waypoints else np.zeros((0, robot.proprio.dim))
    return make_trajectory(robot.proprio.names, positions, plan.times_from_start(robot.control_period), plan.stamp_ns)


def message_to_plan(msg: JointTrajectory, robot: RobotConfig, max_duration: int) -> Plan:
    """Validate a non-stop /wp/waypoints message and read it as a Plan; InvalidInput names what is wrong.

    Joint names may come in any order but must be exactly the robot's proprio names; positions must be finite;
    times must not decrease and no waypoint may be more than ``max_duration`` ticks after the previous one.
    """
    if not msg.points:
        raise InvalidInput("waypoint trajectory has no points")
    names, positions, times = trajectory_arrays(msg)
    wanted = robot.proprio.names
    if sorted(names) != sorted(wanted) or len(set(names)) != len(names):
        raise InvalidInput(f"waypoint joint names {list(names)} are not the robot's proprio names {list(wanted)}")
    positions = positions[:, [names.index(n) for n in wanted]]
    try:
        plan = Plan.from_times(positions, list(times), robot.control_period, stamp_to_ns(msg.header.stamp))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    too_long = [w.duration for w in plan.waypoints if w.duration > max_duration]
    if too_long:
        raise InvalidInput(f"waypoint durations {too_long} exceed {max_duration} ticks, the most one chunk can fill")
    return plan


def recorded_plan(msg: JointTrajectory, robot: RobotConfig) -> Plan | None:
    """What a /wp/waypoints message meant, for records and plots (no duration limit): the plan it carries, a stop
    without waypoints for an operator stop, None for a message the filler rejects (nothing ran from it)."""
    try:
        return message_to_plan(msg, robot, max_duration=2**31)
    except InvalidInput:
        if is_stop_message(msg, robot.control_period):
            return Plan((), stamp_to_ns(msg.header.stamp))
        return None


def chunk_message(actions: np.ndarray, robot: RobotConfig, stamp_ns: int) -> JointTrajectory:
    """One filled chunk ``[d, action_dim]`` (execution space), one point per control tick."""
    times = (np.arange(1, len(actions) + 1) * robot.control_period).tolist()
    return make_trajectory(robot.action.names, actions, times, stamp_ns)
