"""WaypointRunner: turns plans into one execution-space action per control tick.

The same state machine runs in the direct sim loop (plans computed synchronously) and inside the filler node
(plans arrive on /wp/waypoints): :meth:`step` returns an action, or ``None`` when it needs a plan first. Pair i is
filled between waypoint i-1 and waypoint i; the first pair of a plan starts at the measured proprio. The first d_i
actions of each chunk run; d_i = 0 stops.

Replan modes:
- ``after_last`` (the seed): ask for a new plan when the last pair of the current plan has been executed.
- ``lookahead``: fill the next pair as soon as the current one starts, and ask for the next plan when the last pair
  of a plan starts, so inference overlaps execution and the command stream does not starve.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from wp_policy.obs_sync import ObsSet
from wp_policy.runtime.plan import Plan, Waypoint

ReplanMode = Literal["after_last", "lookahead"]
FillFn = Callable[[ObsSet, np.ndarray, np.ndarray, int], np.ndarray]  # (obs, start, end, duration) -> [d, A]


@dataclass
class _Pair:
    start: np.ndarray | None  # None: start at the measured proprio when the pair is filled
    end: Waypoint


class WaypointRunner:
    def __init__(self, fill: FillFn, replan_mode: ReplanMode = "after_last"):
        if replan_mode not in ("after_last", "lookahead"):
            raise ValueError(f"replan_mode must be 'after_last' or 'lookahead', got {replan_mode!r}")
        self._fill, self.mode = fill, replan_mode
        self._pairs: deque[_Pair] = deque()
        self._actions: deque[np.ndarray] = deque()
        self._prefilled: tuple[np.ndarray, np.ndarray] | None = None  # lookahead: (actions, end) of the next pair
        self._running_end: np.ndarray | None = None  # end waypoint of the pair being executed
        self._stop_pending = False  # a d = 0 waypoint was reached: stop once the queued actions ran
        self.stopped = False
        self.plan_requested = False  # lookahead: a plan was asked for early and has not arrived yet
        self.chunks_filled = 0

    # ---- plan input ------------------------------------------------------------------------------------------
    def load_plan(self, plan: Plan) -> None:
        """Queue a new plan; a stop plan stops at once.

        after_last replaces whatever is left of the old plan. lookahead lets the pair being executed finish and
        starts the new plan at that pair's end waypoint (the plan was requested early, while it ran).
        """
        self.plan_requested = False
        if plan.is_stop:
            self.stop()
            return
        self.stopped = self._stop_pending = False
        keep_running = self.mode == "lookahead" and bool(self._actions)
        if not keep_running:
            self._actions.clear()
        self._prefilled = None
        self._pairs.clear()
        prev = self._running_end if keep_running else None
        for wp in plan.waypoints:
            self._pairs.append(_Pair(prev, wp))
            if wp.duration == 0:
                break
            prev = wp.proprio

    def stop(self) -> None:
        """Operator or model stop: drop every queued action; the caller holds position."""
        self._pairs.clear()
        self._actions.clear()
        self._prefilled = None
        self._stop_pending = False
        self.stopped = True
        self.plan_requested = False

    # ---- per tick --------------------------------------------------------------------------------------------
    @property
    def needs_plan(self) -> bool:
        idle = not self._actions and not self._pairs and self._prefilled is None
        return idle and not self.stopped and not self._stop_pending

    @property
    def wants_early_plan(self) -> bool:
        """lookahead: the last pair is running, nothing is queued after it and no plan was requested yet."""
        return (
            self.mode == "lookahead" and not self.stopped and not self._stop_pending and not self.plan_requested
            and bool(self._actions) and not self._pairs and self._prefilled is None
        )

    def step(self, obs: ObsSet) -> np.ndarray | None:
        """The action for this tick, or None: a plan is needed, or the runner stopped (the caller holds)."""
        if self.stopped:
            return None
        if not self._actions:
            if self._prefilled is not None:
                self._run(self._prefilled)
                self._prefilled = None
            elif self._pairs:
                filled = self._fill_pair(obs, self._pairs.popleft())
                if filled is not None:
                    self._run(filled)
            if not self._actions:
                self.stopped, self._stop_pending = self._stop_pending, False
                return None
        action = self._actions.popleft()
        if self.mode == "lookahead" and self._prefilled is None and self._pairs:
            self._prefilled = self._fill_pair(obs, self._pairs.popleft())
        return action

    def _run(self, filled: tuple[np.ndarray, np.ndarray]) -> None:
        actions, self._running_end = filled
        self._actions.extend(actions)

    def _fill_pair(self, obs: ObsSet, pair: _Pair) -> tuple[np.ndarray, np.ndarray] | None:
        """Fill one pair; a d = 0 end waypoint is the model's stop: nothing after it is queued."""
        if pair.end.duration == 0:
            self._pairs.clear()
            self._stop_pending = True
            return None
        start = obs.proprio if pair.start is None else pair.start
        actions = np.asarray(self._fill(obs, np.asarray(start, np.float64), pair.end.proprio, pair.end.duration))
        if actions.shape[0] < pair.end.duration:
            raise ValueError(f"fill returned {actions.shape[0]} actions for a pair of duration {pair.end.duration}")
        self.chunks_filled += 1
        return actions[: pair.end.duration], pair.end.proprio
