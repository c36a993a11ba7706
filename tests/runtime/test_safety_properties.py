"""Property-based: random plans, fills, feedback and stops thrown at the runner + SafetyFilter (the filler's command
path, without ROS). Whatever arrives, every command sent is finite, within the robot's limits and within max_step of
the previous one, and nothing but holds is sent while stopped: no plan, however valid, restarts a stopped runner.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import load_robot_config
from wp_policy.runtime import Plan, Waypoint, WaypointRunner
from wp_policy.safety import SafetyFilter

ROBOTS = {name: load_robot_config(name) for name in ("r1lite", "libero")}
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e9, -1e9, 0.0])


def values(n: int, special: bool):
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    item = st.one_of(finite, SPECIAL) if special else finite
    return st.lists(item, min_size=n, max_size=n).map(np.array)


@st.composite
def events(draw, robot_name: str):
    robot = ROBOTS[robot_name]
    p, a = robot.proprio.dim, robot.action.dim
    plan = st.tuples(st.just("plan"), st.lists(st.tuples(values(p, False), st.integers(0, 32)), min_size=1,
                                                max_size=4))
    feedback = st.tuples(st.just("feedback"), st.one_of(values(p, True), values(p + 1, False), values(2, False)))
    fill = st.tuples(st.just("fill"), st.one_of(values(a, True), values(a, False), values(a - 1, False)))
    ops = st.one_of(plan, feedback, fill, st.just(("tick",)), st.just(("tick",)), st.just(("stop",)),
                    st.just(("resume",)))
    return draw(st.lists(ops, min_size=1, max_size=60))


class ScriptedFill:
    """Fills chunks with the last action the script chose (possibly NaN, infinite, huge or the wrong size)."""

    def __init__(self, dim: int):
        self.action = np.zeros(dim)

    def __call__(self, obs, start, end, duration):
        return np.tile(self.action, (max(duration, 1), 1))


def run_script(robot_name: str, script: list) -> None:
    robot = ROBOTS[robot_name]
    fill = ScriptedFill(robot.action.dim)
    runner = WaypointRunner(fill)
    safety = SafetyFilter.from_robot(robot, obs_timeout=1e9, feedback_timeout=1e9)
    lim = robot.limits
    now, stamp, previous, stopped = 0.0, 0, None, False
    measured = (np.asarray(lim.lower) + np.asarray(lim.upper)) / 2  # a valid start, for position robots' holds
    safety.observe_feedback(np.zeros(robot.proprio.dim) if robot.action_kind == "delta_eef" else
                            _proprio_of(robot, measured), now)
    for op in script:
        now += robot.control_period
        stamp += 1
        if op[0] == "plan":
            plan = Plan(tuple(Waypoint(np.asarray(v, np.float64), d) for v, d in op[1]), stamp)
            accepted = runner.load_plan(plan)
            assert accepted is not stopped  # a stopped runner takes no plan, whatever it holds
            stopped = stopped or plan.is_stop
        elif op[0] == "feedback":
            safety.observe_feedback(op[1], now)
        elif op[0] == "fill":
            fill.action = op[1]
        elif op[0] == "stop":
            runner.stop()
            stopped = True
        elif op[0] == "resume":
            runner.reset()
            stopped = False
        else:
            obs = ObsSet(stamp_ns=stamp, images={}, proprio=np.zeros(robot.proprio.dim), received=now)
            safety.observe_obs(now)
            try:
                action = runner.step(obs)
            except ValueError:  # a fill of the wrong size: the filler drops the plan and holds
                runner.reset()
                action = None
            stopped = stopped or runner.stopped
            if stopped:
                assert action is None and runner.stopped
            decision = safety.check(action, now) if action is not None else safety.hold("stopped")
            if decision is None:
                continue
            cmd = decision.action
            assert np.all(np.isfinite(cmd))
            assert np.all(cmd >= np.asarray(lim.lower) - 1e-12) and np.all(cmd <= np.asarray(lim.upper) + 1e-12)
            if previous is not None and lim.max_step is not None:
                assert np.all(np.abs(cmd - previous) <= np.asarray(lim.max_step) + 1e-9)
            if stopped:
                assert decision.hold
                if robot.action_kind == "delta_eef":  # zero motion, gripper as last commanded
                    arm = [d for d in range(robot.action.dim) if d not in robot.action.gripper_dims]
                    assert np.all(cmd[arm] == 0.0)
            previous = cmd


def _proprio_of(robot, action: np.ndarray) -> np.ndarray:
    proprio = np.zeros(robot.proprio.dim)
    for i, name in enumerate(robot.action.names):
        proprio[robot.proprio.names.index(name)] = action[i]
    return proprio


@pytest.mark.parametrize("robot_name", sorted(ROBOTS))
def test_random_inputs_never_produce_an_unsafe_command_or_motion_while_stopped(robot_name):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(events(robot_name))
    def check(script):
        run_script(robot_name, script)

    check()
