"""The ROS-free two-stage runtime: WaypointPolicy (model I/O with the one transform order), WaypointRunner
(plans -> one action per tick), ReplanConfig (when to plan and fill), FillerCore (the filler node's state machine) and
Timeline (the observation time base of the planner and the filler). The direct sim loop and the planner/filler nodes
both execute this code.

The names below load on first use, so the launchers can read :mod:`wp_policy.runtime.replan` (the graph's replan
arguments) without importing numpy or torch.
"""

from importlib import import_module

_EXPORTS = {"Plan": "plan", "Waypoint": "plan", "ReplanConfig": "replan", "WaypointRunner": "runner",
            "FillerCore": "filler_core", "Timeline": "timeline"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
