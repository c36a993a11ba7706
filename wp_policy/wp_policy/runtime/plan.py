"""Plans in physical units: what the planner publishes on /wp/waypoints and what the filler executes.

Waypoints always travel in physical units (as on the wire), so the direct sim loop and the ROS graph normalise the
same float64 values and execute identical actions. ``duration`` counts control ticks; 0 means stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def times_to_ticks(times, control_period: float) -> np.ndarray:
    """``time_from_start`` values (s) -> whole control ticks (nearest; the one rounding every node uses)."""
    return np.rint(np.asarray(times, dtype=np.float64) / control_period).astype(np.int64)


def is_stop_time(first_time_from_start: float, control_period: float) -> bool:
    """THE stop rule, shared by every node and the direct loop: a plan whose first waypoint is due 0 ticks after
    its observation (``time_from_start`` rounds to 0 ticks, e.g. 0 s or 1 ms at 15 Hz) stops the robot."""
    return int(times_to_ticks([first_time_from_start], control_period)[0]) == 0


@dataclass(frozen=True)
class Waypoint:
    proprio: np.ndarray  # float64 [proprio_dim], physical units
    duration: int  # control ticks from the previous waypoint; 0 = stop

    def __post_init__(self):
        if self.duration < 0:
            raise ValueError(f"waypoint duration must be >= 0, got {self.duration}")
        if not np.all(np.isfinite(self.proprio)):
            raise ValueError(f"waypoint proprio contains NaN or inf: {np.asarray(self.proprio).tolist()}")


@dataclass(frozen=True)
class Plan:
    waypoints: tuple[Waypoint, ...]
    stamp_ns: int  # stamp of the observation the plan was made from

    @property
    def is_stop(self) -> bool:
        """An operator stop or a model-predicted stop as the very first waypoint (docs/ros_graph.md, Operator stop)."""
        return not self.waypoints or self.waypoints[0].duration == 0

    def times_from_start(self, control_period: float) -> list[float]:
        """``time_from_start`` of each point: (d_1 + .. + d_i) x control period."""
        return (np.cumsum([w.duration for w in self.waypoints]) * control_period).tolist()

    @classmethod
    def from_times(cls, proprio: np.ndarray, times: list[float], control_period: float, stamp_ns: int) -> "Plan":
        """Inverse of :meth:`times_from_start` (durations rounded to whole ticks; must not decrease)."""
        durations = np.diff(np.concatenate([[0], times_to_ticks(times, control_period)]))
        if np.any(durations < 0):
            raise ValueError(f"time_from_start must not decrease, got {[float(t) for t in times]}")
        proprio = np.asarray(proprio, dtype=np.float64)
        return cls(tuple(Waypoint(p, int(d)) for p, d in zip(proprio, durations)), stamp_ns)
