"""The one episode loop: :func:`run_episode` runs a :class:`SimEnv` episode whose actions an :class:`Actor` decides.

``wp-eval`` runs it with a :class:`PolicyActor` (the policy in-process); the LIBERO ROS bridge runs it with actors
that take the action from the ROS graph (lock-step: the command for this step's observation; wall-clock: the newest
command at the control rate). The bookkeeping (reset, wait steps, budget, success, stop, per-step records, video)
exists only here, so a ROS-graph episode and a direct episode with the same policy files and seed execute the same
actions.

Interface (stable; other modules code against it):

- ``step_stamp_ns(step, control_hz) -> int``: the sim-time stamp of the observation taken after ``step`` env steps
  of an episode (``step`` counts the wait steps too; the reset observation is step 0). It is ``(step + 1)`` control
  periods in integer nanoseconds, never 0 (ROS reads time 0 as "no clock yet"). The bridge publishes ``/clock`` with
  exactly these values, so the AE noise seeds (:func:`wp_policy.runtime.policy.fill_seed`) agree.
- ``sim_obs_to_obsset(obs, robot, stamp_ns) -> ObsSet``: the robot config's camera views, resized-with-pad to
  ``robot.image_size`` (what the aggregator node does on arrival), proprio ``float64`` via ``robot.select_proprio``.
- ``EpisodeSpec`` / ``EpisodeResult``: defined in :mod:`wp_policy.sim.episodes`, re-exported here.
- ``reset_episode(env, spec) -> SimObservation``: the spec's start (init-state row, else seeded reset).
- ``run_episode(env, spec, actor, instruction="", video_dir=None, video_size=VIDEO_SIZE)``; the video is
  :mod:`wp_policy.sim.recording`'s.
- ``PolicyActor(policy, replan=ReplanConfig())`` (:class:`wp_policy.runtime.replan.ReplanConfig`, the same settings
  the filler node takes).
- ``write_video(frames, path, fps=VIDEO_FPS)``: an H.264 MP4 through imageio-ffmpeg.

The loop: reset (seeded or from an init state), ``actor.begin``, ``num_wait_steps`` x ``WAIT_ACTION`` so objects
settle (``actor.wait_step`` before each), then per policy step k: ``actor.act(k, obs)`` (the direct actor builds the
ObsSet, plans when the runner needs one or wants one early, takes the runner's action), record the observation, step
the env. It ends on the env's success (``termination="success"``), after ``max_steps`` policy steps
(``"max_steps"``), or when the actor returns None, the policy's stop (``"stopped"``). The final observation is
recorded once more unless the episode stopped (the stop step's observation is already the last).

Stop plans end the episode as a failure, decided on purpose: in the ROS graph a stop holds the robot and the planner
stays silent until a new instruction arrives, so nothing the policy does afterwards can change the outcome; holding
for the rest of the budget would only spend simulation time (and frames) on a foregone result. A stop after the
task is already solved cannot happen: success ends the episode first.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wp_policy.image_proc import resize_with_pad
from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import RobotConfig
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.runtime.runner import WaypointRunner
from wp_policy.sim.base import SimEnv, SimObservation
from wp_policy.sim.episodes import EpisodeResult, EpisodeSpec, Termination
from wp_policy.sim.protocol import WAIT_ACTION, video_filename
from wp_policy.sim.recording import VIDEO_SIZE, EpisodeRecorder, write_video

__all__ = ["Actor", "EpisodeResult", "EpisodeSpec", "PolicyActor", "reset_episode", "run_episode",
           "sim_obs_to_obsset", "step_stamp_ns", "write_video"]


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


class Actor:
    """Decides each policy step's action; :func:`run_episode` does the rest of the episode's bookkeeping.

    Set ``robot`` (and ``replan``, recorded in the result) and implement :meth:`act`; the other hooks default to
    doing nothing. :class:`PolicyActor` runs the policy in this process; the LIBERO bridge node's actors get the
    action from the ROS graph (lock-step or wall-clock).
    """

    robot: RobotConfig
    replan: ReplanConfig = ReplanConfig()

    def begin(self, spec: EpisodeSpec, instruction: str, recorder: EpisodeRecorder) -> None:
        """After the reset, before the wait steps: start this episode's state (plans go to ``recorder``)."""

    def wait_step(self, step: int) -> None:
        """Before wait step ``step`` (0-based) is simulated."""

    def act(self, step: int, obs: SimObservation) -> np.ndarray | None:
        """The action for policy step ``step`` from ``obs``, or None when the policy stopped; plans made for this
        step are in the recorder before it returns (the step's video frame shows them)."""
        raise NotImplementedError

    def latencies(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """This episode's (plan, fill) wall seconds per model call; empty where the models run elsewhere."""
        return (), ()


class PolicyActor(Actor):
    """The policy in this process (what ``wp-eval`` runs): a :class:`WaypointRunner` with ``replan`` (the settings
    the filler node takes), plans and fills computed synchronously and timed."""

    def __init__(self, policy, replan: ReplanConfig = ReplanConfig()):
        self.policy, self.replan, self.robot = policy, replan, policy.robot

    def begin(self, spec: EpisodeSpec, instruction: str, recorder: EpisodeRecorder) -> None:
        self._wait_steps, self._instruction, self._recorder = spec.num_wait_steps, instruction, recorder
        self._plan_s: list[float] = []
        self._fill_s: list[float] = []
        self._runner = WaypointRunner(self._fill, self.replan.strategy(self.robot.control_hz))

    def act(self, step: int, obs: SimObservation) -> np.ndarray | None:
        stamp = step_stamp_ns(self._wait_steps + step, self.robot.control_hz)
        obs_set = sim_obs_to_obsset(obs, self.robot, stamp)
        runner = self._runner
        if runner.needs_plan:
            self._load_plan(obs_set, step)
        action = runner.step(obs_set)
        if action is not None and runner.wants_early_plan:
            self._load_plan(obs_set, step)
        return action  # None: a stop plan (first waypoint, or a later d = 0 reached)

    def latencies(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self._plan_s), tuple(self._fill_s)

    def _load_plan(self, obs_set: ObsSet, step: int) -> None:
        self._runner.request_plan()
        t0 = time.perf_counter()
        plan = self.policy.plan(obs_set, self._instruction)
        self._plan_s.append(time.perf_counter() - t0)
        self._runner.load_plan(plan)
        self._recorder.add_plan(step, plan)

    def _fill(self, obs_set: ObsSet, start: np.ndarray, end: np.ndarray, duration: int) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.policy.fill(obs_set, self._instruction, start, end, duration)
        self._fill_s.append(time.perf_counter() - t0)
        return out


def run_episode(env: SimEnv, spec: EpisodeSpec, actor: Actor, *, instruction: str = "",
                video_dir: str | Path | None = None, video_size: int = VIDEO_SIZE) -> EpisodeResult:
    """Run one episode (see the module docstring); ``instruction``: empty for the task's own; ``video_dir``: folder
    for the episode's MP4, or None; ``video_size``: pixels per view in the video."""
    started = time.perf_counter()
    robot = actor.robot
    instruction = instruction or env.task(spec.task).instruction  # an unknown task fails before the sim runs
    recorder = EpisodeRecorder(env, robot, instruction, spec.max_steps, video_size if video_dir is not None else None)
    obs = reset_episode(env, spec)
    actor.begin(spec, instruction, recorder)
    for w in range(spec.num_wait_steps):
        actor.wait_step(w)
        obs = env.step(WAIT_ACTION).obs
    actions = []
    termination: Termination = "max_steps"
    for k in range(spec.max_steps):
        action = actor.act(k, obs)
        recorder.observe(k, obs)
        if action is None:  # the policy stopped: see the module docstring
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
    if video_dir is not None:
        video = str(recorder.write_video(Path(video_dir) / video_filename(spec.task, spec.trial, success),
                                         termination))
    plan_s, fill_s = actor.latencies()
    return EpisodeResult(
        task=spec.task, trial=spec.trial, seed=spec.seed, success=success, steps=len(actions),
        termination=termination,
        actions=np.stack(actions) if actions else np.zeros((0, robot.action.dim), dtype=np.float64),
        plan_latency_s=plan_s, fill_latency_s=fill_s, video=video, **actor.replan.params(),
        init_state=spec.init_state, num_plans=len(recorder.plans), episode_s=time.perf_counter() - started,
        proprio=recorder.proprio, plans=recorder.plans,
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
