"""Filler node: Action Expert chunks between waypoints, streamed as one checked command per control tick.

Inputs: /wp/waypoints (plans, or the operator stop), /wp/instruction (the AE prompt; a new message starts a new
episode), /wp/obs/* (observation sets) and, with the wall clock, the robot's joint feedback topics (the measured
position a hold keeps; joints read by name). Outputs: the robot config's command topics (one command per tick, every
one through :class:`wp_policy.safety.SafetyFilter` -> :class:`wp_policy.command_map.CommandMapper` -> the topic's
message type, so no path sends an unchecked command), /wp/action_chunk (each chunk as it starts), /wp/replan requests
and /diagnostics. A hold command carries ``hold:<reason>`` in ``header.frame_id`` (empty for a model action; a
Float64MultiArray has no header): robots ignore it, the simulation bridge ends an episode on ``hold:stopped`` exactly
where the direct loop ends it.

The state machine is :class:`wp_policy.runtime.filler_core.FillerCore` (ROS-free; this node converts messages, calls
it and publishes what it returns) around :class:`wp_policy.runtime.runner.WaypointRunner` (shared with the direct sim
loop); AE fills run on a worker thread. ``replan_mode``, ``pairs_per_plan``, ``plan_lead_s``, ``fill_lead_s`` and
``pair_start`` are a :class:`wp_policy.runtime.replan.ReplanConfig`, the settings ``wp-eval`` takes under
``replan:``: ``after_last`` asks for a plan when the last pair has run; ``lookahead`` fills the next pair (and any
pair starting within ``fill_lead_s``) while one runs and asks for the next plan once ``plan_lead_s`` of motion is
left.

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

Stop latch (:mod:`wp_policy.runtime.stop_latch`): a stop (a message on /wp/stop, the /wp/stop service, a /wp/waypoints
trajectory whose first point is due 0 ticks from now, or the model's own d = 0) drops the queue and holds at once (wall:
a hold is published immediately; lockstep: the command for the current set is a hold), and the filler keeps holding,
whatever plans arrive, until a deliberate resume: the ``/wp/resume`` service offered here, or a new /wp/instruction
message. The latch state is published latched on /wp/stop_state (the planner follows it) and on /diagnostics. After a
resume only plans made from later observation sets are executed.

Shutdown (Ctrl-C, SIGTERM, the graph stopping): with the wall clock, a final hold of the measured position goes out
on every command topic before the node falls silent (``final_hold_ticks`` control periods).

    python -m wp_policy.ros.filler_node --ros-args -p robot_config:=r1lite -p checkpoint:=ckpt/ae \\
        -p stats:=ckpt/stats.json -p tokenizer:=ckpt/tokenizer.model -p replan_mode:=lookahead
"""

from __future__ import annotations

import gc
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
from wp_policy.obs_sync import InvalidInput, ObsSet
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
from wp_policy.runtime.filler_core import (STALE, ChunkStarted, Command, FillerCore, LatchChanged, Output,
                                           PlanRequest)
from wp_policy.safety import HoldReason

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
    "noise_scale": (policy_params.policy_default("noise_scale"), "AE sampling temperature (std of the starting "
                                                                 "noise; 0: deterministic chunks)"),
    "final_hold_ticks": (3, "wall clock: control periods of hold commands sent on shutdown, before falling silent"),
}
READ_ONLY = (*policy_params.READ_ONLY, *policy_params.REPLAN, "clock_mode", "command_qos", "num_flow_steps", "seed",
             "noise_scale", "obs_timeout", "feedback_timeout", "final_hold_ticks")
WRITER_CHECK_S = 0.5  # how often the command topics are checked for another writer


class FillerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("filler", **kwargs)
        # first: rclpy's shutdown destroys every node it tracks, also one whose start-up failed below
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ae")
        p = policy_params.declare(self, PARAMS, READ_ONLY)
        self.replan = policy_params.replan_config(p)  # before the model loads: a bad value fails fast
        policy_params.apply_cpu_threads(p["cpu_threads"])
        self.policy = policy_params.load_policy(p, "ae_checkpoint", num_flow_steps=p["num_flow_steps"],
                                                seed=p["seed"], noise_scale=p["noise_scale"])
        self.robot = robot = self.policy.robot
        self.p = p
        self.lockstep = p["clock_mode"] == "lockstep"
        self.mapper = CommandMapper(robot)
        self._fill_seconds: deque[float] = deque()  # appended by the worker, drained on the executor thread
        self._feedback = FeedbackComposer(robot)
        self.diag = Diagnostics(self, p["diagnostics_period"], self._status)
        self.core = FillerCore(robot, self._fill, self.replan, self.diag, self.get_logger(), lockstep=self.lockstep,
                               obs_timeout=p["obs_timeout"], feedback_timeout=p["feedback_timeout"],
                               replan_retry_s=p["replan_retry_s"], instruction=p["instruction"])
        policy_params.report_device(self, self.policy, self.diag)
        self.diag.extra.append(lambda: {f"count.safety.{k}": v for k, v in self.core.safety.counters.items()})
        self.diag.extra.append(lambda: {"count.rejected.obs": self.obs.rejected,
                                        "count.proprio_clipped": self.policy.proprio_clipped})
        self.diag.extra.append(self._latch_values)
        self._create_interfaces()
        self._publish_latch()
        self.get_logger().info(
            f"{robot.robot_type}: {self.replan.mode} filling with {p['checkpoint']} on {self.policy.device} "
            f"({p['num_flow_steps']} flow steps, seed {p['seed']}, noise scale {p['noise_scale']:g}), "
            f"{'one command per observation set (lock-step)' if self.lockstep else f'{robot.control_hz:g} Hz timer'}"
            f" -> {', '.join(self.mapper.topics)}")
        gc.freeze()  # the loaded model's objects are static: keep them out of the collector (no GC pauses in the
        #              control loop, and no multi-second collection at exit)

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
        self._wake = self.create_guard_condition(lambda: self._publish(self.core.advance(self._now_ns())))
        if not self.lockstep:
            fb_qos = qos_profile(robot.ros.feedback_qos)
            for fb in robot.ros.feedback:
                self.create_subscription(JointState, fb.topic, partial(self._on_feedback, fb), fb_qos)
            self.create_timer(robot.control_period, self._on_tick)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # retries must fire while sim time is paused
        self.create_timer(min(0.25, p["replan_retry_s"] / 4), lambda: self._publish(self.core.retry()), clock=steady)
        self.create_timer(WRITER_CHECK_S, self._check_writers, clock=steady)

    # ---- model work (worker thread) --------------------------------------------------------------------------
    def _fill(self, obs: ObsSet, start: np.ndarray, end: np.ndarray, duration: int) -> Future:
        latency = self.get_parameter("emulate_latency_ms").value * 1e-3
        future = self._pool.submit(self._fill_job, obs, self.core.instruction, start, end, duration, latency)
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
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_set(self, obs: ObsSet) -> None:
        self._publish(self.core.on_obs(obs, self._now_ns()))

    def _on_feedback(self, fb: FeedbackConfig, msg: JointState) -> None:
        """Wall clock: compose the measured proprio from the feedback topics; the oldest topic sets its age."""
        try:
            self._feedback.update(fb, msg, self._now_ns() * 1e-9)
        except InvalidInput as exc:
            self._reject(fb.topic, exc)
            return
        if self._feedback.complete:
            self.core.on_feedback(self._feedback.values, self._feedback.oldest)

    def _on_instruction(self, msg: String, info) -> None:
        self._publish(self.core.on_instruction(msg.data, message_info_identity(info), self._now_ns()))

    def _on_resume(self, request, response):
        """/wp/resume: release the stop latch; only plans from observation sets after this moment will move."""
        outputs = self.core.on_resume(self._now_ns())
        response.success = True
        if outputs is None:
            response.message = "not stopped: nothing to resume"
            return response
        self._publish(outputs)
        response.message = "resuming: the filler requests a plan from the next observation" + (
            "" if self.core.instruction else " once an instruction arrives on /wp/instruction")
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
        self._publish(self.core.on_plan(plan, self._now_ns()))

    # ---- stop ------------------------------------------------------------------------------------------------
    def _on_stop_topic(self, msg: Header) -> None:
        self._stop("stop_topic", stamp_to_ns(msg.stamp))

    def _on_stop_service(self, request, response):
        self._stop("stop_service", 0)
        response.success = True
        response.message = self.core.latch.state.describe()
        return response

    def _stop(self, source: str, sent_ns: int) -> None:
        self._publish(self.core.on_stop(source, self._now_ns()))
        delay = (time.time_ns() - sent_ns) * 1e-9
        if sent_ns > 0 and 0 <= delay < 10:  # stamped with the wall clock: report the stop latency
            self.diag.latency("stop_to_hold", delay)
        self.diag.alert()

    def _publish_latch(self) -> None:
        self.latch_pub.publish(String(data=self.core.latch.state.to_json()))
        self.diag.alert()

    def _latch_values(self) -> dict:
        latch = self.core.latch
        return {"stop.stopped": str(latch.state.stopped).lower(), "stop.source": latch.state.source,
                "stop.since": f"{latch.state.since:.3f}", "stop.changes": latch.changes}

    # ---- outputs ---------------------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        """Wall clock: one command per control tick, whatever happens."""
        t0 = time.monotonic()
        self._publish(self.core.tick(self._now_ns()))
        self.diag.latency("tick", time.monotonic() - t0)

    def _publish(self, outputs: list[Output]) -> None:
        """Send what the core decided, in its order."""
        for out in outputs:
            if isinstance(out, Command):
                self._send_command(out)
            elif isinstance(out, PlanRequest):
                self.replan_pub.publish(Header(stamp=ns_to_stamp(out.stamp_ns)))
            elif isinstance(out, ChunkStarted):
                self.chunk_pub.publish(chunk_message(out.chunk.actions, self.robot, out.chunk.stamp_ns))
            elif isinstance(out, LatchChanged):
                self._publish_latch()
        while self._fill_seconds:
            self.diag.latency("fill", self._fill_seconds.popleft())

    def _send_command(self, command: Command) -> None:
        decision = command.decision
        frame_id = f"{HOLD_FRAME_PREFIX}{decision.reason}" if decision.hold else ""
        for payload in self.mapper.split(decision.action):
            self.cmd_pubs[payload.topic].publish(command_message(payload, command.stamp_ns, frame_id))

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
        self.core.set_other_writers(found)

    # ---- health ----------------------------------------------------------------------------------------------
    def _reject(self, source: str, exc: Exception) -> None:
        self.core.problem = f"rejected {source}: {exc}"
        self.diag.count(f"rejected.{source}")
        self.get_logger().warning(self.core.problem, throttle_duration_sec=1.0)
        self.diag.alert()

    def _status(self) -> tuple[bytes, str]:
        core = self.core
        problem, reason = core.take_problem(), core.reason
        if reason == HoldReason.OTHER_WRITER:
            return ERROR, f"holding: other writers on the command topics {core.other_writers}"
        if reason in STALE:  # with the rejection that explains it, e.g. a joint missing from the feedback
            return ERROR, f"holding: {reason}" + (f" ({problem})" if problem else "")
        if problem:
            return WARN, problem
        if core.latch.engaged:
            return WARN, core.latch.state.describe()
        if reason:
            return WARN, f"holding: {reason}"
        return OK, "commanding"

    def before_shutdown(self) -> None:
        """Wall clock: end with explicit holds of the measured position on every command topic, never in silence
        (a controller left without commands does whatever its own timeout does)."""
        if self.lockstep:
            return  # a lock-step simulator or replay only advances on commands for its own step
        for _ in range(self.p["final_hold_ticks"]):
            self._publish(self.core.shutdown_hold(self._now_ns()))
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
