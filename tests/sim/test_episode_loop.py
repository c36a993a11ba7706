"""The one episode loop (``wp_policy.sim.rollout.run_episode``) with a tiny fake env and a scripted actor: wait steps,
the budget, success, the policy's stop and what each leaves in the result and the video. No simulator, no ROS."""

from __future__ import annotations

import numpy as np
import pytest

import wp_policy.sim.recording as recording
from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.sim.base import SimEnv, SimObservation, StepResult, TaskSpec
from wp_policy.sim.protocol import WAIT_ACTION
from wp_policy.sim.recording import END_HOLD_FRAMES
from wp_policy.sim.rollout import Actor, EpisodeSpec, run_episode

BUDGET = 6


class CountingEnv(SimEnv):
    """Every step adds one to state[0] (so an observation says how many steps came before it); the task is solved
    by the ``success_at``-th step (0: never)."""

    def __init__(self, success_at: int = 0):
        self.success_at, self.received, self.resets = success_at, [], []
        self._count = 0

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return (TaskSpec("Reach", "reach the goal", BUDGET),)

    def reset(self, task, *, init_state=None, seed=None) -> SimObservation:
        self.resets.append((task, seed))
        self._count = 0
        return self._obs()

    def step(self, action) -> StepResult:
        self.received.append(np.asarray(action, dtype=np.float64))
        self._count += 1
        return StepResult(self._obs(), 0.0, self._count == self.success_at)

    def close(self) -> None:
        pass

    def _obs(self) -> SimObservation:
        state = np.zeros(8, dtype=np.float32)
        state[0] = self._count
        image = np.full((64, 64, 3), self._count, dtype=np.uint8)
        return SimObservation({"primary": image, "wrist": image}, state, "reach the goal")


class ScriptedActor(Actor):
    """Action k is ``[k / 10, 0, .., 0, 1]``; ``stop_at``: the step the policy stops at (None: never). Logs every
    call, and plans once at step 0 (so the result counts one plan)."""

    def __init__(self, robot, stop_at: int | None = None):
        self.robot, self.stop_at, self.calls = robot, stop_at, []
        self.replan = ReplanConfig("lookahead", pairs_per_plan=2)

    def begin(self, spec, instruction, recorder):
        self.calls.append(("begin", instruction))
        self.recorder = recorder

    def wait_step(self, step):
        self.calls.append(("wait", step))

    def act(self, step, obs):
        self.calls.append(("act", step, int(obs.state[0])))
        if step == 0:
            proprio = np.zeros(self.robot.proprio.dim)
            self.recorder.add_plan(step, Plan((Waypoint(proprio, 3),), 1))
        if step == self.stop_at:
            return None
        return np.array([step / 10, 0, 0, 0, 0, 0, 1.0])

    def latencies(self):
        return (0.5,), (0.25, 0.125)


@pytest.fixture
def videos(monkeypatch):
    """The frames each episode video would hold (encoding skipped: the frames are what the loop decides)."""
    written = {}

    def capture(frames, path, fps=recording.VIDEO_FPS):
        written[path.name] = list(frames)
        return path

    monkeypatch.setattr(recording, "write_video", capture)
    return written


def run(env, actor, wait=2, budget=BUDGET, tmp_path=None, **kwargs):
    spec = EpisodeSpec("Reach", 0, seed=5, max_steps=budget, num_wait_steps=wait)
    return run_episode(env, spec, actor, video_dir=tmp_path, video_size=64, **kwargs)


def test_wait_steps_come_first_and_the_actor_sees_the_settled_observation(libero_config):
    env, actor = CountingEnv(), ScriptedActor(libero_config)
    result = run(env, actor, wait=3, budget=2)
    assert env.resets == [("Reach", 5)]
    assert actor.calls == [("begin", "reach the goal"), ("wait", 0), ("wait", 1), ("wait", 2),
                           ("act", 0, 3), ("act", 1, 4)]
    np.testing.assert_array_equal(env.received[:3], [WAIT_ACTION] * 3)
    np.testing.assert_array_equal(result.actions, env.received[3:])  # the wait steps are not policy actions
    assert result.proprio[0, 0] == 3  # the first observation recorded is the one the policy acted on


def test_max_steps_ends_the_episode_with_the_final_observation_recorded(libero_config, videos, tmp_path):
    env, actor = CountingEnv(), ScriptedActor(libero_config)
    result = run(env, actor, tmp_path=tmp_path)
    assert (result.termination, result.success, result.steps) == ("max_steps", False, BUDGET)
    assert result.actions.dtype == np.float64 and result.actions.shape == (BUDGET, 7)
    np.testing.assert_array_equal(result.actions[:, 0], np.arange(BUDGET) / 10)
    assert result.proprio.shape == (BUDGET + 1, 8) and result.proprio[-1, 0] == 2 + BUDGET
    assert result.video == str(tmp_path / "rollout_Reach_t0_failure.mp4")
    assert len(videos["rollout_Reach_t0_failure.mp4"]) == BUDGET + END_HOLD_FRAMES
    # what the actor owns: its replan settings and latencies; the plans it recorded
    assert (result.replan_mode, result.pairs_per_plan) == ("lookahead", 2)
    assert (result.plan_latency_s, result.fill_latency_s) == ((0.5,), (0.25, 0.125))
    assert result.num_plans == 1 and [p.step for p in result.plans] == [0]
    assert (result.task, result.trial, result.seed, result.init_state) == ("Reach", 0, 5, None)


def test_success_ends_the_episode_at_once(libero_config, videos, tmp_path):
    env, actor = CountingEnv(success_at=2 + 3), ScriptedActor(libero_config)  # solved by the third policy step
    result = run(env, actor, tmp_path=tmp_path)
    assert (result.termination, result.success, result.steps) == ("success", True, 3)
    assert [c[1] for c in actor.calls if c[0] == "act"] == [0, 1, 2]  # nothing runs after the success
    assert len(env.received) == 2 + 3
    assert result.proprio.shape == (3 + 1, 8) and result.proprio[-1, 0] == 5  # the solved scene is recorded
    assert len(videos["rollout_Reach_t0_success.mp4"]) == 3 + END_HOLD_FRAMES


def test_a_stop_ends_the_episode_with_one_final_frame(libero_config, videos, tmp_path):
    env, actor = CountingEnv(), ScriptedActor(libero_config, stop_at=2)
    result = run(env, actor, tmp_path=tmp_path)
    assert (result.termination, result.success, result.steps) == ("stopped", False, 2)
    assert len(env.received) == 2 + 2  # the stop step sends nothing to the env
    # the stop step's observation is the last one: recorded once, not again as a final observation
    assert result.proprio.shape == (2 + 1, 8) and result.proprio[-1, 0] == 4
    assert len(videos["rollout_Reach_t0_failure.mp4"]) == 2 + END_HOLD_FRAMES
    stopped_at_once = run(CountingEnv(), ScriptedActor(libero_config, stop_at=0))
    assert (stopped_at_once.steps, stopped_at_once.actions.shape) == (0, (0, 7))
    assert stopped_at_once.proprio.shape == (1, 8) and stopped_at_once.video is None


def test_an_instruction_override_reaches_the_actor_and_an_unknown_task_fails_before_the_reset(libero_config):
    env, actor = CountingEnv(), ScriptedActor(libero_config)
    run(env, actor, budget=1, instruction="reach it slowly")
    assert actor.calls[0] == ("begin", "reach it slowly")
    with pytest.raises(KeyError, match="unknown task 'Open'"):
        run_episode(env, EpisodeSpec("Open", 0, seed=1), actor)
    assert len(env.resets) == 1
