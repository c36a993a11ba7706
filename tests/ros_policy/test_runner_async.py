"""WaypointRunner features the nodes rely on: pending (threaded) fills, lookahead splicing on the plan's clock,
lead time, reset, and that a caller who waits for every result gets exactly the synchronous loop's actions."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import pytest

from wp_policy.obs_sync import ObsSet
from wp_policy.runtime import Plan, Waypoint, WaypointRunner
from wp_policy.runtime.replan import AfterLast, Lookahead


def obs(t, proprio=(0.0,)):
    return ObsSet(stamp_ns=t, images={}, proprio=np.asarray(proprio, float))


def plan(*pairs, stamp=0):
    return Plan(tuple(Waypoint(np.asarray([p], float), d) for p, d in pairs), stamp)


def ramp(o, start, end, duration):
    """Linear interpolation: the k-th action of a pair is start + k/d (end - start)."""
    return start + np.arange(1, duration + 1)[:, None] / duration * (end - start)


class Recorder:
    def __init__(self, fn=ramp):
        self.fn, self.calls = fn, []

    def __call__(self, o, start, end, duration):
        self.calls.append((o.stamp_ns, float(start[0]), float(end[0]), duration))
        return self.fn(o, start, end, duration)


class Deferred:
    """Fills as futures that complete only when :meth:`finish` is called (a worker thread, made explicit)."""

    def __init__(self):
        self.pending: list[tuple[Future, tuple]] = []

    def __call__(self, o, start, end, duration):
        future = Future()
        self.pending.append((future, (o, start, end, duration)))
        return future

    def finish(self):
        for future, args in self.pending:
            future.set_result(ramp(*args))
        self.pending.clear()


def test_pending_fill_returns_none_until_done_and_retrying_the_tick_is_harmless():
    fill = Deferred()
    r = WaypointRunner(fill)
    r.load_plan(plan((2.0, 2)))
    assert r.step(obs(0)) is None and r.fill_pending and len(fill.pending) == 1
    assert r.step(obs(0)) is None and len(fill.pending) == 1  # same tick again: no second fill
    fill.finish()
    assert not r.fill_pending
    np.testing.assert_allclose(r.step(obs(0)), [1.0])
    np.testing.assert_allclose(r.step(obs(1)), [2.0])
    assert r.needs_plan


def test_fill_errors_reach_the_caller():
    future = Future()
    future.set_exception(RuntimeError("model exploded"))
    r = WaypointRunner(lambda *a: future)
    r.load_plan(plan((1.0, 3)))
    with pytest.raises(RuntimeError, match="model exploded"):
        r.step(obs(0))


@pytest.mark.parametrize("ticks_after, first", [(0, (1.0, 3.0, 3)), (1, (1.0, 3.0, 4)), (3, (1.0, 2.0, 2))])
def test_lookahead_splices_the_answer_on_the_plans_clock(ticks_after, first):
    fill = Recorder()
    r = WaypointRunner(fill, Lookahead())
    r.load_plan(plan((1.0, 5)))
    r.step(obs(0))
    r.step(obs(1))  # 3 actions left of the only (last) pair
    assert r.wants_early_plan and r.remaining_ticks == 3
    r.request_plan()
    assert not r.wants_early_plan
    # planned from the requesting tick's observation (+ ticks_after): waypoints due at 2, 6 and 9 ticks
    r.load_plan(plan((2.0, 2), (3.0, 4), (4.0, 3)), ticks_after_request=ticks_after)
    for t in range(2, 14):
        r.step(obs(t))
    # waypoints due before the queue ends (3 ticks after the request) are dropped; the first kept one is reached
    # from the queue's last waypoint in the ticks left until it is due
    assert fill.calls[1][1:] == first
    assert fill.calls[1][0] == 2  # filled with the first tick that had it queued behind the running pair


def test_lead_ticks_ask_for_the_plan_before_the_last_pair():
    r = WaypointRunner(ramp, Lookahead(lead_ticks=4))
    r.load_plan(plan((1.0, 3), (2.0, 3)))
    r.step(obs(0))
    assert r.remaining_ticks == 5 and not r.wants_early_plan
    r.step(obs(1))
    assert r.remaining_ticks == 4 and r.wants_early_plan  # still in the first pair
    r.load_plan(plan((1.0, 3), (5.0, 0)))  # a plan that ends in a stop: no further plan is wanted
    r.step(obs(2))
    assert not r.wants_early_plan


def test_unrequested_plan_replaces_the_queue_from_the_measured_position():
    fill = Recorder()
    r = WaypointRunner(fill, Lookahead())
    r.load_plan(plan((5.0, 4), (6.0, 4)))
    r.step(obs(0, proprio=(0.5,)))
    r.load_plan(plan((9.0, 2)))  # e.g. an operator's plan: nobody asked for it
    r.step(obs(1, proprio=(0.7,)))
    assert fill.calls[-1] == (1, 0.7, 9.0, 2)


def test_stop_plan_reset_and_needs_plan():
    r = WaypointRunner(ramp)
    r.load_plan(plan((1.0, 4)))
    r.step(obs(0))
    r.load_plan(plan((1.0, 0)))
    assert r.stopped and r.step(obs(1)) is None and not r.needs_plan
    r.reset()
    assert not r.stopped and r.needs_plan and r.remaining_ticks == 0


def test_fill_lead_ticks_fill_short_pairs_early_enough():
    """At a high control rate a 1-tick pair cannot hide the next fill: fill whatever starts within the lead."""
    fill = Recorder()
    r = WaypointRunner(fill, Lookahead(fill_lead_ticks=2))
    r.load_plan(plan((1.0, 3), (2.0, 1), (3.0, 1), (4.0, 4)))
    for t in range(3):
        r.step(obs(t))
    # pair 1 is next from tick 0; pair 2 starts within 2 ticks from tick 1; pair 3 from tick 2
    assert [(c[0], c[2]) for c in fill.calls] == [(0, 1.0), (0, 2.0), (1, 3.0), (2, 4.0)]


@pytest.mark.parametrize("strategy", [AfterLast(), Lookahead(lead_ticks=2)], ids=["after_last", "lookahead"])
def test_waiting_for_every_result_gives_the_synchronous_actions(strategy):
    """What the lock-step filler does (threaded fills, remote plans loaded before the next tick) equals the
    direct loop (everything synchronous), tick for tick."""
    plans = iter([plan((1.0, 3), (2.0, 2), stamp=k) for k in range(20)])
    planner = lambda o: Plan(next(plans).waypoints, o.stamp_ns)  # noqa: E731

    def run(runner, finish):
        out = []
        for t in range(25):
            o = obs(t, proprio=(0.1 * t,))
            action = runner.step(o)
            while action is None:
                if runner.needs_plan:
                    runner.request_plan()
                    runner.load_plan(planner(o))
                finish()
                action = runner.step(o)
            if runner.wants_early_plan:
                runner.request_plan()
                runner.load_plan(planner(o))
            out.append(action)
        return np.stack(out)

    sync = run(WaypointRunner(ramp, strategy), lambda: None)
    plans = iter([plan((1.0, 3), (2.0, 2), stamp=k) for k in range(20)])
    deferred = Deferred()
    np.testing.assert_array_equal(run(WaypointRunner(deferred, strategy), deferred.finish), sync)
