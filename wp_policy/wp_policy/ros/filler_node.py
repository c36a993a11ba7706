"""Filler node: Action Expert chunks between waypoints, streamed as one checked command per control tick.

Inputs: /wp/waypoints (plans, or the operator stop), /wp/instruction (the AE prompt; a new message starts a new
episode), /wp/obs/* (observation sets) and, with the wall clock, the robot's joint feedback topics (the measured
position a hold keeps; joints read by name). Outputs: the robot config's command topics (one command per tick, every
one through :class:`wp_policy.safety.SafetyFilter` -> :class:`wp_policy.command_map.CommandMapper` -> the topic's
message type, so no path sends an unchecked command), /wp/action_chunk (each chunk as it starts), /wp/replan requests
and /diagnostics. A hold command carries ``hold:<reason>`` in ``header.frame_id`` (empty for a model action; a
Float64MultiArray has no header): robots ignore it, the simulation bridge ends an episode on ``hold:stopped`` exactly
where the direct loop ends it.

The state machine is :class:`wp_policy.runtime.runner.WaypointRunner` (shared with the direct sim loop); AE fills
run on a worker thread. ``replan_mode``, ``pairs_per_plan``, ``plan_lead_s`` and ``fill_lead_s`` are a
:class:`wp_policy.runtime.replan.ReplanConfig`, the settings ``wp-eval`` takes under ``replan:``: ``after_last``
asks for a plan when the last pair has run; ``lookahead`` fills the next pair (and any pair starting within
``fill_lead_s``) while one runs and asks for the next plan once ``plan_lead_s`` of motion is left.

``clock_mode``:
- ``wall``: a timer at the robot's ``control_hz`` emits one command per tick. No action ready (plan or fill still
  computing: counted as starvation once commanding has begun), stopped, or observations / feedback older than
  ``obs_timeout`` / ``feedback_timeout`` -> hold the measured position. Stale inputs also drop the plan; a fresh one
  is requested when they recover.
- ``lockstep`` (simulation or bag replay with use_sim_time): exactly one command per new observation set, stamped
  with the set's stamp, published in ``ros.commands`` order (acknowledge on the last topic). The node waits for the
  plan and fills that set needs (a requested plan is loaded before the next set is served), so every run computes
  the same commands; the measured position is the set's proprio. A plan the empty queue needs is requested from
  the set that finds the queue empty (the observation after the last action), as the direct loop plans.

Stop latch (:mod:`wp_policy.runtime.stop_latch`): a stop (a message on /wp/stop, the /wp/stop service, a
/wp/waypoints trajectory whose first point is due 0 ticks from now, or the model's own d = 0) drops the queue and holds at once (wall: a hold is published immediately;
lockstep: the command for the current set is a hold), and the filler keeps holding, whatever plans arrive, until a
deliberate resume: the ``/wp/resume`` service offered here, or a new /wp/instruction message. The latch state is
published latched on /wp/stop_state (the planner follows it) and on /diagnostics. After a resume only plans made
from later observation sets are executed.

Shutdown (Ctrl-C, SIGTERM, the graph stopping): with the wall clock, a final hold of the measured position goes out
on every command topic before the node falls silent (``final_hold_ticks`` control periods).

    python -m wp_policy.ros.filler_node --ros-args -p robot_config:=r1lite -p checkpoint:=ckpt/ae \\
        -p stats:=ckpt/stats.json -p tokenizer:=ckpt/tokenizer.model -p replan_mode:=lookahead
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wp_policy import batch as B
from wp_policy.command_map import CommandMapper
from wp_policy.obs_sync import BACKWARD_JUMP_S, InvalidInput, ObsSet
from wp_policy.robot_config import FeedbackConfig
from wp_policy.ros import policy_params
from wp_policy.ros.conversions import (command_message, command_msg_class, message_info_identity, ns_to_stamp,
                                       stamp_to_ns)
from wp_policy.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from wp_policy.ros.feedback import FeedbackComposer
from wp_policy.ros.node_main import run_node
from wp_policy.ros.obs_subscriber import ObsSetSubscriber
from wp_policy.ros.plan_msgs import chunk_message, is_stop_message, message_to_plan
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import (ACTION_CHUNK_TOPIC, HOLD_FRAME_PREFIX, INSTRUCTION_TOPIC, REPLAN_TOPIC,
                                  RESUME_SERVICE, STOP_QOS, STOP_SERVICE, STOP_STATE_TOPIC, STOP_TOPIC, TOPIC_QOS,
                                  WAYPOINTS_TOPIC)
from wp_policy.runtime.runner import WaypointRunner
from wp_policy.runtime.stop_latch import StopLatch
from wp_policy.safety import SafetyDecision, SafetyFilter

PARAMS = {
    **policy_params.COMMON,
    **policy_params.REPLAN,
    "clock_mode": ("wall", "wall: a command per control tick from a timer; lockstep: one command per observation "
                           "set (simulation / lock-step bag replay)"),
    "command_qos": ("", "QoS profile of the command topics; empty = the robot config's ('reliable' for lock-step "
                        "replay, where a dropped command would stall the replay)"),
    "obs_timeout": (0.5, "s without an observation set -> hold (SafetyFilter watchdog)"),
    "feedback_timeout": (0.2, "s without joint feedback -> hold (SafetyFilter watchdog)"),
    "replan_retry_s": (2.0, "s (wall clock) before an unanswered /wp/replan is sent again"),
    "num_flow_steps": (policy_params.policy_default("num_flow_steps"), "Euler steps of the AE sampler"),
    "seed": (policy_params.policy_default("seed"), "AE noise seed (combined with each observation stamp)"),
    "final_hold_ticks": (3, "wall clock: control periods of hold commands sent on shutdown, before falling silent"),
}
READ_ONLY = (*policy_params.READ_ONLY, *policy_params.REPLAN, "clock_mode", "command_qos", "num_flow_steps", "seed",
             "obs_timeout", "feedback_timeout", "final_hold_ticks")
STALE = ("stale_obs", "stale_feedback", "other_writer")  # hold, drop the plan, ERROR on /diagnostics
WAITING = ("fill_pending", "waiting_plan")  # no action yet; lockstep waits, wall holds (starvation once engaged)
_JUMP_NS = int(BACKWARD_JUMP_S * 1e9)
MAX_PENDING = 8  # lockstep: sets waiting for their command before the oldest is given a hold
WRITER_CHECK_S = 0.5  # how often the command topics are checked for another writer


@dataclass(frozen=True)
class _Request:
    stamp_ns: int  # set named by the first request (the plan's clock origin for lookahead splicing)
    sent: float  # monotonic time of the last (re)send


class FillerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("filler", **kwargs)
        # first: rclpy's shutdown destroys every node it tracks, also one whose start-up failed below
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ae")
        p = policy_params.declare(self, PARAMS, READ_ONLY)
        self.replan = policy_params.replan_config(p)  # before the model loads: a bad value fails fast
        policy_params.apply_cpu_threads(p["cpu_threads"])
        self.policy = policy_params.load_policy(p, "ae_checkpoint", num_flow_steps=p["num_flow_steps"],
                                                seed=p["seed"])
        self.robot = robot = self.policy.robot
        self.p = p
        self.lockstep = p["clock_mode"] == "lockstep"
        self.instruction = p["instruction"]
        self._instruction_id = "parameter" if p["instruction"] else ""
        self.latch = StopLatch()
        self.mapper = CommandMapper(robot)
        self.safety = SafetyFilter.from_robot(robot, p["obs_timeout"], p["feedback_timeout"])
        self.runner = self._new_runner()
        self._fill_seconds: deque[float] = deque()  # appended by the worker, drained on the executor thread
        self._init_state()
        self.diag = Diagnostics(self, p["diagnostics_period"], self._status)
        policy_params.report_device(self, self.policy, self.diag)
        self.diag.extra.append(lambda: {f"count.safety.{k}": v for k, v in self.safety.counters.items()})
        self.diag.extra.append(lambda: {"count.rejected.obs": self.obs.rejected,
                                        "count.proprio_clipped": self.policy.proprio_clipped})
        self.diag.extra.append(self._latch_values)
        self._create_interfaces()
        self._publish_latch()
        self.get_logger().info(
            f"{robot.robot_type}: {self.replan.mode} filling with {p['checkpoint']} on {self.policy.device} "
            f"({p['num_flow_steps']} flow steps, seed {p['seed']}), "
            f"{'one command per observation set (lock-step)' if self.lockstep else f'{robot.control_hz:g} Hz timer'}"
            f" -> {', '.join(self.mapper.topics)}")
        gc.freeze()  # the loaded model's objects are static: keep them out of the collector (no GC pauses in the
        #              control loop, and no multi-second collection at exit)

    def _new_runner(self) -> WaypointRunner:
        return WaypointRunner(self._fill, self.replan.strategy(self.robot.control_hz))

    def _init_state(self) -> None:
        self._newest_stamp = -1  # newest observation stamp of this timeline
        self._barrier = -1  # plans from sets at or before this stamp are stale (a stop or reset came after)
        self._last_plan_stamp = -1
        self._request: _Request | None = None
        self._pending: deque[ObsSet] = deque()  # lockstep: sets still owed a command, oldest first
        self._obs_time = self._fb_time = -math.inf  # node-clock receive times (watchdog)
        self._feedback = FeedbackComposer(self.robot)
        self._received: dict[int, float] = {}  # set stamp -> receive time, for obs-to-command latency
        self._first_command_at: float | None = None  # receive time of the set a plan for an idle runner came from
        self._engaged = False  # commanding from a plan (starvation counts from here)
        self._chunks_seen = 0
        self._reason = "waiting_obs"
        self._other_writers: dict[str, list[str]] = {}  # command topic -> other nodes publishing on it
        self._problem = ""  # last rejection or fill error, shown in the status until the next OK window

    def _create_interfaces(self) -> None:
        robot, p = self.robot, self.p
        cmd_qos = qos_profile(p["command_qos"] or robot.ros.command_qos)
        self.cmd_pubs = {c.topic: self.create_publisher(command_msg_class(c.msg_type), c.topic, cmd_qos)
                         for c in robot.ros.commands}
        self.chunk_pub = self.create_publisher(JointTrajectory, ACTION_CHUNK_TOPIC,
                                               qos_profile(TOPIC_QOS[ACTION_CHUNK_TOPIC]))
        self.replan_pub = self.create_publisher(Header, REPLAN_TOPIC, qos_profile(TOPIC_QOS[REPLAN_TOPIC]))
        self.obs = ObsSetSubscriber(self, robot, on_set=self._on_set)
        self.create_subscription(JointTrajectory, WAYPOINTS_TOPIC, self._on_waypoints,
                                 qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
        self.create_subscription(String, INSTRUCTION_TOPIC, self._on_instruction,
                                 qos_profile(TOPIC_QOS[INSTRUCTION_TOPIC]))
        self.latch_pub = self.create_publisher(String, STOP_STATE_TOPIC, qos_profile(TOPIC_QOS[STOP_STATE_TOPIC]))
        self.create_service(Trigger, RESUME_SERVICE, self._on_resume)
        for qos in STOP_QOS:
            self.create_subscription(Header, STOP_TOPIC, self._on_stop_topic, qos_profile(qos))
        self.create_service(Trigger, STOP_SERVICE, self._on_stop_service)
        self._wake = self.create_guard_condition(self._advance)
        if not self.lockstep:
            fb_qos = qos_profile(robot.ros.feedback_qos)
            for fb in robot.ros.feedback:
                self.create_subscription(JointState, fb.topic, partial(self._on_feedback, fb), fb_qos)
            self.create_timer(robot.control_period, self._on_tick)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # retries must fire while sim time is paused
        self.create_timer(min(0.25, p["replan_retry_s"] / 4), self._on_retry_timer, clock=steady)
        self.create_timer(WRITER_CHECK_S, self._check_writers, clock=steady)

    # ---- model work (worker thread) --------------------------------------------------------------------------
    def _fill(self, obs: ObsSet, start: np.ndarray, end: np.ndarray, duration: int) -> Future:
        latency = self.get_parameter("emulate_latency_ms").value * 1e-3
        future = self._pool.submit(self._fill_job, obs, self.instruction, start, end, duration, latency)
        if self.lockstep:
            future.add_done_callback(lambda _: self._wake.trigger())
        return future

    def _fill_job(self, obs, instruction, start, end, duration, min_latency_s) -> np.ndarray:
        """Worker thread: one AE call (padded to emulate_latency_ms)."""
        t0 = time.monotonic()
        actions = self.policy.fill(obs, instruction, start, end, duration)
        time.sleep(max(0.0, t0 + min_latency_s - time.monotonic()))
        self._fill_seconds.append(time.monotonic() - t0)
        return actions

    # ---- inputs ----------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_set(self, obs: ObsSet) -> None:
        now = self._now()
        if self._newest_stamp >= 0 and obs.stamp_ns < self._newest_stamp - _JUMP_NS:
            self.diag.count("time_jumps")  # bag restarted / simulation reset: a new episode
            self._flush_pending("time_jump", now)
            self._newest_stamp = self._last_plan_stamp = -1
            self._reset_episode()
        self._newest_stamp = max(self._newest_stamp, obs.stamp_ns)
        self._received[obs.stamp_ns] = obs.received
        while len(self._received) > 64:
            del self._received[next(iter(self._received))]
        self._obs_time = now
        self.safety.observe_obs(now)
        if not self.lockstep:
            return
        self._fb_time = now
        self.safety.observe_feedback(obs.proprio, now)
        self._pending.append(obs)
        if len(self._pending) > MAX_PENDING:  # the graph is stuck (planner down?): give the oldest set a hold
            self.diag.count("lockstep_overruns")
            self._emit(self._decision(None, "overrun", now), self._pending.popleft().stamp_ns)
        self._advance()

    def _flush_pending(self, reason: str, now: float) -> None:
        while self._pending:
            self._emit(self._decision(None, reason, now), self._pending.popleft().stamp_ns)

    def _on_feedback(self, fb: FeedbackConfig, msg: JointState) -> None:
        """Wall clock: compose the measured proprio from the feedback topics; the oldest topic sets its age."""
        try:
            self._feedback.update(fb, msg, self._now())
        except InvalidInput as exc:
            self._reject(fb.topic, exc)
            return
        if self._feedback.complete:
            self._fb_time = self._feedback.oldest
            self.safety.observe_feedback(self._feedback.values, self._fb_time)

    def _on_instruction(self, msg: String, info) -> None:
        """A new instruction message starts a new episode and releases a stop; the same message delivered again
        (a latched sample re-sent to a late-matching subscription) changes nothing."""
        identity = message_info_identity(info)
        if not self.latch.new_instruction(identity):
            self.diag.count("ignored.repeated_instruction")
            return
        self.instruction, self._instruction_id = msg.data, identity
        self.diag.count("instructions")
        if self.latch.release("instruction", identity, msg.data):
            self.get_logger().warning(f"resumed by a new instruction {msg.data!r}")
            self._publish_latch()
        self._reset_episode()
        if self.lockstep:
            self._advance()  # sets from before the instruction get holds

    def _on_resume(self, request, response):
        """/wp/resume: release the stop latch; only plans from observation sets after this moment will move."""
        released = self.latch.release("resume_service", self._instruction_id)
        response.success = True
        if not released:
            response.message = "not stopped: nothing to resume"
            return response
        self.get_logger().warning("resumed by /wp/resume")
        self._publish_latch()
        self.runner.reset()
        self._request = None
        self._barrier = max(self._barrier, self._newest_stamp)
        response.message = "resuming: the filler requests a plan from the next observation" + (
            "" if self.instruction else " once an instruction arrives on /wp/instruction")
        if self.lockstep:
            self._advance()
        return response

    def _on_waypoints(self, msg: JointTrajectory) -> None:
        if is_stop_message(msg, self.robot.control_period):
            self._stop("stop_message", stamp_to_ns(msg.header.stamp))
            return
        try:
            plan = message_to_plan(msg, self.robot, B.HORIZON)
        except InvalidInput as exc:
            self._reject("waypoints", exc)
            return
        if self.latch.engaged:
            self.diag.count("dropped_plans.stopped")  # latched: only /wp/resume or a new instruction moves again
            return
        why = self._unusable(plan.stamp_ns)
        if why:
            self.diag.count(f"dropped_plans.{why}")
            return
        req = self._request
        hz = self.robot.control_hz
        ticks_after = 0 if req is None else max(0, round((plan.stamp_ns - req.stamp_ns) * 1e-9 * hz))
        if self.runner.remaining_ticks == 0 and plan.stamp_ns in self._received:  # starts from scratch
            self._first_command_at = self._received[plan.stamp_ns]
        self.runner.load_plan(plan, ticks_after)
        self._request = None
        self._last_plan_stamp = plan.stamp_ns
        self.diag.count("plans_loaded")
        if self.lockstep:
            self._advance()

    def _unusable(self, stamp_ns: int) -> str:
        if stamp_ns <= self._barrier:
            return "stale"  # made from a set older than the last stop / reset
        if stamp_ns <= self._last_plan_stamp:
            return "duplicate"
        if self._newest_stamp >= 0 and stamp_ns > self._newest_stamp + _JUMP_NS:
            return "other_timeline"
        return ""

    # ---- stop / reset ----------------------------------------------------------------------------------------
    def _on_stop_topic(self, msg: Header) -> None:
        self._stop("stop_topic", stamp_to_ns(msg.stamp))

    def _on_stop_service(self, request, response):
        self._stop("stop_service", 0)
        response.success = True
        response.message = self.latch.state.describe()
        return response

    def _stop(self, source: str, sent_ns: int) -> None:
        """Every stop path ends here: latch, drop the queue, hold at once (idempotent)."""
        self._engage_latch(source)
        self.runner.stop()
        self._request = None
        self._engaged = False
        self._barrier = max(self._barrier, self._newest_stamp)
        self.diag.count("stops")
        self.get_logger().warning("stop: queue dropped, holding position")
        if self.lockstep:
            self._advance()  # the sets still owed a command get holds
        else:
            self._emit(self._decision(None, "stopped", self._now()), self.get_clock().now().nanoseconds)
        delay = (time.time_ns() - sent_ns) * 1e-9
        if sent_ns > 0 and 0 <= delay < 10:  # stamped with the wall clock: report the stop latency
            self.diag.latency("stop_to_hold", delay)
        self.diag.alert()

    def _engage_latch(self, source: str) -> None:
        if self.latch.engage(source, self._instruction_id):
            self.get_logger().warning(f"stop latched ({source}): holding until /wp/resume or a new instruction")
            self._publish_latch()

    def _publish_latch(self) -> None:
        self.latch_pub.publish(String(data=self.latch.state.to_json()))
        self.diag.alert()

    def _latch_values(self) -> dict:
        state = self.latch.state
        return {"stop.stopped": str(state.stopped).lower(), "stop.source": state.source,
                "stop.since": f"{state.since:.3f}", "stop.changes": self.latch.changes}

    def _reset_episode(self) -> None:
        """New instruction or timeline: forget the plan, restart the safety filter's history (not its counters).
        A latched stop survives a timeline jump: only a resume or a new instruction releases it."""
        self.runner.reset()
        if self.latch.engaged:
            self.runner.stop()
        self._request = None
        self._engaged = False
        self._barrier = self._newest_stamp
        old = self.safety
        self.safety = SafetyFilter.from_robot(self.robot, self.p["obs_timeout"], self.p["feedback_timeout"])
        self.safety.counters = old.counters
        if old.measured is not None:
            self.safety.observe_feedback(old.measured, self._fb_time)
        self.safety.observe_obs(self._obs_time)

    # ---- control ---------------------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        """Wall clock: one command per control tick, whatever happens."""
        t0 = time.monotonic()
        obs, now = self.obs.latest, self._now()
        action, reason = self._next_action(obs, now)
        self._request_if_needed(obs, reason)
        self._emit(self._decision(action, reason, now), self.get_clock().now().nanoseconds)
        self.diag.latency("tick", time.monotonic() - t0)

    def _advance(self) -> None:
        """Lockstep: serve pending sets in order, each once its plan and fill are ready (re-called when they are)."""
        self._drain_fill_times()
        while self._pending:
            obs = self._pending[0]
            if self._request is not None and not self.runner.stopped and obs.stamp_ns > self._barrier:
                return  # a requested plan is loaded before this set is served
            now = self._now()
            action, reason = self._next_action(obs, now)
            if reason in WAITING:
                self._request_if_needed(obs, reason)
                return
            self._emit(self._decision(action, reason, now), obs.stamp_ns)
            self._pending.popleft()
            # only lookahead's early plan comes from this set; a plan the empty queue needs is requested from the
            # next set (the observation after the last action), as the direct loop plans (sim/rollout.py)
            self._request_if_needed(obs, reason, early_only=True)

    def _next_action(self, obs: ObsSet | None, now: float) -> tuple[np.ndarray | None, str]:
        """The runner's action for this tick, or (None, why not)."""
        stale = self._stale(now)
        if stale:
            if not self.runner.stopped and (self._engaged or not self.runner.needs_plan):
                self.get_logger().warning(f"{stale}: dropping the plan and holding", throttle_duration_sec=1.0)
                self.runner.reset()
                self._request = None
                self._engaged = False
            return None, stale
        if self.runner.stopped:  # before the barrier check: a model stop answers the very set it was planned from
            self._engage_latch("model_stop")  # with "stopped", where the direct loop's episode ends too
            return None, "stopped"
        if obs is None or obs.stamp_ns <= self._barrier:
            return None, "waiting_obs"
        try:
            action = self.runner.step(obs)
        except Exception as exc:  # a failed fill: report, drop the plan, hold; a new plan is requested
            self._problem = f"fill failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._problem)
            self.diag.count("fill_errors")
            self.diag.alert()
            self.runner.reset()
            return None, "fill_error"
        self._publish_new_chunk()
        if action is not None:
            return action, ""
        if self.runner.fill_pending:
            return None, "fill_pending"
        if self.runner.stopped:  # the model's stop marker was reached
            self._engage_latch("model_stop")
            return None, "stopped"
        return None, "waiting_plan"

    def _check_writers(self) -> None:
        """One writer per command topic: another node publishing there (a second graph in this ROS domain, a
        teleoperation tool) would interleave its commands with ours, so the filler holds and reports it."""
        me = (self.get_name(), self.get_namespace())
        found = {}
        for topic in self.mapper.topics:
            others = [f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in self.get_publishers_info_by_topic(topic)
                      if (i.node_name, i.node_namespace) != me]
            if others:
                found[topic] = others
        if found and found != self._other_writers:
            self.get_logger().error(f"another writer on the command topics {found}: holding until it is gone "
                                    "(isolate graphs with ROS_DOMAIN_ID)")
            self.diag.count("other_writer_detected")
            self.diag.alert()
        self._other_writers = found

    def _stale(self, now: float) -> str:
        if self._other_writers:
            return "other_writer"
        if now - self._obs_time > self.p["obs_timeout"]:
            return "stale_obs"
        if now - self._fb_time > self.p["feedback_timeout"]:
            return "stale_feedback"
        return ""

    def _decision(self, action: np.ndarray | None, reason: str, now: float) -> SafetyDecision | None:
        """The checked command: the action through the SafetyFilter, or its hold (counted by reason)."""
        self._reason = reason
        if action is not None:
            self._engaged = True
            return self.safety.check(action, now)
        self.diag.count(f"hold.{reason}")
        if self._engaged and reason in WAITING:
            self.diag.count("starved")
        if reason == "stopped" or reason in STALE:
            self._engaged = False
        return self.safety.hold(reason)

    def _emit(self, decision: SafetyDecision | None, stamp_ns: int) -> None:
        if decision is None:
            self.diag.count("no_reference")  # no measured position yet: nothing safe to send
            return
        frame_id = f"{HOLD_FRAME_PREFIX}{decision.reason}" if decision.hold else ""
        for payload in self.mapper.split(decision.action):
            self.cmd_pubs[payload.topic].publish(command_message(payload, stamp_ns, frame_id))
        self.diag.count("commands")
        self.diag.event("commands")
        if not decision.hold and self._first_command_at is not None:
            self.diag.latency("obs_to_first_command", self._now() - self._first_command_at)
            self._first_command_at = None

    def _publish_new_chunk(self) -> None:
        if self.runner.chunks_started != self._chunks_seen:
            self._chunks_seen = self.runner.chunks_started
            chunk = self.runner.last_chunk
            self.chunk_pub.publish(chunk_message(chunk.actions, self.robot, chunk.stamp_ns))
            self.diag.count("chunks")
        self._drain_fill_times()

    def _drain_fill_times(self) -> None:
        while self._fill_seconds:
            self.diag.latency("fill", self._fill_seconds.popleft())

    # ---- plan requests ---------------------------------------------------------------------------------------
    def _request_if_needed(self, obs: ObsSet | None, reason: str, early_only: bool = False) -> None:
        if obs is None or reason in STALE or self.runner.stopped or obs.stamp_ns <= self._barrier:
            return
        wanted = self.runner.wants_early_plan or (self.runner.needs_plan and not early_only)
        if self._request is None and wanted:
            self.runner.request_plan()
            self._request = _Request(obs.stamp_ns, time.monotonic())
            self._send_request(obs.stamp_ns)

    def _on_retry_timer(self) -> None:
        req = self._request
        if req is None or time.monotonic() - req.sent < self.p["replan_retry_s"]:
            return
        # lockstep names the same set again (a plan from any other set would change the run); the wall clock
        # names the newest set, since the planner plans from the newest anyway
        latest = None if self.lockstep else self.obs.latest
        self._send_request(req.stamp_ns if latest is None else latest.stamp_ns)
        self._request = replace(req, sent=time.monotonic())
        self.diag.count("replan_retries")

    def _send_request(self, stamp_ns: int) -> None:
        msg = Header(stamp=ns_to_stamp(stamp_ns))
        self.replan_pub.publish(msg)
        self.diag.count("replan_requests")

    # ---- health ----------------------------------------------------------------------------------------------
    def _reject(self, source: str, exc: Exception) -> None:
        self._problem = f"rejected {source}: {exc}"
        self.diag.count(f"rejected.{source}")
        self.get_logger().warning(self._problem, throttle_duration_sec=1.0)
        self.diag.alert()

    def _status(self) -> tuple[bytes, str]:
        problem, self._problem = self._problem, ""
        if self._reason == "other_writer":
            return ERROR, f"holding: other writers on the command topics {self._other_writers}"
        if self._reason in STALE:  # with the rejection that explains it, e.g. a joint missing from the feedback
            return ERROR, f"holding: {self._reason}" + (f" ({problem})" if problem else "")
        if problem:
            return WARN, problem
        if self.latch.engaged:
            return WARN, self.latch.state.describe()
        if self._reason:
            return WARN, f"holding: {self._reason}"
        return OK, "commanding"

    def before_shutdown(self) -> None:
        """Wall clock: end with explicit holds of the measured position on every command topic, never in silence
        (a controller left without commands does whatever its own timeout does)."""
        if self.lockstep:
            return  # a lock-step simulator or replay only advances on commands for its own step
        for _ in range(self.p["final_hold_ticks"]):
            self._emit(self.safety.hold("shutdown"), self.get_clock().now().nanoseconds)
            time.sleep(self.robot.control_period)
        self.get_logger().info(f"sent {self.p['final_hold_ticks']} final hold(s) on {', '.join(self.mapper.topics)}")

    def destroy_node(self):
        pool = getattr(self, "_pool", None)  # absent when Node.__init__ failed (e.g. use_sim_time:=yes)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        return super().destroy_node()


def main(args=None):
    run_node(FillerNode, args, name="filler")


if __name__ == "__main__":
    main()
