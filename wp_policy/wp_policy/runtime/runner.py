"""WaypointRunner: turns plans into one execution-space action per control tick.

The same state machine runs in the direct sim loop (plans and fills computed synchronously) and inside the filler
node (plans arrive on /wp/waypoints, fills run on a worker thread): :meth:`step` returns an action, or ``None`` when
it has none for this tick (a plan is needed, a fill is still running, or it stopped). Pair i is filled between
waypoint i-1 and waypoint i; the first pair of a fresh plan starts at the measured proprio (every pair does with
``pair_start: measured``). The first d_i actions of each chunk run; a waypoint with d = 0 stops once the pairs
before it ran.

``fill`` may return the actions or a pending result (anything with ``done()`` / ``result()``, e.g. a
``concurrent.futures.Future``); :meth:`step` returns ``None`` while the fill of the pair that must start is pending,
and calling it again for the same tick is harmless, so a lock-step caller can wait and retry.

Which observation fills which pair is fixed by the tick schedule, never by when a result arrives: after_last fills
a pair with the observation of the tick it starts on; lookahead fills a pair with the observation of the first tick
that has it next in the queue (or due within the fill lead) behind a running pair. A caller that loads every
requested plan before its next tick (the direct loop, lock-step simulation) therefore gets the same actions on every
run.

The replan mode is a :class:`wp_policy.runtime.replan.ReplanStrategy` (see that module for after_last and
lookahead). A plan that answers an early request (:meth:`request_plan`, then :meth:`load_plan`) is appended after
the queued pairs on the plan's own clock: its waypoints are due ``d_1 + .. + d_i`` ticks after the observation it
was planned from, so waypoints due before the queue ends are dropped and the first kept one is reached from the
queue's last waypoint in the ticks that remain.

``pairs_per_plan`` runs only the first N pairs of each plan and replans from the observation after them, like
openpi's ``replan_steps`` for action chunks: the planner re-localises the object as the arm closes in instead of
committing to waypoints read off one distant view. A stop (d = 0) among the first N waypoints stops as usual; one
further out is dropped with the rest, and the next plan decides again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from wp_policy.obs_sync import ObsSet
from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.runtime.replan import AfterLast, ReplanStrategy


class PendingFill(Protocol):
    def done(self) -> bool: ...

    def result(self) -> np.ndarray: ...


FillResult = np.ndarray | PendingFill
FillFn = Callable[[ObsSet, np.ndarray, np.ndarray, int], FillResult]  # (obs, start, end, duration) -> [>= d, A]


@dataclass
class _Pair:
    start: np.ndarray | None  # None: start at the measured proprio of the fill observation
    end: Waypoint  # duration 0: the model's stop marker
    fill: FillResult | None = None
    stamp_ns: int = -1  # stamp of the observation it was filled with


@dataclass(frozen=True)
class Chunk:
    """The chunk of the pair that just started: ``actions`` float64 [d, A] execution space."""

    actions: np.ndarray
    end: np.ndarray  # the pair's end waypoint (physical proprio)
    stamp_ns: int  # observation it was filled with


class WaypointRunner:
    def __init__(self, fill: FillFn, strategy: ReplanStrategy = AfterLast()):
        """``strategy``: :meth:`wp_policy.runtime.replan.ReplanConfig.strategy` at the robot's control rate."""
        self._fill, self.strategy = fill, strategy
        self._queue: deque[_Pair] = deque()  # pairs not started yet (filled, pending or unfilled)
        self._actions: deque[np.ndarray] = deque()  # what is left of the running pair
        self._running_end: np.ndarray | None = None
        self._request_remaining: int | None = None  # queued ticks when the early plan was requested
        self.stopped = False
        self.plan_requested = False  # lookahead: a plan was asked for early and has not arrived yet
        self._plan_stamp: int | None = None  # observation the last loaded plan was made from
        self._obs_stamp: int | None = None  # observation of the last step
        self.chunks_filled = 0
        self.chunks_started = 0
        self.last_chunk: Chunk | None = None

    # ---- plan input ------------------------------------------------------------------------------------------
    def load_plan(self, plan: Plan, ticks_after_request: int = 0) -> bool:
        """Queue a new plan (see the module docstring); a stop plan stops at once. Returns False (plan ignored)
        while stopped: a stop ends only by :meth:`reset`, so no late or stray plan can move a stopped robot.

        ``ticks_after_request``: lookahead, how many ticks after the requesting tick the plan's observation was
        taken (0 when the planner used the observation named in the request).
        """
        if self.stopped:
            return False
        if plan.is_stop:
            self.stop()
            return True
        self._plan_stamp = plan.stamp_ns
        answers = self.strategy.appends_answer and self.plan_requested and (bool(self._actions) or bool(self._queue))
        queued = self._request_remaining or 0
        self.plan_requested = False
        self._request_remaining = None
        if answers:
            self._append(plan.waypoints, self._queue_end(), max(0, queued - ticks_after_request))
        else:
            self._clear()
            self._append(plan.waypoints, None, 0)
        return True

    def request_plan(self) -> None:
        """The caller asked for the next plan (lookahead: remembers how much work was queued at that tick)."""
        self.plan_requested = True
        self._request_remaining = self.remaining_ticks

    def stop(self) -> None:
        """Operator or model stop: drop every queued action; the caller holds position."""
        self._clear()
        self.stopped = True

    def reset(self) -> None:
        """Forget everything, a stop included (new episode, resume, stale inputs): the next tick needs a plan."""
        self._clear()
        self.stopped = False

    def _clear(self) -> None:
        self._queue.clear()
        self._actions.clear()
        self._running_end = None
        self.plan_requested = False
        self._request_remaining = None

    def _queue_end(self) -> np.ndarray | None:
        return self._queue[-1].end.proprio if self._queue else self._running_end

    def _append(self, waypoints: tuple[Waypoint, ...], start: np.ndarray | None, skip: int) -> None:
        """Queue pairs from ``start`` through ``waypoints``, dropping those due within ``skip`` ticks and keeping
        at most ``pairs_per_plan`` of the rest."""
        elapsed, prev, kept = 0, start, 0
        limit = self.strategy.pairs_per_plan
        for wp in waypoints:
            if limit and kept == limit:
                return
            if wp.duration == 0:
                self._queue.append(_Pair(prev, wp))
                return
            elapsed += wp.duration
            if elapsed <= skip:
                continue
            duration = min(wp.duration, elapsed - skip)
            self._queue.append(_Pair(None if self.strategy.measured_starts else prev, Waypoint(wp.proprio, duration)))
            prev, kept = wp.proprio, kept + 1

    # ---- state -----------------------------------------------------------------------------------------------
    @property
    def remaining_ticks(self) -> int:
        """Actions queued: the rest of the running pair plus every pair not started yet."""
        return len(self._actions) + sum(p.end.duration for p in self._queue)

    @property
    def needs_plan(self) -> bool:
        return not self._actions and not self._queue and not self.stopped

    @property
    def wants_early_plan(self) -> bool:
        """A pair is running, no stop is queued, no plan was requested yet, this tick's observation is not the one
        the last plan came from (the planner would answer with that plan again; the filler drops such a duplicate),
        and the strategy asks for the next plan now (lookahead: the last pair has started or its lead is left)."""
        if self.stopped or self.plan_requested or not self._actions or self._obs_stamp == self._plan_stamp:
            return False
        if any(p.end.duration == 0 for p in self._queue):
            return False
        return self.strategy.wants_early_plan(not self._queue, self.remaining_ticks)

    @property
    def fill_pending(self) -> bool:
        """The pair that must start next is still being filled (:meth:`step` returns None until it is done)."""
        if self._actions or not self._queue:
            return False
        fill = self._queue[0].fill
        return fill is not None and not isinstance(fill, np.ndarray) and not fill.done()

    # ---- per tick --------------------------------------------------------------------------------------------
    def step(self, obs: ObsSet) -> np.ndarray | None:
        """The action for this tick, or None: a plan is needed, a fill is pending, or the runner stopped."""
        self._obs_stamp = obs.stamp_ns
        if self.stopped or (not self._actions and not self._start_next(obs)):
            return None
        action = self._actions.popleft()
        self._prefill(obs)
        return action

    def _prefill(self, obs: ObsSet) -> None:
        """Fill the queued pairs the strategy wants filled at this tick (after_last: none)."""
        starts_in = len(self._actions)
        for i, pair in enumerate(self._queue):
            if pair.end.duration == 0 or not self.strategy.fills_now(i, starts_in):
                return
            if pair.fill is None:
                self._issue(pair, obs)
            starts_in += pair.end.duration

    def _start_next(self, obs: ObsSet) -> bool:
        """Start the next queued pair; False if there is none, its fill is pending, or it is the stop marker."""
        if not self._queue:
            return False
        pair = self._queue[0]
        if pair.end.duration == 0:
            self._clear()
            self.stopped = True
            return False
        if pair.fill is None:
            self._issue(pair, obs)
        actions = self._collect(pair)
        if actions is None:
            return False
        self._queue.popleft()
        self._actions.extend(actions)
        self._running_end = pair.end.proprio
        self.chunks_started += 1
        self.last_chunk = Chunk(actions, pair.end.proprio, pair.stamp_ns)
        return True

    def _issue(self, pair: _Pair, obs: ObsSet) -> None:
        start = obs.proprio if pair.start is None else pair.start
        pair.fill = self._fill(obs, np.asarray(start, np.float64), pair.end.proprio, pair.end.duration)
        pair.stamp_ns = obs.stamp_ns

    def _collect(self, pair: _Pair) -> np.ndarray | None:
        """The pair's actions ``[d, A]`` once its fill is done (re-raises the fill's error), else None."""
        fill = pair.fill
        if not isinstance(fill, np.ndarray):
            if not fill.done():
                return None
            fill = fill.result()
        actions = np.asarray(fill)
        if actions.ndim != 2 or actions.shape[0] < pair.end.duration:
            raise ValueError(f"fill returned {actions.shape[0] if actions.ndim else 0} actions for a pair of "
                             f"duration {pair.end.duration}")
        pair.fill = actions
        self.chunks_filled += 1
        return actions[: pair.end.duration]
