"""The ROS-free two-stage runtime: WaypointPolicy (model I/O with the one transform order) and WaypointRunner
(plans -> one action per tick). The direct sim loop and the planner/filler nodes both execute this code."""

from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.runtime.runner import WaypointRunner

__all__ = ["Plan", "Waypoint", "WaypointRunner"]
