"""The direct (no-ROS) episode loop: a :class:`SimEnv`, a :class:`WaypointPolicy` and a :class:`WaypointRunner`.

This is the one definition of "an evaluation episode"; ``wp-eval`` runs it in worker processes and the LIBERO ROS
bridge reuses its pieces (stamps, the observation conversion, the spec/result records), so a ROS-graph episode and a
direct episode with the same policy files and seed execute the same actions.

Interface (stable; other modules code against it):

- ``step_stamp_ns(step, control_hz) -> int``: the sim-time stamp of the observation taken after ``step`` env steps
  of an episode (``step`` counts the wait steps too; the reset observation is step 0). It is ``(step + 1)`` control
  periods in integer nanoseconds, never 0 (ROS reads time 0 as "no clock yet"). The bridge publishes ``/clock`` with
  exactly these values, so the AE noise seeds (:func:`wp_policy.runtime.policy.fill_seed`) agree.
- ``sim_obs_to_obsset(obs, robot, stamp_ns) -> ObsSet``: the robot config's camera views, resized-with-pad to
  ``robot.image_size`` (what the aggregator node does on arrival), proprio ``float64`` via ``robot.select_proprio``.
- ``EpisodeSpec(task, trial, seed, init_state, max_steps, num_wait_steps)``: one episode to run; ``init_state`` is a
  row index into the env's fixed init states (LIBERO) or None for a seeded reset.
- ``EpisodeResult``: what happened (``success``, policy ``steps``, ``termination``, ``actions`` float64 [steps, 7],
  the observed ``proprio`` [steps + 1, P] and every plan with the step it was made at, plan/fill latencies in
  seconds, video path); ``to_json()`` / ``from_json()`` round-trip it exactly.
- ``reset_episode(env, spec) -> SimObservation``: the spec's start (init-state row, else seeded reset).
- ``run_episode(env, policy, spec, replan=ReplanConfig(), record_video=None, video_size=VIDEO_SIZE)``
  (:class:`wp_policy.runtime.replan.ReplanConfig`, the same settings the filler node takes); the video is
  :mod:`wp_policy.sim.recording`'s.
- ``write_video(frames, path, fps=VIDEO_FPS)``: an H.264 MP4 through imageio-ffmpeg.

The loop: reset (seeded or from an init state), ``num_wait_steps`` x ``WAIT_ACTION`` so objects settle, then per
control step: build the ObsSet, plan when the runner needs one (or wants one early in lookahead mode), take the
runner's action, step the env. It ends on the env's success (``termination="success"``), after ``max_steps`` policy
steps (``"max_steps"``), or when the policy predicts a stop (``"stopped"``).

Stop plans end the episode as a failure, decided on purpose: in the ROS graph a stop holds the robot and the planner
stays silent until a new instruction arrives, so nothing the policy does afterwards can change the outcome; holding
for the rest of the budget would only spend simulation time (and frames) on a foregone result. A stop after the
task is already solved cannot happen: success ends the episode first.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from wp_policy.image_proc import resize_with_pad
from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import RobotConfig
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.runtime.runner import WaypointRunner
from wp_policy.sim.base import SimEnv, SimObservation
from wp_policy.sim.protocol import WAIT_ACTION, video_filename
from wp_policy.sim.recording import VIDEO_SIZE, EpisodeRecorder, PlanRecord, write_video

Termination = Literal["success", "max_steps", "stopped"]
__all__ = ["EpisodeResult", "EpisodeSpec", "reset_episode", "run_episode", "sim_obs_to_obsset", "step_stamp_ns",
           "write_video"]


def step_stamp_ns(step: int, control_hz: float) -> int:
    """Sim-time stamp (ns) of the observation after ``step`` env steps: ``(step + 1)`` whole control periods."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not control_hz > 0:
        raise ValueError(f"control_hz must be positive, got {control_hz}")
    return (int(step) + 1) * int(round(1e9 / control_hz))


def sim_obs_to_obsset(obs: SimObservation, robot: RobotConfig, stamp_ns: int) -> ObsSet:
    """The runtime's observation set for a sim observation: the same views and proprio the ROS graph would see."""
    missing = [v for v in robot.camera_views if v not in obs.images]
    if missing:
        raise ValueError(f"sim observation lacks camera view(s) {missing} that robot {robot.robot_type} needs "
                         f"(has {sorted(obs.images)}); is the env rendering?")
    size = robot.image_size
    images = {v: resize_with_pad(obs.images[v], size, size) for v in robot.camera_views}
    proprio = np.asarray(robot.select_proprio(obs.state), dtype=np.float64)
    return ObsSet(stamp_ns=int(stamp_ns), images=images, proprio=proprio)


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode. ``max_steps`` counts policy steps; the wait steps come on top (LIBERO protocol)."""

    task: str
    trial: int
    seed: int | None = None  # seeded reset (robosuite stand-ins); LIBERO seeds its env once and uses init states
    init_state: int | None = None  # row of the env's fixed init states (LiberoEnv.init_states); wins over seed
    max_steps: int = 100
    num_wait_steps: int = 10

    def __post_init__(self):
        if self.trial < 0:
            raise ValueError(f"trial must be >= 0, got {self.trial}")
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.num_wait_steps < 0:
            raise ValueError(f"num_wait_steps must be >= 0, got {self.num_wait_steps}")
        if self.init_state is not None and self.init_state < 0:
            raise ValueError(f"init_state must be a row index >= 0, got {self.init_state}")

    @property
    def key(self) -> str:
        """File-name safe identity of the episode (task + trial), used for resumable result files."""
        return video_filename(self.task, self.trial, True).removeprefix("rollout_").removesuffix("_success.mp4")


@dataclass(frozen=True)
class EpisodeResult:
    task: str
    trial: int
    seed: int | None
    success: bool
    steps: int  # policy steps executed (wait steps excluded)
    termination: Termination
    actions: np.ndarray  # float64 [steps, action_dim], exactly what the env received
    plan_latency_s: tuple[float, ...] = ()  # one per policy.plan call
    fill_latency_s: tuple[float, ...] = ()  # one per policy.fill call
    video: str | None = None
    replan_mode: str = "after_last"
    pairs_per_plan: int = 0  # pairs of each plan that ran before the next plan (0: all)
    plan_lead_s: float | None = None  # the ReplanConfig's leads (None: a record from before they were recorded)
    fill_lead_s: float | None = None
    init_state: int | None = None
    num_plans: int = 0
    episode_s: float = 0.0  # wall time of the whole episode (reset, wait steps, policy steps, video)
    proprio: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # float64 [steps + 1, P] observed
    plans: tuple[PlanRecord, ...] = ()  # every plan loaded, with the policy step it was made at

    def to_json(self) -> dict:
        """Plain JSON data; floats survive the round trip exactly (Python's repr is shortest round-trip)."""
        out = asdict(self)
        out["actions"] = np.asarray(self.actions, dtype=np.float64).tolist()
        out["plan_latency_s"] = list(self.plan_latency_s)
        out["fill_latency_s"] = list(self.fill_latency_s)
        out["proprio"] = np.asarray(self.proprio, dtype=np.float64).tolist()
        out["plans"] = [p.to_json() for p in self.plans]
        return out

    @classmethod
    def from_json(cls, data: dict) -> EpisodeResult:
        """The inverse of :meth:`to_json`; records written before ``proprio`` and ``plans`` existed load too."""
        data = dict(data)
        actions = np.asarray(data.pop("actions"), dtype=np.float64)
        if actions.size == 0:
            actions = actions.reshape(0, len(WAIT_ACTION))
        proprio = np.asarray(data.pop("proprio", []), dtype=np.float64)
        if proprio.size == 0:
            proprio = proprio.reshape(0, 0)
        dim = proprio.shape[1]
        plans = tuple(PlanRecord.from_json(p, dim) for p in data.pop("plans", []))
        return cls(actions=actions, plan_latency_s=tuple(data.pop("plan_latency_s")),
                   fill_latency_s=tuple(data.pop("fill_latency_s")), proprio=proprio, plans=plans, **data)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename): an interrupted run never leaves a half-written record."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EpisodeResult:
        return cls.from_json(json.loads(Path(path).read_text()))


@dataclass
class _Timings:
    plan: list[float] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)


def run_episode(env: SimEnv, policy, spec: EpisodeSpec, replan: ReplanConfig = ReplanConfig(),
                record_video: str | Path | None = None, video_size: int = VIDEO_SIZE) -> EpisodeResult:
    """Run one episode (see the module docstring); ``record_video``: folder for the episode's MP4, or None;
    ``video_size``: pixels per view in the video."""
    started = time.perf_counter()
    robot: RobotConfig = policy.robot
    instruction = env.task(spec.task).instruction
    timings = _Timings()

    def fill(o: ObsSet, start: np.ndarray, end: np.ndarray, duration: int) -> np.ndarray:
        t0 = time.perf_counter()
        out = policy.fill(o, instruction, start, end, duration)
        timings.fill.append(time.perf_counter() - t0)
        return out

    def plan(o: ObsSet):
        t0 = time.perf_counter()
        out = policy.plan(o, instruction)
        timings.plan.append(time.perf_counter() - t0)
        return out

    runner = WaypointRunner(fill, replan.strategy(robot.control_hz))
    recorder = EpisodeRecorder(env, robot, instruction, spec.max_steps,
                               video_size if record_video is not None else None)

    def load_plan(o: ObsSet, step: int) -> None:
        runner.request_plan()
        new = plan(o)
        runner.load_plan(new)
        recorder.add_plan(step, new)

    obs = reset_episode(env, spec)
    for _ in range(spec.num_wait_steps):
        obs = env.step(WAIT_ACTION).obs
    actions = []
    termination: Termination = "max_steps"
    for k in range(spec.max_steps):
        obs_set = sim_obs_to_obsset(obs, robot, step_stamp_ns(spec.num_wait_steps + k, robot.control_hz))
        if runner.needs_plan:
            load_plan(obs_set, k)
        action = runner.step(obs_set)
        if action is not None and runner.wants_early_plan:
            load_plan(obs_set, k)
        recorder.observe(k, obs)
        if action is None:  # a stop plan (first waypoint, or a later d = 0 reached): see the module docstring
            termination = "stopped"
            break
        result = env.step(action)
        actions.append(np.asarray(action, dtype=np.float64))
        obs = result.obs
        if result.done:
            termination = "success"
            break
    if termination != "stopped":  # the stop tick's observation is already the last one
        recorder.observe(len(actions), obs)
    success = termination == "success"
    video = None
    if record_video is not None:
        path = Path(record_video) / video_filename(spec.task, spec.trial, success)
        video = str(recorder.write_video(path, termination))
    action_dim = robot.action.dim
    return EpisodeResult(
        task=spec.task, trial=spec.trial, seed=spec.seed, success=success, steps=len(actions),
        termination=termination,
        actions=np.stack(actions) if actions else np.zeros((0, action_dim), dtype=np.float64),
        plan_latency_s=tuple(timings.plan), fill_latency_s=tuple(timings.fill), video=video,
        **replan.params(), init_state=spec.init_state,
        num_plans=len(timings.plan), episode_s=time.perf_counter() - started, proprio=recorder.proprio,
        plans=recorder.plans,
    )


def reset_episode(env: SimEnv, spec: EpisodeSpec) -> SimObservation:
    """Reset from the spec's init-state row (envs with fixed init states) or with its seed."""
    if spec.init_state is None:
        return env.reset(spec.task, seed=spec.seed)
    states_fn = getattr(env, "init_states", None)
    if states_fn is None:
        raise ValueError(f"episode {spec.task!r} t{spec.trial} asks for init state {spec.init_state}, but "
                         f"{type(env).__name__} has no fixed init states; use seed instead")
    states = states_fn(spec.task)
    if spec.init_state >= len(states):
        raise ValueError(f"task {spec.task!r} has {len(states)} init states; row {spec.init_state} does not exist")
    return env.reset(spec.task, init_state=states[spec.init_state], seed=spec.seed)
