"""LIBERO bridge node: a simulation env stands in for the robot drivers of the ``libero_sim`` graph.

The env is a LIBERO suite or a robosuite stand-in (``env`` param, a :mod:`wp_policy.sim.registry` name). The bridge
publishes what a robot driver would (each camera view as a raw ``sensor_msgs/Image`` rgb8, lossless, and the 8-D
state as ``JointState`` on the topics of the robot config), consumes the filler's command topics, and runs a finite
list of episodes (``task_id`` x ``trials``, planned like wp-eval's by :func:`wp_policy.sim.episodes.plan_specs`) with
the one episode loop, :func:`wp_policy.sim.rollout.run_episode`, whose actor here takes each step's action from the
graph. As each episode ends its record (wp-eval's episode file plus the bridge's counts) is appended to
``episodes.jsonl`` (after a header line: env, config, tasks, number of episodes) and its summary is published;
at the end it writes ``results_file`` (``results.json``) once and exits 0, which ends the graph under ``wp-launch``
/ ``ros2 launch`` (the bridge is the graph's ``ends_graph`` node). A failure (no command for ``command_timeout_s``,
a simulator error) exits 1 with one fatal line naming it.

``clock_mode:=lockstep`` (with ``use_sim_time:=true`` on every node): the bridge owns time. An episode is: reset,
publish the instruction on /wp/instruction (latched, also when unchanged), wait ``instruction_lead_s`` (wall), run
``num_wait_steps`` of the LIBERO wait action, then per control step k publish ``/clock`` = the views' and the
state's stamp = :func:`wp_policy.sim.rollout.step_stamp_ns` (wait steps included, the same stamps the direct loop
uses, so the AE noise seeds agree), wait for the command stamped t_k on every command topic, step the env. Sim time
restarts with every episode; the nodes see a new timeline when a stamp goes back by more than 1 s, so after an
episode too short for that the bridge first sends an operator stop and one separator observation 1.5 s ahead (its
command is discarded). The loop ends the episode on the env's success, after ``max_steps`` policy steps, or on a
``hold:stopped`` command (the policy's stop), so a graph episode and a direct one with the same policy files and
seed execute the same actions.

``clock_mode:=wall`` (``use_sim_time:=false``, filler ``clock_mode:=wall``): latency studies. A wall-clock loop at
the robot's control rate publishes observations stamped with the node clock and applies the newest command each
tick (a hold while none has arrived); command ages are reported.

Every command is checked by a :class:`wp_policy.safety.SafetyFilter` before it reaches the simulator: a non-finite or
wrong-size command is replaced by a hold (zero motion, last gripper command) and counted on /diagnostics; the node
never crashes on a bad message. One summary per episode goes to ``/libero/episode_result`` (std_msgs/String, JSON).

The bridge also listens on /wp/waypoints: each plan is recorded with the policy step of the observation it was made
from (its stamp), next to the observed proprio of every step, so ``results.json`` holds what ``wp-eval plot`` draws,
and the episode videos show the current plan like ``wp-eval``'s (:mod:`wp_policy.sim.recording`).

    python -m wp_policy.ros.libero_bridge_node --ros-args -p env:=robosuite:Lift -p trials:=5 -p use_sim_time:=true
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from wp_policy.command_map import CommandMapper
from wp_policy.config_io import ConfigError
from wp_policy.obs_sync import feedback_layout
from wp_policy.robot_config import JOINT_STATE, load_robot_config
from wp_policy.ros import policy_params
from wp_policy.ros.conversions import clock_msg, make_joint_state, rgb_to_image_msg, stamp_to_ns
from wp_policy.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from wp_policy.ros.node_main import STARTUP_ERRORS
from wp_policy.ros.plan_msgs import recorded_plan, stop_message
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import (CLOCK_TOPIC, HOLD_FRAME_PREFIX, INSTRUCTION_TOPIC, TOPIC_QOS, WAYPOINTS_TOPIC,
                                  camera_topic)
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.runtime.timeline import JUMP_NS, jumps_back
from wp_policy.safety import HoldReason, SafetyFilter
from wp_policy.sim.base import SimObservation, SimUnavailableError
from wp_policy.sim.episodes import (EPISODE_RECORDS, EpisodeResult, EpisodeSpec, append_record, format_table,
                                    plan_specs, results_document, summarize, tasks_of, write_json)
from wp_policy.sim.protocol import NUM_WAIT_STEPS, RENDER_SIZE
from wp_policy.sim.recording import VIDEO_SIZE, EpisodeRecorder, check_video_size
from wp_policy.sim.registry import SimEnvConfig, make_env
from wp_policy.sim.rollout import Actor, run_episode, step_stamp_ns

RESULT_TOPIC = "/libero/episode_result"
_JUMP_MARGIN_NS = 50_000_000  # no separator only when the next episode's jump back clears JUMP_NS by this much
_SEPARATOR_NS = JUMP_NS + 500_000_000  # separator stamp: this far past an episode's first stamp (> 1 s jump)

PARAMS = {  # name: (default, description)
    "robot_config": ("libero", "robot config name or YAML path (topics, control rate, limits)"),
    "env": ("libero:libero_object", "simulation env: libero:<suite> or robosuite:<Lift|Stack> (wp_policy.sim)"),
    "task_id": (0, "task index within the env; -1: every task"),
    "trials": (1, "episodes per task"),
    "seed": (7, "simulation seed: stand-in trial t resets with seed + t; LIBERO trial t uses init state t"),
    "image_size": (RENDER_SIZE, f"square render size of both cameras, pixels (the LIBERO protocol's: {RENDER_SIZE})"),
    "max_steps": (0, "policy steps per episode; 0 = the task's budget"),
    "num_wait_steps": (NUM_WAIT_STEPS, "steps of the wait action before the policy acts (objects settle)"),
    "clock_mode": ("lockstep", "lockstep: publish /clock and wait for every command; wall: real-time loop"),
    **{name: (default, f"the filler's {name}, recorded in the results")
       for name, (default, _) in policy_params.REPLAN.items()},
    "output_dir": ("", "folder for results.json, episodes.jsonl and the videos; empty: write nothing"),
    "results_file": ("results.json", "the run's results in output_dir, written once at the end; empty: none (a "
                                     "caller such as wp-demo writes them from episodes.jsonl)"),
    "record_video": (True, "one MP4 per episode (agentview + wrist, plan overlay; LIBERO naming) in output_dir"),
    "video_size": (VIDEO_SIZE, "pixels per view in the episode videos (even, 64..2048)"),
    "instruction": ("", "instruction override; empty: the task's own"),
    "instruction_lead_s": (0.2, "wall seconds between the instruction and an episode's first observation"),
    "command_timeout_s": (300.0, "lockstep: wall seconds to wait for one step's command before failing (a plan "
                                 "needs the VLM and the AE: keep it long)"),
    "ready_publishers": ("/wp/waypoints", "comma-separated topics that must have a publisher before the first "
                                          "episode (besides the command topics); empty: none"),
    "startup_timeout_s": (600.0, "wall seconds to wait for the graph (models loading) before failing"),
    "settle_s": (1.0, "wall seconds after discovery before the first episode (all subscriptions matched)"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
}


class BridgeFailure(RuntimeError):
    """The run cannot go on (no command in time, the graph never came up); the node exits 1 naming it."""


@dataclass(frozen=True)
class BridgeConfig:
    """The bridge's parameters, validated (a ValueError names the bad one: the node exits 1 before starting)."""

    env: str
    task_id: int = 0
    trials: int = 1
    seed: int = 7
    image_size: int = RENDER_SIZE
    max_steps: int = 0
    num_wait_steps: int = NUM_WAIT_STEPS
    clock_mode: str = "lockstep"
    replan: ReplanConfig = field(default_factory=ReplanConfig)  # the filler's, recorded in the results
    output_dir: str = ""
    results_file: str = "results.json"
    record_video: bool = True
    video_size: int = VIDEO_SIZE
    instruction: str = ""
    instruction_lead_s: float = 0.2
    command_timeout_s: float = 300.0
    ready_publishers: str = "/wp/waypoints"
    startup_timeout_s: float = 600.0
    settle_s: float = 1.0

    def __post_init__(self):
        SimEnvConfig(env=self.env)  # the registry names an unknown backend, task or suite
        checks = {
            "task_id": (self.task_id >= -1, "must be >= -1 (-1: every task)"),
            "trials": (self.trials >= 1, "must be >= 1"),
            "seed": (self.seed >= 0, "must be >= 0"),
            "image_size": (self.image_size >= 1, "must be >= 1 (pixels)" if self.image_size else
                           f"0 no longer means the LIBERO protocol's size: write {RENDER_SIZE} (the default) or leave it "
                           "out"),
            "max_steps": (self.max_steps >= 0, "must be >= 0 (0: the task's budget)"),
            "num_wait_steps": (self.num_wait_steps >= 0, "must be >= 0"),
            "clock_mode": (self.clock_mode in ("lockstep", "wall"), "must be lockstep or wall"),
            "instruction_lead_s": (self.instruction_lead_s >= 0, "must be >= 0"),
            "command_timeout_s": (self.command_timeout_s > 0, "must be > 0"),
            "startup_timeout_s": (self.startup_timeout_s > 0, "must be > 0"),
            "settle_s": (self.settle_s >= 0, "must be >= 0"),
        }
        bad = [f"{k} {why}, got {getattr(self, k)!r}" for k, (ok, why) in checks.items() if not ok]
        try:
            check_video_size(self.video_size)
        except ValueError as exc:
            bad.append(str(exc))
        if bad:
            raise ValueError("; ".join(bad))


@dataclass(frozen=True)
class BridgeRun:
    """What the bridge's results are recorded and summarised with: the env as rendered, the tasks in run order and
    the filler's replan settings."""

    env: SimEnvConfig
    tasks: tuple[str, ...]
    replan: ReplanConfig


def plan_episodes(cfg: BridgeConfig) -> tuple[BridgeRun, list[EpisodeSpec]]:
    """The run as wp-eval would plan it (same seeds, init states and budgets); a ConfigError names a bad task_id."""
    env = SimEnvConfig(env=cfg.env, image_size=cfg.image_size)
    specs = plan_specs(env, () if cfg.task_id < 0 else (cfg.task_id,), cfg.trials, seed=cfg.seed,
                       num_wait_steps=cfg.num_wait_steps, max_steps=cfg.max_steps)
    return BridgeRun(env, tuple(tasks_of(specs)), cfg.replan), specs


@dataclass
class _Command:
    parts: dict[str, JointState]
    received: float  # monotonic time the last part arrived

    @property
    def hold_reason(self) -> HoldReason | str:
        """The filler's hold reason, "" for a model action; a reason this version does not name stays its string
        (counted as it came: a bad message never crashes the bridge)."""
        frames = [m.header.frame_id for m in self.parts.values()]
        reason = next((f.removeprefix(HOLD_FRAME_PREFIX) for f in frames if f.startswith(HOLD_FRAME_PREFIX)), "")
        try:
            return HoldReason(reason)
        except ValueError:
            return reason


class _GraphActor(Actor):
    """Takes each policy step's action from the graph's commands, through a fresh SafetyFilter per episode (the
    sim's inputs never go stale); counts holds. The two clock modes differ in when a command counts for a step."""

    def __init__(self, node: LiberoBridgeNode):
        self.node, self.robot, self.replan = node, node.robot, node.cfg.replan

    def begin(self, spec: EpisodeSpec, instruction: str, recorder: EpisodeRecorder) -> None:
        """Send the instruction, let it arrive; whatever arrived before it belongs to the last episode."""
        node = self.node
        node.instruction_pub.publish(String(data=instruction))
        node._sleep(node.cfg.instruction_lead_s)
        for q in (node._commands, node._plans):
            _drain(q)
        self.spec, self.recorder = spec, recorder
        self.safety = SafetyFilter.from_robot(self.robot, obs_timeout=1e9, feedback_timeout=1e9)
        self.holds: Counter = Counter()
        self.steps: dict[int, int] = {}  # observation stamp -> policy step (to place the plans)

    def _action(self, cmd: _Command | None, obs: SimObservation, now_s: float) -> np.ndarray | None:
        """None for the filler's stop (``hold:stopped``: the direct loop stops there too), a hold while no command
        has arrived (wall clock), else the checked command; plans that arrived meanwhile are recorded first."""
        self.node._record_plans(self.recorder, self.steps)
        reason = HoldReason.NO_COMMAND if cmd is None else cmd.hold_reason
        if reason == HoldReason.STOPPED:
            return None
        if reason:
            self.holds[reason] += 1
        self.node.diag.count("steps")
        if cmd is None:
            return self.safety.hold(HoldReason.NO_COMMAND).action
        return self.node._checked(cmd, self.safety, obs.state, now_s, self.holds)


class _LockstepActor(_GraphActor):
    """Publishes /clock and each step's observation at :func:`step_stamp_ns` (the direct loop's stamps), then waits
    for the command stamped with it. Sim time restarts every episode: after one too short for the nodes to see a
    new timeline, a separator goes first (:meth:`LiberoBridgeNode._separate_timelines`)."""

    def __init__(self, node: LiberoBridgeNode):
        super().__init__(node)
        self.last_stamp: int | None = None

    def begin(self, spec: EpisodeSpec, instruction: str, recorder: EpisodeRecorder) -> None:
        hz = self.robot.control_hz
        first = step_stamp_ns(spec.num_wait_steps, hz)
        if self.last_stamp is not None and not jumps_back(self.last_stamp, first, _JUMP_MARGIN_NS):
            self.node._separate_timelines(max(self.last_stamp + step_stamp_ns(0, hz), first + _SEPARATOR_NS))
        super().begin(spec, instruction, recorder)
        self.waits: list[float] = []

    def wait_step(self, step: int) -> None:
        self.node.clock_pub.publish(clock_msg(step_stamp_ns(step, self.robot.control_hz)))

    def act(self, step: int, obs: SimObservation) -> np.ndarray | None:
        node = self.node
        stamp = self.last_stamp = step_stamp_ns(self.spec.num_wait_steps + step, self.robot.control_hz)
        self.steps[stamp] = step
        t0 = time.monotonic()
        node._publish_obs(obs, stamp)
        cmd = node._await_command(stamp, self.spec, step)
        self.waits.append(cmd.received - t0)
        node.diag.latency("command_wait", cmd.received - t0)
        return self._action(cmd, obs, stamp * 1e-9)

    def report(self) -> dict:
        return {"holds": dict(self.holds), "command_wait_s": _percentiles(self.waits)}


class _WallActor(_GraphActor):
    """Paces the steps at the robot's control rate on the wall clock, observations stamped with the node clock,
    and applies the newest complete command (a hold while none has arrived); a tick the simulator misses is
    counted, not slept."""

    def begin(self, spec: EpisodeSpec, instruction: str, recorder: EpisodeRecorder) -> None:
        super().begin(spec, instruction, recorder)
        self.ages: list[float] = []
        self.parts: dict[str, JointState] = {}
        self.latest: _Command | None = None
        self.tick = 0.0

    def act(self, step: int, obs: SimObservation) -> np.ndarray | None:
        node = self.node
        if step == 0:
            self.tick = time.monotonic()
        now_ns = node.get_clock().now().nanoseconds
        self.steps[now_ns] = step
        node._publish_obs(obs, now_ns)
        self.tick += self.robot.control_period
        if time.monotonic() > self.tick:
            node.diag.count("late_ticks")
            self.tick = time.monotonic()
        node._sleep(max(0.0, self.tick - time.monotonic()))
        while not node._commands.empty():
            topic, msg, received = node._commands.get_nowait()
            self.parts[topic] = msg
            if topic == node.mapper.topics[-1] and len(self.parts) == len(node.mapper.topics):
                self.latest, self.parts = _Command(self.parts, received), {}
        if self.latest is not None and self.latest.hold_reason != HoldReason.STOPPED:
            self.ages.append(time.monotonic() - self.latest.received)
            node.diag.latency("command_age", self.ages[-1])
        return self._action(self.latest, obs, now_ns * 1e-9)

    def report(self) -> dict:
        return {"holds": dict(self.holds), "command_age_s": _percentiles(self.ages)}


class LiberoBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("libero_bridge", **kwargs)
        p = policy_params.declare(self, PARAMS, tuple(PARAMS))
        try:
            self.cfg = BridgeConfig(**{k: p[k] for k in BridgeConfig.__dataclass_fields__ if k != "replan"},
                                    replan=ReplanConfig.from_params(p))
        except ValueError as exc:
            raise ConfigError(f"libero_bridge parameters: {exc}") from None
        self.sim_time = self.get_parameter("use_sim_time").value
        if self.cfg.clock_mode == "lockstep" and not self.sim_time:
            raise ConfigError("clock_mode lockstep needs use_sim_time:=true on every node (the bridge owns /clock)")
        if self.cfg.clock_mode == "wall" and self.sim_time:
            raise ConfigError("clock_mode wall needs use_sim_time:=false (nothing publishes /clock in wall mode)")
        self.robot = robot = load_robot_config(p["robot_config"])
        other = [c.topic for c in robot.ros.commands if c.msg_type != JOINT_STATE]
        if other:  # lock-step matches a command to its step by header stamp; a hold names its reason in frame_id
            raise ConfigError(f"the bridge reads {JOINT_STATE} commands (stamped, with a hold reason); "
                              f"ros.commands {other} use another msg_type")
        self.mapper = CommandMapper(robot)
        self.run_info, self.specs = plan_episodes(self.cfg)
        self.env = make_env(self.run_info.env)
        self.results: list[EpisodeResult] = []
        self._last_obs = None  # the latest published observation (the timeline separator repeats it)
        self.extras: list[dict] = []
        self._commands: queue.Queue[tuple[str, JointState, float]] = queue.Queue()
        self._plans: queue.Queue[JointTrajectory] = queue.Queue()  # /wp/waypoints, recorded per episode
        self._status = (WARN, "waiting for the graph")
        reliable = qos_profile("reliable")
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, reliable)
        self.cam_pubs = {c.view: self.create_publisher(Image, camera_topic(c), qos_profile(robot.ros.camera_qos))
                         for c in robot.cameras}
        self.fb_pubs = {fb.topic: self.create_publisher(JointState, fb.topic, qos_profile(robot.ros.feedback_qos))
                        for fb in robot.ros.feedback}
        self.instruction_pub = self.create_publisher(String, INSTRUCTION_TOPIC,
                                                     qos_profile(TOPIC_QOS[INSTRUCTION_TOPIC]))
        self.stop_pub = self.create_publisher(JointTrajectory, WAYPOINTS_TOPIC, qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
        self.result_pub = self.create_publisher(String, RESULT_TOPIC, reliable)
        for topic in self.mapper.topics:
            self.create_subscription(JointState, topic, lambda m, t=topic: self._commands.put((t, m, time.monotonic())),
                                     qos_profile(robot.ros.command_qos))
        self.create_subscription(JointTrajectory, WAYPOINTS_TOPIC, self._plans.put,
                                 qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
        self.diag = Diagnostics(self, p["diagnostics_period"], lambda: self._status)
        self.get_logger().info(
            f"{self.cfg.env} at {self.cfg.image_size} px, {len(self.specs)} episode(s), {self.cfg.clock_mode} -> "
            f"{', '.join(camera_topic(c) for c in robot.cameras)}, {', '.join(self.fb_pubs)}; "
            f"commands from {', '.join(self.mapper.topics)}")

    # ---- run ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Every episode in order (:func:`wp_policy.sim.rollout.run_episode` with this clock mode's actor), then
        results.json. Raises BridgeFailure when the run cannot go on."""
        self._start_records()
        self._wait_for_graph()
        actor = _LockstepActor(self) if self.cfg.clock_mode == "lockstep" else _WallActor(self)
        videos = Path(self.cfg.output_dir) / "videos" if self.cfg.record_video and self.cfg.output_dir else None
        for i, spec in enumerate(self.specs):
            result = run_episode(self.env, spec, actor, instruction=self.cfg.instruction, video_dir=videos,
                                 video_size=self.cfg.video_size)
            self.results.append(result)
            self.extras.append(actor.report())
            self._report(i, result, self.extras[-1])
        self._status = (OK, f"done: {sum(r.success for r in self.results)}/{len(self.results)} successes")
        self.diag.publish_now()

    def _wait_for_graph(self) -> None:
        """Block until the filler (command publishers) and the ``ready_publishers`` are up, and the aggregator
        subscribes to every camera and feedback topic; then let discovery settle."""
        extra = [t.strip() for t in self.cfg.ready_publishers.split(",") if t.strip()]
        need_pub = [*self.mapper.topics, *extra]
        need_sub = [camera_topic(c) for c in self.robot.cameras] + list(self.fb_pubs)
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while True:
            missing = [f"a publisher on {t}" for t in need_pub if self.count_publishers(t) == 0]
            missing += [f"a subscriber on {t}" for t in need_sub if self.count_subscribers(t) == 0]
            if not missing:
                break
            self._status = (WARN, f"waiting for {', '.join(missing)}")
            if time.monotonic() > deadline:
                raise BridgeFailure(f"the graph did not come up within {self.cfg.startup_timeout_s:g} s: no "
                                    f"{'; no '.join(m.removeprefix('a ') for m in missing)}")
            self._sleep(0.1)
        self._sleep(self.cfg.settle_s)
        self._status = (OK, "running")

    def _record_plans(self, recorder: EpisodeRecorder, steps: dict[int, int]) -> None:
        """Plans that arrived so far, each at the step of the observation it was made from (``steps``: stamp ->
        policy step of this episode); plans for other observations (earlier episodes, the separator) are dropped."""
        while not self._plans.empty():
            msg = self._plans.get_nowait()
            stamp = stamp_to_ns(msg.header.stamp)
            if stamp not in steps:
                continue
            plan = recorded_plan(msg, self.robot)
            if plan is not None:
                recorder.add_plan(steps[stamp], plan)

    def _separate_timelines(self, stamp_ns: int) -> None:
        """After a short episode: a stop, then one observation far enough ahead that the next episode's first
        stamp is a > 1 s backward jump for every node (a new timeline); its command is discarded."""
        self.diag.count("timeline_separators")
        self.stop_pub.publish(stop_message(stamp_ns))
        self._sleep(self.cfg.instruction_lead_s)
        self._publish_obs(self._last_obs, stamp_ns)
        self._await_command(stamp_ns, None, -1)

    # ---- pieces ---------------------------------------------------------------------------------------------
    def _publish_obs(self, obs, stamp_ns: int) -> None:
        """One step's raw inputs, all stamped ``stamp_ns`` (lock-step: /clock first)."""
        self._last_obs = obs
        if self.cfg.clock_mode == "lockstep":
            self.clock_pub.publish(clock_msg(stamp_ns))
        for cam in self.robot.cameras:
            if cam.view not in obs.images:
                raise BridgeFailure(f"the env rendered no {cam.view!r} view (has {sorted(obs.images)})")
            self.cam_pubs[cam.view].publish(rgb_to_image_msg(obs.images[cam.view], stamp_ns))
        state = np.asarray(self.robot.select_proprio(obs.state), dtype=np.float64)
        for fb in self.robot.ros.feedback:
            self.fb_pubs[fb.topic].publish(make_joint_state(*feedback_layout(fb, state), stamp_ns))

    def _await_command(self, stamp_ns: int, spec: EpisodeSpec | None, step: int) -> _Command:
        """Lock-step: the command stamped ``stamp_ns`` on every command topic (others are stale: counted, dropped)."""
        parts: dict[str, JointState] = {}
        deadline = time.monotonic() + self.cfg.command_timeout_s
        while True:
            try:
                topic, msg, received = self._commands.get(timeout=0.05)
            except queue.Empty:
                if not rclpy.ok(context=self.context):
                    raise KeyboardInterrupt from None
                if time.monotonic() > deadline:
                    where = f"{spec.task} trial {spec.trial} step {step}" if spec else "the timeline separator"
                    raise BridgeFailure(
                        f"no command on {', '.join(t for t in self.mapper.topics if t not in parts)} for "
                        f"{where} (stamp {stamp_ns} ns) within {self.cfg.command_timeout_s:g} s: is the filler "
                        "running with clock_mode:=lockstep use_sim_time:=true?") from None
                continue
            if stamp_to_ns(msg.header.stamp) != stamp_ns:
                self.diag.count("stale_commands")
                continue
            parts[topic] = msg
            if len(parts) == len(self.mapper.topics):
                return _Command(parts, received)

    def _checked(self, cmd: _Command, safety: SafetyFilter, state, now: float, holds: Counter) -> np.ndarray:
        """The command through the SafetyFilter; a malformed one becomes a hold (counted, never a crash)."""
        safety.observe_obs(now)
        safety.observe_feedback(state, now)
        try:
            raw = self.mapper.join({t: m.position for t, m in cmd.parts.items()})
        except ValueError as exc:
            decision = safety.hold(HoldReason.REJECTED_LENGTH)
            self._reject(str(exc))
        else:
            decision = safety.check(raw, now)
            if decision.hold:
                self._reject(f"{decision.reason}: {raw.tolist()}")
        if decision.hold:
            holds[f"bridge.{decision.reason}"] += 1
        return decision.action

    def _reject(self, why: str) -> None:
        self.diag.count("rejected_commands")
        self._status = (WARN, f"rejected a command ({why}); held instead")
        self.get_logger().warning(f"rejected command: {why}; holding", throttle_duration_sec=1.0)
        self.diag.alert()

    def _report(self, index: int, result: EpisodeResult, extra: dict) -> None:
        self.diag.count("episodes")
        self.diag.count("successes", int(result.success))
        summary = {k: v for k, v in result.to_json().items() if k not in ("actions", "plan_latency_s",
                                                                          "fill_latency_s")}
        summary |= {"index": index, "of": len(self.specs), **extra}
        self.result_pub.publish(String(data=json.dumps(summary)))
        if self.cfg.output_dir:
            append_record(Path(self.cfg.output_dir) / EPISODE_RECORDS, self._record(index))
        self.get_logger().info(
            f"episode {index + 1}/{len(self.specs)} {result.task} t{result.trial}: {result.termination} after "
            f"{result.steps} steps ({result.episode_s:.1f} s)")
        self.diag.publish_now()

    def summary(self) -> dict:
        """wp-eval's summary (per-task and overall success rates, terminations) of the episodes run so far."""
        return summarize(self.results, list(self.run_info.tasks))

    def _record(self, index: int) -> dict:
        """Episode ``index``'s record in results.json and episodes.jsonl: wp-eval's episode file plus the bridge's
        own counts."""
        return self.results[index].to_json() | {"bridge": self.extras[index]}

    def _start_records(self) -> None:
        """episodes.jsonl, started afresh: a header (env, config, tasks, number of episodes) that the episodes'
        lines follow as they end, so a caller (wp-demo) follows the run and can write its results from data."""
        if not self.cfg.output_dir:
            return
        out = Path(self.cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / EPISODE_RECORDS).unlink(missing_ok=True)
        append_record(out / EPISODE_RECORDS, {"env": self.cfg.env, "config": asdict(self.cfg),
                                              "tasks": list(self.run_info.tasks), "episodes": len(self.specs)})

    def write_results(self) -> Path | None:
        """``results_file`` in output_dir, once, with the episodes run (all, or those before a failure)."""
        if not (self.cfg.output_dir and self.cfg.results_file):
            return None
        out = Path(self.cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        doc = results_document(self.cfg.env, asdict(self.cfg), list(self.run_info.tasks), self.results,
                               [self._record(i) for i in range(len(self.results))])
        return write_json(out / self.cfg.results_file, doc)

    def report_failure(self, why: str) -> None:
        """The run cannot go on: one fatal line, and ERROR on /diagnostics."""
        self.get_logger().fatal(why)
        self._status = (ERROR, why)
        self.diag.publish_now()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if not rclpy.ok(context=self.context):
                raise KeyboardInterrupt
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def destroy_node(self):
        self.env.close()
        return super().destroy_node()


def _drain(q: queue.Queue) -> None:
    while not q.empty():
        q.get_nowait()


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    p50, p99 = np.percentile(samples, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(max(samples))}


def main(args=None) -> int:
    """Run the episodes; 0 when all ran (whatever their outcome), 1 on a start-up or run failure."""
    rclpy.init(args=args)
    node = None
    logger = rclpy.logging.get_logger("libero_bridge")
    executor = SingleThreadedExecutor()
    spinner = None
    try:
        try:
            node = LiberoBridgeNode()
        except (*STARTUP_ERRORS, SimUnavailableError) as exc:
            logger.fatal(f"cannot start: {exc}")
            return 1
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
        spinner.start()
        try:
            node.run()
        except BridgeFailure as exc:
            node.report_failure(str(exc))
            return 1
        finally:
            path = node.write_results()
        print(format_table(node.summary()), flush=True)
        if path is not None:
            logger.info(f"results: {path}")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if spinner is not None:
            spinner.join(timeout=2.0)


def _spin(executor) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    sys.exit(main())
