"""Planner node: VLM waypoint plans from observation sets, published on /wp/waypoints.

Triggers (docs/ros_graph.md, Planner):
- ``/wp/replan`` (std_msgs/Header from the filler): plan from the observation set whose stamp the header names; with
  sim time (lock-step replay or simulation) exactly that set, waiting for it if it has not arrived (or the first
  newer one if it was missed), so runs are reproducible; with the wall clock the newest set at least that new;
- a new ``/wp/instruction`` (reliable, transient local) or a resume: plan from the first set that arrives after it
  (unless a replan request is answered first).
Stops: the filler owns the stop latch (:mod:`wp_policy.runtime.stop_latch`) and publishes it on /wp/stop_state
(latched); the planner follows it, and also stops at once on /wp/stop or on a stop message on /wp/waypoints (the
operator's, or its own model-predicted d_1 = 0). While stopped it does not re-plan, and a plan still being computed is
discarded, never published. It plans nothing before it has heard the filler's stop state, so a planner (re)started while
the robot is stopped does not act on the latched instruction the filler had already acted on before the stop (same
message identity); a resume (/wp/resume on the filler) or a genuinely new instruction message does restart planning.

Inference runs on a worker thread; its result comes back through a guard condition, so every ROS callback (stop,
resume, requests, observations) runs on the executor thread, one at a time, and keeps being answered while the model
thinks. Triggers that arrive meanwhile are coalesced (the newest wins). Waypoints are published in physical units
with the proprio joint names, ``time_from_start`` = cumulative d x control period and header.stamp = the stamp of
the observation used. /diagnostics reports plan latency (model compute, request -> publish, observation -> publish)
and counts every ignored request and inference error (the node stays up). ``emulate_latency_ms`` pads each model
call, to study the graph's timing as if the model were slower (bench/bench_graph_timing.py).

    python -m wp_policy.ros.planner_node --ros-args -p robot_config:=r1lite -p checkpoint:=ckpt/vlm \\
        -p stats:=ckpt/stats.json -p tokenizer:=ckpt/tokenizer.model -p instruction:="pick up the cup"
"""

from __future__ import annotations

import gc
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rclpy.node import Node
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from wp_policy.obs_sync import ObsSet
from wp_policy.ros import policy_params
from wp_policy.ros.conversions import message_info_identity, stamp_to_ns
from wp_policy.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from wp_policy.ros.node_main import run_node
from wp_policy.ros.obs_subscriber import ObsSetSubscriber
from wp_policy.ros.plan_msgs import is_stop_message, plan_to_message
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import (INSTRUCTION_TOPIC, REPLAN_TOPIC, STOP_QOS, STOP_STATE_TOPIC, STOP_TOPIC,
                                  TOPIC_QOS, WAYPOINTS_TOPIC)
from wp_policy.runtime.plan import Plan
from wp_policy.runtime.stop_latch import LatchState
from wp_policy.runtime.timeline import Timeline

PARAMS = {
    **policy_params.COMMON,
    "num_waypoints": (policy_params.policy_default("num_waypoints"), "waypoints per plan (M)"),
    "max_token_len": (policy_params.policy_default("max_token_len"), "longest prompt in tokens (instruction, state, "
                                                                    "'Action: ')"),
}
READ_ONLY = (*policy_params.READ_ONLY, "num_waypoints", "max_token_len")
OBS_BUFFER = 64  # observation sets kept for named replan requests (~4 s at 15 Hz)


@dataclass(frozen=True)
class _Trigger:
    kind: str  # "replan" (named stamp) or "instruction" / "resume" (first set after ``after_index``)
    stamp_ns: int = -1
    after_index: int = -1
    received: float = 0.0  # monotonic time it arrived


@dataclass(frozen=True)
class _Job:
    obs: ObsSet
    instruction: str
    epoch: int
    trigger: _Trigger
    min_latency_s: float  # emulate_latency_ms (latency studies)


class PlannerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("planner", **kwargs)
        # first: rclpy's shutdown destroys every node it tracks, also one whose start-up failed below
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlm")
        p = policy_params.declare(self, PARAMS, READ_ONLY)
        policy_params.apply_cpu_threads(p["cpu_threads"])
        self.policy = policy_params.load_policy(p, "vlm_checkpoint", num_waypoints=p["num_waypoints"],
                                                max_token_len=p["max_token_len"])
        self.robot = self.policy.robot
        self.instruction = p["instruction"]
        self._instruction_id = ""
        self.latch: LatchState | None = None  # the filler's stop state; nothing is planned before it is known
        self.sim_time = self.get_parameter("use_sim_time").value
        self.timeline = Timeline()  # a new epoch at every instruction, stop, resume and jump: older results drop
        self.stopped = False
        self._sets: deque[tuple[int, ObsSet]] = deque(maxlen=OBS_BUFFER)  # (arrival index, set)
        self._arrivals = 0
        self._trigger: _Trigger | None = None
        self._job: _Job | None = None
        self._published: tuple[_Job, JointTrajectory, float] | None = None  # last plan sent (job, msg, monotonic)
        self._future: Future | None = None
        self._last_error = ""
        self._done = self.create_guard_condition(self._on_plan_done)
        self.diag = Diagnostics(self, p["diagnostics_period"], self._status)
        policy_params.report_device(self, self.policy, self.diag)
        self.pub = self.create_publisher(JointTrajectory, WAYPOINTS_TOPIC, qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
        self.obs = ObsSetSubscriber(self, self.robot, on_set=self._on_set)
        self.diag.extra.append(lambda: {"count.rejected.obs": self.obs.rejected,
                                        "count.proprio_clipped": self.policy.proprio_clipped})
        self.create_subscription(Header, REPLAN_TOPIC, self._on_replan, qos_profile(TOPIC_QOS[REPLAN_TOPIC]))
        self.create_subscription(String, INSTRUCTION_TOPIC, self._on_instruction,
                                 qos_profile(TOPIC_QOS[INSTRUCTION_TOPIC]))
        self.create_subscription(JointTrajectory, WAYPOINTS_TOPIC, self._on_waypoints,
                                 qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
        self.create_subscription(String, STOP_STATE_TOPIC, self._on_stop_state,
                                 qos_profile(TOPIC_QOS[STOP_STATE_TOPIC]))
        for qos in STOP_QOS:
            self.create_subscription(Header, STOP_TOPIC, self._on_stop_topic, qos_profile(qos))
        self.get_logger().info(f"{self.robot.robot_type}: planning {p['num_waypoints']} waypoints with "
                               f"{p['checkpoint']} on {self.policy.device}; instruction {self.instruction!r}")
        gc.freeze()  # the loaded model's objects are static: keep them out of the collector (no GC pauses in the
        #              control loop, and no multi-second collection at exit)

    # ---- inputs ----------------------------------------------------------------------------------------------
    def _on_set(self, obs: ObsSet) -> None:
        if self.timeline.observe(obs.stamp_ns):  # bag restarted / simulation reset
            self._sets.clear()
            if self._trigger is not None and self._trigger.kind == "replan":
                self._trigger = None
            self.diag.count("time_jumps")
        self._arrivals += 1
        self._sets.append((self._arrivals, obs))
        self._dispatch()

    def _on_replan(self, msg: Header) -> None:
        if self.stopped:
            self.diag.count("ignored.replan_while_stopped")
            return
        self.diag.count("replan_requests")
        self._set_trigger(_Trigger("replan", stamp_ns=stamp_to_ns(msg.stamp), received=time.monotonic()))

    def _on_instruction(self, msg: String, info) -> None:
        identity = message_info_identity(info)
        if identity == self._instruction_id:
            self.diag.count("ignored.repeated_instruction")
            return
        self.instruction, self._instruction_id = msg.data, identity
        if self.stopped and self.latch is not None and identity == self.latch.instruction_id:
            self.diag.count("ignored.instruction_before_stop")  # the one the filler acted on before its stop
            return
        self.stopped = False
        self.timeline.cut()
        self.diag.count("instructions")
        self.get_logger().info(f"new instruction {msg.data!r}")
        self._set_trigger(self._open_request() or
                          _Trigger("instruction", after_index=self._arrivals, received=time.monotonic()))

    def _open_request(self) -> _Trigger | None:
        """A replan request not answered yet (pending, or being planned with the old instruction)."""
        if self._trigger is not None and self._trigger.kind == "replan":
            return self._trigger
        if self._future is not None and self._job.trigger.kind == "replan":
            return self._job.trigger
        return None

    def _on_waypoints(self, msg: JointTrajectory) -> None:
        if is_stop_message(msg, self.robot.control_period):
            self._halt("stop received")

    def _on_stop_state(self, msg: String) -> None:
        try:
            state = LatchState.from_json(msg.data)
        except ValueError as exc:
            self.diag.count("rejected.stop_state")
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        known, self.latch = self.latch is not None, state
        if state.stopped:
            self._halt(f"the filler is {state.describe()}")
        elif self.stopped:
            self.stopped = False
            self.timeline.cut()
            self.diag.count("resumes")
            self.get_logger().info(f"resumed ({state.source})")
            self._set_trigger(self._trigger or
                              _Trigger("resume", after_index=self._arrivals, received=time.monotonic()))
        elif not known:
            self._dispatch()  # a trigger waiting for the filler's state

    def _on_stop_topic(self, msg: Header) -> None:
        """Halt at once, unless the filler has already released the latch after this stop was sent: a late copy
        (best-effort under load) would otherwise leave the planner halted while the filler runs and waits for it."""
        if self.latch is not None and self.latch.released_after(stamp_to_ns(msg.stamp) * 1e-9):
            self.diag.count("ignored.stop_before_release")
            return
        self._halt("stop received on /wp/stop")

    def _halt(self, why: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.timeline.cut()
        self._trigger = None
        self.diag.count("stops")
        self.get_logger().warning(f"{why}: no re-planning until /wp/resume or a new instruction")
        self.diag.alert()

    def _set_trigger(self, trigger: _Trigger) -> None:
        if self._trigger is not None and self._trigger is not trigger:
            self.diag.count("coalesced")
        self._trigger = trigger
        self._dispatch()

    # ---- planning --------------------------------------------------------------------------------------------
    def _select(self, trigger: _Trigger) -> ObsSet | None:
        """The observation set a trigger plans from, or None while it has not arrived."""
        if trigger.kind != "replan":
            return next((o for i, o in self._sets if i > trigger.after_index), None)
        if not self.sim_time:
            return self._sets[-1][1] if self._sets and self._sets[-1][1].stamp_ns >= trigger.stamp_ns else None
        exact = next((o for _, o in self._sets if o.stamp_ns == trigger.stamp_ns), None)
        return exact or next((o for _, o in self._sets if o.stamp_ns > trigger.stamp_ns), None)

    def _dispatch(self) -> None:
        """Start the pending trigger's plan if the worker is free, there is an instruction and its set is here."""
        trigger = self._trigger
        if trigger is None or self._future is not None or self.stopped or not self.instruction or self.latch is None:
            return
        obs = self._select(trigger)
        if obs is None:
            return
        self._trigger = None
        if self._job is not None and (self._job.epoch, self._job.obs.stamp_ns) == (self.timeline.epoch, obs.stamp_ns):
            self.diag.count("ignored.duplicate")  # already planned from this set for this instruction
            sent = self._published
            if trigger.kind == "replan" and sent is not None and sent[0] == self._job and trigger.received > sent[2]:
                # asked again after the plan went out: the requester dropped it (it arrived before the set it was
                # made from, e.g. an instruction-triggered plan at an episode start): send the same plan again
                self.pub.publish(sent[1])
                self.diag.count("republished")
            return
        latency = self.get_parameter("emulate_latency_ms").value * 1e-3
        self._job = _Job(obs, self.instruction, self.timeline.epoch, trigger, latency)
        self._future = self._pool.submit(self._infer, self._job)
        self._future.add_done_callback(lambda _: self._done.trigger())

    def _infer(self, job: _Job) -> tuple[Plan, float]:
        """Worker thread: the model call (padded to emulate_latency_ms); returns (plan, seconds)."""
        t0 = time.monotonic()
        plan = self.policy.plan(job.obs, job.instruction)
        time.sleep(max(0.0, t0 + job.min_latency_s - time.monotonic()))
        return plan, time.monotonic() - t0

    def _on_plan_done(self) -> None:
        future, job, self._future = self._future, self._job, None
        if future is None:
            return
        try:
            plan, seconds = future.result()
        except Exception as exc:  # a bad observation or a model error must not kill the node
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.diag.count("errors")
            self.get_logger().error(f"planning failed: {self._last_error}")
            self.diag.alert()
        else:
            self._last_error = ""
            self._publish(plan, job, seconds)
        self._dispatch()

    def _publish(self, plan: Plan, job: _Job, seconds: float) -> None:
        self.diag.latency("plan", seconds)
        if job.epoch != self.timeline.epoch:  # a stop, resume, new instruction or time jump came in meanwhile
            self.diag.count("discarded")
            return
        msg = plan_to_message(plan, self.robot)
        self.pub.publish(msg)
        self._published = (job, msg, time.monotonic())
        now = time.monotonic()
        self.diag.count("plans")
        self.diag.event("plans")
        self.diag.latency("request_to_publish", now - job.trigger.received)
        self.diag.latency("obs_to_publish", self.get_clock().now().nanoseconds * 1e-9 - job.obs.received)
        if plan.is_stop:
            self.get_logger().info("the model predicted a stop (d_1 = 0)")

    def _status(self) -> tuple[bytes, str]:
        if self._last_error:
            return ERROR, f"last plan failed: {self._last_error}"
        if self.latch is None:
            return WARN, f"waiting for the filler's stop state on {STOP_STATE_TOPIC}"
        if self.stopped:
            return WARN, "stopped: waiting for /wp/resume or a new instruction"
        if not self.instruction:
            return WARN, "waiting for an instruction on /wp/instruction"
        if not self._sets:
            return WARN, "waiting for observation sets on /wp/obs"
        return OK, "planning" if self._future is not None else "ready"

    def destroy_node(self):
        pool = getattr(self, "_pool", None)  # absent when Node.__init__ failed (e.g. use_sim_time:=yes)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        return super().destroy_node()


def main(args=None):
    run_node(PlannerNode, args, name="planner")


if __name__ == "__main__":
    main()
