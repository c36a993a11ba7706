"""FillerCore: the filler node's state machine (observation barrier, timeline, plan requests and their retries, the
lock-step queue, stops), without ROS, so the tests drive it directly and the node only converts messages.

The node hands every input to one method (:meth:`FillerCore.on_obs`, :meth:`~FillerCore.on_plan`,
:meth:`~FillerCore.on_stop`, :meth:`~FillerCore.tick`, ...) and publishes, in order, the :data:`Output` list it
returns: checked commands (a :class:`wp_policy.safety.SafetyDecision` and the stamp to send it with), plan requests,
chunks as they start and stop-latch changes. Counters, rates and latencies go to a ``report`` with the
:class:`wp_policy.ros.diagnostics.Diagnostics` methods, log lines to a ``logger`` with rclpy's logger methods (each
call site keeps its own throttle). Times: ``now_ns`` is the node clock (sim time under ``use_sim_time``); plan
request retries use ``monotonic``, which keeps running while a simulation is paused.

Every tick's decision is an action from :class:`wp_policy.runtime.runner.WaypointRunner` passed through the
:class:`wp_policy.safety.SafetyFilter`, or a hold whose :class:`wp_policy.safety.HoldReason` says why: stale inputs
or another writer on the command topics (drop the plan, ERROR), the stop latch, no observation since the last cut of
the :class:`wp_policy.runtime.timeline.Timeline`, a plan or fill still on its way, a failed fill. See
:mod:`wp_policy.ros.filler_node` for the two clock modes and the stop semantics.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import RobotConfig
from wp_policy.runtime.plan import Plan
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.runtime.runner import Chunk, FillFn, WaypointRunner
from wp_policy.runtime.stop_latch import LatchState, StopLatch
from wp_policy.runtime.timeline import Timeline
from wp_policy.safety import HoldReason, SafetyDecision, SafetyFilter

STALE = (HoldReason.STALE_OBS, HoldReason.STALE_FEEDBACK, HoldReason.OTHER_WRITER)  # drop the plan, ERROR status
WAITING = (HoldReason.FILL_PENDING, HoldReason.WAITING_PLAN)  # no action yet: lockstep waits, wall holds
MAX_PENDING = 8  # lockstep: sets waiting for their command before the oldest is given a hold
RECEIVED_KEPT = 64  # receive times kept for the observation -> first command latency


@dataclass(frozen=True)
class Command:
    """Publish ``decision.action`` on the command topics, stamped ``stamp_ns``."""

    decision: SafetyDecision
    stamp_ns: int


@dataclass(frozen=True)
class PlanRequest:
    """Ask the planner for a plan from the observation set stamped ``stamp_ns``."""

    stamp_ns: int


@dataclass(frozen=True)
class ChunkStarted:
    chunk: Chunk


@dataclass(frozen=True)
class LatchChanged:
    state: LatchState


Output = Command | PlanRequest | ChunkStarted | LatchChanged


class Report(Protocol):
    """Where counters and latencies go (:class:`wp_policy.ros.diagnostics.Diagnostics` is one)."""

    def count(self, key: str, n: int = 1) -> None: ...

    def event(self, key: str) -> None: ...

    def latency(self, key: str, seconds: float) -> None: ...

    def alert(self) -> None: ...


class Logger(Protocol):
    """rclpy's logger methods (keyword arguments: its filters, e.g. ``throttle_duration_sec``)."""

    def info(self, message: str, **kwargs) -> object: ...

    def warning(self, message: str, **kwargs) -> object: ...

    def error(self, message: str, **kwargs) -> object: ...


@dataclass(frozen=True)
class _Request:
    stamp_ns: int  # set named by the first request (the plan's clock origin for lookahead splicing)
    sent: float  # monotonic time of the last (re)send


class FillerCore:
    """One robot's filler state machine (see the module docstring).

    ``fill(obs, start, end, duration)`` returns the chunk or a future (the node's worker thread); ``lockstep``
    serves one command per observation set instead of one per :meth:`tick`.
    """

    def __init__(self, robot: RobotConfig, fill: FillFn, replan: ReplanConfig, report: Report, logger: Logger, *,
                 lockstep: bool, obs_timeout: float, feedback_timeout: float, replan_retry_s: float,
                 instruction: str = "", monotonic: Callable[[], float] = time.monotonic):
        self.robot, self.report, self.log = robot, report, logger
        self.lockstep = lockstep
        self.obs_timeout, self.feedback_timeout, self.replan_retry_s = obs_timeout, feedback_timeout, replan_retry_s
        self._monotonic = monotonic
        self.instruction = instruction
        self.instruction_id = "parameter" if instruction else ""
        self.latch = StopLatch()
        self.safety = SafetyFilter.from_robot(robot, obs_timeout, feedback_timeout)
        self.runner = WaypointRunner(fill, replan.strategy(robot.control_hz))
        self.timeline = Timeline()
        self.latest: ObsSet | None = None  # newest observation set (the wall clock's tick acts on it)
        self.reason: HoldReason | None = HoldReason.WAITING_OBS  # the last tick's hold reason (None: commanding)
        self.other_writers: dict[str, list[str]] = {}  # command topic -> other nodes publishing on it
        self.problem = ""  # last rejection or fill error, shown in the status until the next OK window
        self._last_plan_stamp = -1
        self._request: _Request | None = None
        self._pending: deque[ObsSet] = deque()  # lockstep: sets still owed a command, oldest first
        self._obs_time = self._fb_time = -math.inf  # node-clock receive times (watchdog)
        self._received: dict[int, float] = {}  # set stamp -> receive time, for obs-to-command latency
        self._first_command_at: float | None = None  # receive time of the set a plan for an idle runner came from
        self._engaged = False  # commanding from a plan (starvation counts from here)
        self._chunks_seen = 0
        self._out: list[Output] = []

    # ---- inputs ----------------------------------------------------------------------------------------------
    def on_obs(self, obs: ObsSet, now_ns: int) -> list[Output]:
        """An observation set; a stamp far back starts a new timeline (a new episode). Lockstep: it is owed one
        command, and its proprio is the measured position."""
        now = now_ns * 1e-9
        self.latest = obs
        if self.timeline.observe(obs.stamp_ns):
            self.report.count("time_jumps")  # bag restarted / simulation reset: a new episode
            self._flush_pending(HoldReason.TIME_JUMP, now)
            self._last_plan_stamp = -1
            self._reset_episode()
        self._received[obs.stamp_ns] = obs.received
        while len(self._received) > RECEIVED_KEPT:
            del self._received[next(iter(self._received))]
        self._obs_time = now
        self.safety.observe_obs(now)
        if not self.lockstep:
            return self._take()
        self._fb_time = now
        self.safety.observe_feedback(obs.proprio, now)
        self._pending.append(obs)
        if len(self._pending) > MAX_PENDING:  # the graph is stuck (planner down?): give the oldest set a hold
            self.report.count("lockstep_overruns")
            self._emit(self._decision(None, HoldReason.OVERRUN, now), self._pending.popleft().stamp_ns, now)
        self._advance(now)
        return self._take()

    def on_feedback(self, proprio: np.ndarray, measured_at: float) -> None:
        """Wall clock: the measured proprio composed from the feedback topics, as old as its oldest topic."""
        self._fb_time = measured_at
        self.safety.observe_feedback(proprio, measured_at)

    def on_instruction(self, text: str, identity: str, now_ns: int) -> list[Output]:
        """A new instruction message starts a new episode and releases a stop; the same message delivered again
        (a latched sample re-sent to a late-matching subscription) changes nothing."""
        if not self.latch.new_instruction(identity):
            self.report.count("ignored.repeated_instruction")
            return []
        self.instruction, self.instruction_id = text, identity
        self.report.count("instructions")
        if self.latch.release("instruction", identity, text):
            self.log.warning(f"resumed by a new instruction {text!r}")
            self._latch_changed()
        self.timeline.cut()
        self._reset_episode()
        if self.lockstep:
            self._advance(now_ns * 1e-9)  # sets from before the instruction get holds
        return self._take()

    def on_resume(self, now_ns: int) -> list[Output] | None:
        """Release the stop latch; only plans from later observation sets are executed. None: not stopped."""
        if not self.latch.release("resume_service", self.instruction_id):
            return None
        self.log.warning("resumed by /wp/resume")
        self._latch_changed()
        self.runner.reset()
        self._request = None
        self.timeline.cut()
        if self.lockstep:
            self._advance(now_ns * 1e-9)
        return self._take()

    def on_plan(self, plan: Plan, now_ns: int) -> list[Output]:
        """A validated plan: loaded unless the latch is engaged or it is stale, a duplicate or from another
        timeline (each counted under ``dropped_plans.``)."""
        if self.latch.engaged:
            self.report.count("dropped_plans.stopped")  # latched: only /wp/resume or a new instruction moves again
            return []
        why = self._unusable(plan.stamp_ns)
        if why:
            self.report.count(f"dropped_plans.{why}")
            return []
        req = self._request
        hz = self.robot.control_hz
        ticks_after = 0 if req is None else max(0, round((plan.stamp_ns - req.stamp_ns) * 1e-9 * hz))
        if self.runner.remaining_ticks == 0 and plan.stamp_ns in self._received:  # starts from scratch
            self._first_command_at = self._received[plan.stamp_ns]
        self.runner.load_plan(plan, ticks_after)
        self._request = None
        self._last_plan_stamp = plan.stamp_ns
        self.report.count("plans_loaded")
        if self.lockstep:
            self._advance(now_ns * 1e-9)
        return self._take()

    def _unusable(self, stamp_ns: int) -> str:
        if self.timeline.before_cut(stamp_ns):
            return "stale"  # made from a set older than the last stop / reset
        if stamp_ns <= self._last_plan_stamp:
            return "duplicate"
        if self.timeline.is_ahead(stamp_ns):
            return "other_timeline"
        return ""

    def on_stop(self, source: str, now_ns: int) -> list[Output]:
        """Every stop path ends here: latch, drop the queue, hold at once (idempotent). ``source``: a
        :data:`wp_policy.runtime.stop_latch.SOURCES` name."""
        now = now_ns * 1e-9
        self._engage_latch(source)
        self.runner.stop()
        self._request = None
        self._engaged = False
        self.timeline.cut()
        self.report.count("stops")
        self.log.warning("stop: queue dropped, holding position")
        if self.lockstep:
            self._advance(now)  # the sets still owed a command get holds
        else:
            self._emit(self._decision(None, HoldReason.STOPPED, now), now_ns, now)
        return self._take()

    def set_other_writers(self, found: dict[str, list[str]]) -> None:
        """Other nodes publishing on the command topics (topic -> names): the filler holds while there are any."""
        if found and found != self.other_writers:
            self.log.error(f"another writer on the command topics {found}: holding until it is gone "
                           "(isolate graphs with ROS_DOMAIN_ID)")
            self.report.count("other_writer_detected")
            self.report.alert()
        self.other_writers = found

    def take_problem(self) -> str:
        """The problem to show in this status window (cleared: the next window is OK unless it recurs)."""
        problem, self.problem = self.problem, ""
        return problem

    # ---- control ---------------------------------------------------------------------------------------------
    def tick(self, now_ns: int) -> list[Output]:
        """Wall clock: the command of this control tick (an action or a hold), and a plan request if one is due."""
        now = now_ns * 1e-9
        obs = self.latest
        action, reason = self._next_action(obs, now)
        self._request_if_needed(obs, reason)
        self._emit(self._decision(action, reason, now), now_ns, now)
        return self._take()

    def advance(self, now_ns: int) -> list[Output]:
        """Lockstep: serve what became ready (a fill finished on the worker thread)."""
        self._advance(now_ns * 1e-9)
        return self._take()

    def retry(self) -> list[Output]:
        """Re-send a plan request unanswered for ``replan_retry_s`` (monotonic): lockstep names the same set again
        (a plan from any other set would change the run); the wall clock names the newest set, since the planner
        plans from the newest anyway."""
        req = self._request
        if req is None or self._monotonic() - req.sent < self.replan_retry_s:
            return []
        latest = None if self.lockstep else self.latest
        self._send_request(req.stamp_ns if latest is None else latest.stamp_ns)
        self._request = replace(req, sent=self._monotonic())
        self.report.count("replan_retries")
        return self._take()

    def shutdown_hold(self, now_ns: int) -> list[Output]:
        """One final hold of the measured position, sent on shutdown (never silence)."""
        self._emit(self.safety.hold(HoldReason.SHUTDOWN), now_ns, now_ns * 1e-9)
        return self._take()

    def _advance(self, now: float) -> None:
        """Lockstep: serve pending sets in order, each once its plan and fill are ready (re-called when they are)."""
        while self._pending:
            obs = self._pending[0]
            if self._request is not None and not self.runner.stopped and not self.timeline.before_cut(obs.stamp_ns):
                return  # a requested plan is loaded before this set is served
            action, reason = self._next_action(obs, now)
            if reason in WAITING:
                self._request_if_needed(obs, reason)
                return
            self._emit(self._decision(action, reason, now), obs.stamp_ns, now)
            self._pending.popleft()
            # only lookahead's early plan comes from this set; a plan the empty queue needs is requested from the
            # next set (the observation after the last action), as the direct loop plans (sim/rollout.py)
            self._request_if_needed(obs, reason, early_only=True)

    def _next_action(self, obs: ObsSet | None, now: float) -> tuple[np.ndarray | None, HoldReason | None]:
        """The runner's action for this tick, or (None, why not)."""
        stale = self._stale(now)
        if stale:
            if not self.runner.stopped and (self._engaged or not self.runner.needs_plan):
                self.log.warning(f"{stale}: dropping the plan and holding", throttle_duration_sec=1.0)
                self.runner.reset()
                self._request = None
                self._engaged = False
            return None, stale
        if self.runner.stopped:  # before the barrier check: a model stop answers the very set it was planned from
            self._engage_latch("model_stop")  # with "stopped", where the direct loop's episode ends too
            return None, HoldReason.STOPPED
        if obs is None or self.timeline.before_cut(obs.stamp_ns):
            return None, HoldReason.WAITING_OBS
        try:
            action = self.runner.step(obs)
        except Exception as exc:  # a failed fill: report, drop the plan, hold; a new plan is requested
            self.problem = f"fill failed: {type(exc).__name__}: {exc}"
            self.log.error(self.problem)
            self.report.count("fill_errors")
            self.report.alert()
            self.runner.reset()
            return None, HoldReason.FILL_ERROR
        self._note_new_chunk()
        if action is not None:
            return action, None
        if self.runner.fill_pending:
            return None, HoldReason.FILL_PENDING
        if self.runner.stopped:  # the model's stop marker was reached
            self._engage_latch("model_stop")
            return None, HoldReason.STOPPED
        return None, HoldReason.WAITING_PLAN

    def _stale(self, now: float) -> HoldReason | None:
        if self.other_writers:
            return HoldReason.OTHER_WRITER
        if now - self._obs_time > self.obs_timeout:
            return HoldReason.STALE_OBS
        if now - self._fb_time > self.feedback_timeout:
            return HoldReason.STALE_FEEDBACK
        return None

    def _decision(self, action: np.ndarray | None, reason: HoldReason | None, now: float) -> SafetyDecision | None:
        """The checked command: the action through the SafetyFilter, or its hold (counted by reason)."""
        self.reason = reason
        if action is not None:
            self._engaged = True
            return self.safety.check(action, now)
        self.report.count(f"hold.{reason.value}")
        if self._engaged and reason in WAITING:
            self.report.count("starved")
        if reason == HoldReason.STOPPED or reason in STALE:
            self._engaged = False
        return self.safety.hold(reason)

    def _emit(self, decision: SafetyDecision | None, stamp_ns: int, now: float) -> None:
        if decision is None:
            self.report.count("no_reference")  # no measured position yet: nothing safe to send
            return
        self._out.append(Command(decision, stamp_ns))
        self.report.count("commands")
        self.report.event("commands")
        if not decision.hold and self._first_command_at is not None:
            self.report.latency("obs_to_first_command", now - self._first_command_at)
            self._first_command_at = None

    def _flush_pending(self, reason: HoldReason, now: float) -> None:
        while self._pending:
            self._emit(self._decision(None, reason, now), self._pending.popleft().stamp_ns, now)

    def _note_new_chunk(self) -> None:
        if self.runner.chunks_started != self._chunks_seen:
            self._chunks_seen = self.runner.chunks_started
            self._out.append(ChunkStarted(self.runner.last_chunk))
            self.report.count("chunks")

    # ---- stop / reset ----------------------------------------------------------------------------------------
    def _engage_latch(self, source: str) -> None:
        if self.latch.engage(source, self.instruction_id):
            self.log.warning(f"stop latched ({source}): holding until /wp/resume or a new instruction")
            self._latch_changed()

    def _latch_changed(self) -> None:
        self._out.append(LatchChanged(self.latch.state))

    def _reset_episode(self) -> None:
        """New instruction or timeline: forget the plan, restart the safety filter's history (not its counters).
        A latched stop survives a timeline jump: only a resume or a new instruction releases it."""
        self.runner.reset()
        if self.latch.engaged:
            self.runner.stop()
        self._request = None
        self._engaged = False
        self.safety.reset_history()

    # ---- plan requests ---------------------------------------------------------------------------------------
    def _request_if_needed(self, obs: ObsSet | None, reason: HoldReason | None, early_only: bool = False) -> None:
        if obs is None or reason in STALE or self.runner.stopped or self.timeline.before_cut(obs.stamp_ns):
            return
        wanted = self.runner.wants_early_plan or (self.runner.needs_plan and not early_only)
        if self._request is None and wanted:
            self.runner.request_plan()
            self._request = _Request(obs.stamp_ns, self._monotonic())
            self._send_request(obs.stamp_ns)

    def _send_request(self, stamp_ns: int) -> None:
        self._out.append(PlanRequest(stamp_ns))
        self.report.count("replan_requests")

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out
