"""WaypointRunner state machine: pairs, stops and replan modes, with a recording interpolation filler."""

import numpy as np
import pytest

from wp_policy.obs_sync import ObsSet
from wp_policy.runtime import Plan, Waypoint, WaypointRunner
from wp_policy.runtime.replan import AfterLast, Lookahead


class RecordingFill:
    """Linear interpolation between start and end (a real joint-space filler), recording every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, obs, start, end, duration):
        self.calls.append((obs.stamp_ns, start.copy(), end.copy(), duration))
        alphas = np.arange(1, 33)[:, None] / duration
        return start + np.clip(alphas, 0, 1) * (end - start)


def obs(t, proprio=(0.0, 0.0)):
    return ObsSet(stamp_ns=t, images={}, proprio=np.asarray(proprio, float))


def plan(*pairs, stamp=0):
    return Plan(tuple(Waypoint(np.asarray(p, float), d) for p, d in pairs), stamp)


def run(runner, n, start_t=0):
    out = []
    for t in range(start_t, start_t + n):
        out.append(runner.step(obs(t)))
    return out


def test_after_last_executes_pairs_then_asks_for_a_plan():
    fill = RecordingFill()
    r = WaypointRunner(fill, AfterLast())
    assert r.needs_plan
    r.load_plan(plan(([3.0, 3.0], 3), ([5.0, 5.0], 2)))
    actions = run(r, 6)
    assert [a is None for a in actions] == [False] * 5 + [True]
    np.testing.assert_allclose(actions[2], [3.0, 3.0])  # pair 1 reaches its end waypoint at d_1
    np.testing.assert_allclose(actions[4], [5.0, 5.0])
    assert [c[3] for c in fill.calls] == [3, 2]
    np.testing.assert_array_equal(fill.calls[0][1], [0.0, 0.0])  # first pair starts at the measured proprio
    np.testing.assert_array_equal(fill.calls[1][1], [3.0, 3.0])  # then at the previous waypoint
    assert fill.calls[1][0] == 3  # filled with the observation of the tick it starts on
    assert r.needs_plan and not r.stopped


def test_measured_pair_starts_fill_every_pair_from_the_proprio_of_its_first_tick():
    fill = RecordingFill()
    r = WaypointRunner(fill, AfterLast(measured_starts=True))
    r.load_plan(plan(([3.0, 3.0], 3), ([5.0, 5.0], 2)))
    lagging = [r.step(obs(t, (0.5 * t, 0.5 * t))) for t in range(5)]  # the arm covers half of each step
    assert all(a is not None for a in lagging)
    assert [c[0] for c in fill.calls] == [0, 3]
    np.testing.assert_array_equal(fill.calls[1][1], [1.5, 1.5])  # from where the arm was, not from [3, 3]
    np.testing.assert_array_equal(fill.calls[1][2], [5.0, 5.0])
    np.testing.assert_allclose(lagging[4], [5.0, 5.0])  # the pair still ends at its waypoint


def test_operator_stop_drops_everything():
    r = WaypointRunner(RecordingFill())
    r.load_plan(plan(([1.0, 1.0], 10)))
    assert r.step(obs(0)) is not None
    r.load_plan(plan(([9.0, 9.0], 0)))
    assert r.stopped and r.step(obs(1)) is None and not r.needs_plan
    assert not r.load_plan(plan(([1.0, 1.0], 2)))  # a stop is latched: a later plan is ignored ...
    assert r.stopped and r.step(obs(2)) is None
    r.reset()  # ... until the caller resets (resume / new instruction)
    assert r.load_plan(plan(([1.0, 1.0], 2))) and not r.stopped and r.step(obs(3)) is not None


def test_model_stop_mid_plan_runs_the_pairs_before_it():
    fill = RecordingFill()
    r = WaypointRunner(fill)
    r.load_plan(plan(([1.0, 1.0], 2), ([1.0, 1.0], 0), ([7.0, 7.0], 4)))
    actions = run(r, 4)
    assert [a is None for a in actions] == [False, False, True, True]
    assert r.stopped and not r.needs_plan and len(fill.calls) == 1


def test_lookahead_prefills_and_requests_the_next_plan_early():
    fill = RecordingFill()
    r = WaypointRunner(fill, Lookahead())
    r.load_plan(plan(([2.0, 2.0], 2), ([4.0, 4.0], 3)))
    first = r.step(obs(0))
    assert first is not None and len(fill.calls) == 2  # pair 2 filled while pair 1 runs
    assert fill.calls[1][0] == 0 and not r.wants_early_plan
    r.step(obs(1))
    r.step(obs(2))  # pair 2 (the last) starts: time to ask for the next plan
    assert r.wants_early_plan
    r.plan_requested = True
    assert not r.wants_early_plan
    r.load_plan(plan(([8.0, 8.0], 2)))  # arrives while pair 2 is still running
    rest = run(r, 4, start_t=3)
    assert all(a is not None for a in rest)
    np.testing.assert_allclose(rest[1], [4.0, 4.0])  # pair 2 finished first
    np.testing.assert_array_equal(fill.calls[-1][1], [4.0, 4.0])  # new plan starts at pair 2's end
    np.testing.assert_allclose(rest[3], [8.0, 8.0])


def test_lookahead_and_after_last_give_the_same_actions_for_the_same_observations():
    p = plan(([2.0, 1.0], 2), ([4.0, -1.0], 3), ([0.0, 0.0], 1))
    outs = []
    for strategy in (AfterLast(), Lookahead()):
        r = WaypointRunner(RecordingFill(), strategy)
        r.load_plan(p)
        outs.append(np.stack(run(r, 6)))
    np.testing.assert_allclose(outs[0], outs[1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="duration must be >= 0"):
        Waypoint(np.zeros(2), -1)
    with pytest.raises(ValueError, match="NaN"):
        Waypoint(np.array([np.nan, 0.0]), 3)
    r = WaypointRunner(lambda o, s, e, d: np.zeros((1, 2)))
    r.load_plan(plan(([1.0, 1.0], 5)))
    with pytest.raises(ValueError, match="fill returned 1 actions for a pair of duration 5"):
        r.step(obs(0))


def test_plan_time_round_trip():
    p = plan(([1.0], 3), ([2.0], 5), ([3.0], 0))
    times = p.times_from_start(0.05)
    assert times == pytest.approx([0.15, 0.4, 0.4])
    back = Plan.from_times(np.array([[1.0], [2.0], [3.0]]), times, 0.05, 7)
    assert [w.duration for w in back.waypoints] == [3, 5, 0]
    assert Plan.from_times(np.array([[1.0]]), [0.0], 0.05, 0).is_stop
    with pytest.raises(ValueError, match="must not decrease"):
        Plan.from_times(np.zeros((2, 1)), [0.2, 0.1], 0.05, 0)


def test_pairs_per_plan_runs_the_first_pairs_then_asks_again():
    fill = RecordingFill()
    r = WaypointRunner(fill, AfterLast(pairs_per_plan=2))
    r.load_plan(plan(([1.0, 1.0], 2), ([2.0, 2.0], 2), ([3.0, 3.0], 2), ([3.0, 3.0], 0)))
    actions = run(r, 5)
    assert [a is None for a in actions] == [False] * 4 + [True]
    np.testing.assert_allclose(actions[3], [2.0, 2.0])  # ends at waypoint 2: waypoint 3 and the stop are dropped
    assert r.needs_plan and not r.stopped and [c[3] for c in fill.calls] == [2, 2]
    r.load_plan(plan(([5.0, 5.0], 1), ([5.0, 5.0], 0)))  # a stop within the first N pairs still stops
    assert run(r, 2)[1] is None and r.stopped


def test_pairs_per_plan_limits_lookahead_plans_too():
    fill = RecordingFill()
    r = WaypointRunner(fill, Lookahead(pairs_per_plan=1, lead_ticks=0))
    r.load_plan(plan(([1.0, 1.0], 3), ([2.0, 2.0], 3)))
    assert r.remaining_ticks == 3 and r.step(obs(0)) is not None
    assert not r.wants_early_plan  # the only kept pair is running, but obs 0 is what this plan came from
    r.step(obs(1))
    assert r.wants_early_plan
    r.request_plan()
    r.load_plan(plan(([4.0, 4.0], 4), ([9.0, 9.0], 4)))  # due 4 ticks after obs 1: 3 ticks after the queue ends
    assert r.remaining_ticks == 1 + 3
    actions = run(r, 4, start_t=2)
    np.testing.assert_allclose(actions[-1], [4.0, 4.0])
    assert r.needs_plan
