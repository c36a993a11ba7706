"""FillerCore, the filler node's state machine without ROS: holds and their reasons, the stop latch, plan loading and
execution tick by tick, plan requests and their retries, the lock-step queue and timelines."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future

import numpy as np
import pytest

from wp_policy.obs_sync import ObsSet
from wp_policy.runtime.filler_core import (MAX_PENDING, ChunkStarted, Command, FillerCore, LatchChanged,
                                           PlanRequest)
from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.runtime.replan import ReplanConfig
from wp_policy.safety import HoldReason, SafetyFilter

MS = 1_000_000
PERIOD_MS = 50  # LIBERO's 20 Hz
OBS_TIMEOUT, FEEDBACK_TIMEOUT, RETRY_S = 0.5, 0.2, 2.0


class Report:
    def __init__(self):
        self.counts, self.events, self.latencies, self.alerts = Counter(), Counter(), [], 0

    def count(self, key, n=1):
        self.counts[key] += n

    def event(self, key):
        self.events[key] += 1

    def latency(self, key, seconds):
        self.latencies.append((key, seconds))

    def alert(self):
        self.alerts += 1


class Logger:
    def __init__(self):
        self.lines = []

    def info(self, message, **kwargs):
        self.lines.append(("info", message, kwargs))

    def warning(self, message, **kwargs):
        self.lines.append(("warning", message, kwargs))

    def error(self, message, **kwargs):
        self.lines.append(("error", message, kwargs))


class Steady:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def tagged_fill(obs, start, end, duration):
    """Chunk k of a pair ending at end[0] = e: action [e, k/1000, 0, ...]: every action says where it came from."""
    actions = np.zeros((duration, 7))
    actions[:, 0] = end[0]
    actions[:, 1] = np.arange(duration) / 1000
    return actions


class Deferred:
    """Fills as futures that finish only on :meth:`finish` (the node's worker thread, made explicit)."""

    def __init__(self):
        self.pending = []

    def __call__(self, obs, start, end, duration):
        future = Future()
        self.pending.append((future, tagged_fill(obs, start, end, duration)))
        return future

    def finish(self):
        for future, result in self.pending:
            future.set_result(result)
        self.pending.clear()


def obs(t_ms, received=0.0):
    return ObsSet(stamp_ns=t_ms * MS, images={}, proprio=np.zeros(8), received=received)


def plan(stamp_ms, *ends_and_durations):
    return Plan(tuple(Waypoint(np.full(8, e), d) for e, d in ends_and_durations), stamp_ms * MS)


def make(robot, lockstep=False, fill=tagged_fill, mode="after_last", instruction="lift"):
    report, log, steady = Report(), Logger(), Steady()
    core = FillerCore(robot, fill, ReplanConfig(mode=mode), report, log, lockstep=lockstep, obs_timeout=OBS_TIMEOUT,
                      feedback_timeout=FEEDBACK_TIMEOUT, replan_retry_s=RETRY_S, instruction=instruction,
                      monotonic=steady)
    return core, report, log, steady


def fresh(core, t_ms):
    """Wall clock: an observation set and complete feedback at t_ms, both received at t_ms."""
    core.on_feedback(np.zeros(8), t_ms * 1e-3)
    return core.on_obs(obs(t_ms), t_ms * MS)


def commands(outputs):
    return [o for o in outputs if isinstance(o, Command)]


def requests(outputs):
    return [o.stamp_ns for o in outputs if isinstance(o, PlanRequest)]


def hold_reason(outputs):
    (cmd,) = commands(outputs)
    assert cmd.decision.hold, cmd
    return cmd.decision.reason


def action(outputs):
    (cmd,) = commands(outputs)
    assert not cmd.decision.hold, cmd
    return cmd.decision.action


# ---- wall clock ------------------------------------------------------------------------------------------------
def test_wall_clock_runs_a_plan_tick_by_tick_then_asks_for_the_next(libero_config):
    core, report, _, _ = make(libero_config)
    fresh(core, 0)
    out = core.tick(0)
    assert hold_reason(out) == HoldReason.WAITING_PLAN and requests(out) == [0]
    assert commands(out)[0].stamp_ns == 0
    assert core.on_plan(plan(0, (0.3, 3), (0.5, 2)), 10 * MS) == []  # wall clock: the next tick acts on it
    executed, chunks, sent = [], [], []
    for k in range(1, 6):
        fresh(core, k * PERIOD_MS)
        out = core.tick(k * PERIOD_MS * MS)
        executed.append(action(out)[:2].tolist())
        chunks += [o.chunk for o in out if isinstance(o, ChunkStarted)]
        sent += requests(out)
    assert executed == [[0.3, 0.0], [0.3, 0.001], [0.3, 0.002], [0.5, 0.0], [0.5, 0.001]]
    assert [c.stamp_ns for c in chunks] == [50 * MS, 200 * MS]  # each chunk filled at the tick it starts on
    assert sent == [250 * MS]  # after_last: asked on the tick that runs the last action
    fresh(core, 300)
    out = core.tick(300 * MS)
    assert hold_reason(out) == HoldReason.WAITING_PLAN and requests(out) == []  # one open request at a time
    assert report.counts["starved"] == 1 and report.counts["plans_loaded"] == 1 and report.counts["chunks"] == 2
    assert report.counts["hold.waiting_plan"] == 2 and report.counts["commands"] == 7


def test_first_command_latency_counts_from_the_set_the_plan_was_made_from(libero_config):
    core, report, _, _ = make(libero_config)
    core.on_feedback(np.zeros(8), 0.0)
    core.on_obs(obs(0, received=0.01), 10 * MS)
    core.tick(20 * MS)
    core.on_plan(plan(0, (0.3, 2)), 30 * MS)
    core.tick(40 * MS)
    core.tick(50 * MS)
    assert report.latencies == [("obs_to_first_command", pytest.approx(0.03))]  # once, for the first action


def test_stale_observations_hold_and_drop_the_plan(libero_config):
    core, report, log, _ = make(libero_config)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 20)), 0)
    assert not commands(core.tick(PERIOD_MS * MS))[0].decision.hold
    core.on_feedback(np.zeros(8), 0.6)  # feedback keeps coming, the observations stopped at 0
    out = core.tick(600 * MS)
    assert hold_reason(out) == HoldReason.STALE_OBS and requests(out) == []
    assert core.runner.needs_plan  # the plan is gone: a fresh one is needed once the inputs recover
    assert log.lines[-1] == ("warning", "stale_obs: dropping the plan and holding", {"throttle_duration_sec": 1.0})
    fresh(core, 700)
    out = core.tick(700 * MS)
    assert hold_reason(out) == HoldReason.WAITING_PLAN and requests(out) == [700 * MS]
    assert report.counts["hold.stale_obs"] == 1 and report.counts["starved"] == 0


def test_stale_feedback_holds(libero_config):
    core, _, _, _ = make(libero_config)
    fresh(core, 0)
    core.on_obs(obs(300), 300 * MS)  # observations keep coming, the feedback stopped at 0
    assert hold_reason(core.tick(300 * MS)) == HoldReason.STALE_FEEDBACK
    core.on_feedback(np.zeros(8), 0.3)
    assert hold_reason(core.tick(310 * MS)) == HoldReason.WAITING_PLAN


def test_a_stop_latches_holds_at_once_and_drops_later_plans(libero_config):
    core, report, _, _ = make(libero_config)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 20)), 0)
    core.tick(PERIOD_MS * MS)
    out = core.on_stop("stop_topic", 60 * MS)
    assert [type(o) for o in out] == [LatchChanged, Command]  # the latch goes out before the hold
    assert out[0].state.stopped and out[0].state.source == "stop_topic"
    assert hold_reason(out) == HoldReason.STOPPED and out[1].stamp_ns == 60 * MS
    fresh(core, 100)
    assert core.on_plan(plan(100, (0.4, 5)), 110 * MS) == []
    assert report.counts["dropped_plans.stopped"] == 1
    out = core.tick(150 * MS)
    assert hold_reason(out) == HoldReason.STOPPED and requests(out) == []
    assert [type(o) for o in core.on_stop("stop_service", 160 * MS)] == [Command]  # already latched: no change
    assert core.latch.state.source == "stop_topic"


def test_resume_releases_the_latch_and_only_later_plans_move(libero_config):
    core, report, _, _ = make(libero_config)
    assert core.on_resume(0) is None  # not stopped: nothing to resume
    fresh(core, 0)
    core.on_stop("stop_service", 0)
    fresh(core, 50)
    out = core.on_resume(60 * MS)
    assert [type(o) for o in out] == [LatchChanged] and not out[0].state.stopped
    assert core.on_plan(plan(50, (0.3, 3)), 70 * MS) == [] and report.counts["dropped_plans.stale"] == 1
    assert hold_reason(core.tick(80 * MS)) == HoldReason.WAITING_OBS  # the newest set is from before the resume
    fresh(core, 100)
    out = core.tick(100 * MS)
    assert requests(out) == [100 * MS]
    core.on_plan(plan(100, (0.3, 3)), 120 * MS)
    assert action(core.tick(150 * MS))[0] == 0.3


def test_a_new_instruction_releases_the_latch_and_a_repeated_one_changes_nothing(libero_config):
    core, report, log, _ = make(libero_config, instruction="")
    assert core.on_instruction("lift", "pub/1", 0) == []  # not stopped: no latch change
    fresh(core, 0)
    core.on_stop("stop_topic", 0)
    assert core.on_instruction("lift", "pub/1", 10 * MS) == [] and core.latch.engaged  # the same message again
    assert report.counts["ignored.repeated_instruction"] == 1
    out = core.on_instruction("stack", "pub/2", 20 * MS)
    assert [type(o) for o in out] == [LatchChanged] and not core.latch.engaged
    assert core.instruction == "stack" and ("warning", "resumed by a new instruction 'stack'", {}) in log.lines


def test_a_model_stop_latches(libero_config):
    core, _, _, _ = make(libero_config)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 1), (0.0, 0)), 0)
    fresh(core, 50)
    assert action(core.tick(50 * MS))[0] == 0.3
    fresh(core, 100)
    out = core.tick(100 * MS)  # the stop marker is reached
    assert hold_reason(out) == HoldReason.STOPPED and isinstance(out[0], LatchChanged)
    assert core.latch.state.source == "model_stop"


def test_plans_that_are_duplicates_or_from_another_timeline_are_dropped(libero_config):
    core, report, _, _ = make(libero_config)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 3)), 0)
    core.on_plan(plan(0, (0.9, 3)), 0)
    core.on_plan(plan(1200, (0.9, 3)), 0)  # more than a timeline jump past the newest set
    assert report.counts["dropped_plans.duplicate"] == 1 and report.counts["dropped_plans.other_timeline"] == 1
    fresh(core, 50)
    assert action(core.tick(50 * MS))[0] == 0.3


def test_another_writer_holds_until_it_is_gone(libero_config):
    core, report, log, _ = make(libero_config)
    fresh(core, 0)
    core.set_other_writers({"/libero/action": ["/teleop"]})
    core.set_other_writers({"/libero/action": ["/teleop"]})  # the same writer: reported once
    assert [line[0] for line in log.lines] == ["error"] and report.counts["other_writer_detected"] == 1
    out = core.tick(0)
    assert hold_reason(out) == HoldReason.OTHER_WRITER and requests(out) == []
    core.set_other_writers({})
    assert hold_reason(core.tick(10 * MS)) == HoldReason.WAITING_PLAN


def test_a_failed_fill_holds_and_a_new_plan_is_requested(libero_config):
    def broken(*_):
        raise RuntimeError("AE down")

    core, report, log, _ = make(libero_config, fill=broken)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 3)), 0)
    fresh(core, 50)
    out = core.tick(50 * MS)
    assert hold_reason(out) == HoldReason.FILL_ERROR and requests(out) == [50 * MS]
    assert core.take_problem() == "fill failed: RuntimeError: AE down" and core.take_problem() == ""
    assert report.counts["fill_errors"] == 1 and log.lines[-1][0] == "error"


def test_the_wall_clock_holds_while_a_fill_is_pending(libero_config):
    fill = Deferred()
    core, _, _, _ = make(libero_config, fill=fill)
    fresh(core, 0)
    core.tick(0)
    core.on_plan(plan(0, (0.3, 3)), 0)
    fresh(core, 50)
    assert hold_reason(core.tick(50 * MS)) == HoldReason.FILL_PENDING
    fill.finish()
    fresh(core, 100)
    assert action(core.tick(100 * MS))[0] == 0.3


def test_shutdown_holds(libero_config):
    core, _, _, _ = make(libero_config)
    out = core.shutdown_hold(5 * MS)
    assert hold_reason(out) == HoldReason.SHUTDOWN and out[0].stamp_ns == 5 * MS
    np.testing.assert_array_equal(out[0].decision.action, [0, 0, 0, 0, 0, 0, -1])  # LIBERO: no motion, open


# ---- plan requests ---------------------------------------------------------------------------------------------
def test_an_unanswered_request_is_resent_after_replan_retry_s_naming_the_newest_set(libero_config):
    core, report, _, steady = make(libero_config)
    fresh(core, 0)
    assert requests(core.tick(0)) == [0]
    fresh(core, 50)
    assert requests(core.tick(50 * MS)) == []  # one request at a time
    steady.t += RETRY_S - 0.01
    assert core.retry() == []
    steady.t += 0.02
    assert requests(core.retry()) == [50 * MS]  # the planner plans from the newest set anyway
    assert core.retry() == []  # the retry restarted the wait
    steady.t += RETRY_S + 0.01
    assert requests(core.retry()) == [50 * MS]
    assert report.counts["replan_retries"] == 2 and report.counts["replan_requests"] == 3
    core.on_plan(plan(50, (0.3, 3)), 60 * MS)
    steady.t += RETRY_S
    assert core.retry() == []  # answered


def test_lockstep_retries_name_the_same_set(libero_config):
    core, _, _, steady = make(libero_config, lockstep=True)
    assert requests(core.on_obs(obs(0), 0)) == [0]
    core.on_obs(obs(50), 50 * MS)
    steady.t += RETRY_S
    assert requests(core.retry()) == [0]


def test_a_stop_cancels_the_open_request(libero_config):
    core, _, _, steady = make(libero_config)
    fresh(core, 0)
    core.tick(0)
    core.on_stop("stop_topic", 10 * MS)
    steady.t += RETRY_S
    assert core.retry() == []


# ---- lock-step -------------------------------------------------------------------------------------------------
def test_lockstep_serves_each_set_once_in_order_after_its_plan(libero_config):
    core, report, _, _ = make(libero_config, lockstep=True)
    out = core.on_obs(obs(0), 0)
    assert commands(out) == [] and requests(out) == [0]  # the set waits for the plan it asked for
    assert core.on_obs(obs(50), 50 * MS) == []
    out = core.on_plan(plan(0, (0.3, 2), (0.5, 1)), 60 * MS)
    assert [(c.stamp_ns, c.decision.action[0]) for c in commands(out)] == [(0, 0.3), (50 * MS, 0.3)]
    out = core.on_obs(obs(100), 100 * MS)
    assert [(c.stamp_ns, c.decision.action[0]) for c in commands(out)] == [(100 * MS, 0.5)]
    out = core.on_obs(obs(150), 150 * MS)  # the queue is empty: this set asks for the next plan and waits
    assert commands(out) == [] and requests(out) == [150 * MS]
    assert report.counts["starved"] == 0 and report.counts["hold.waiting_plan"] == 0


def test_lockstep_waits_for_a_pending_fill(libero_config):
    fill = Deferred()
    core, _, _, _ = make(libero_config, lockstep=True, fill=fill)
    core.on_obs(obs(0), 0)
    assert commands(core.on_plan(plan(0, (0.3, 2)), 10 * MS)) == [] and len(fill.pending) == 1
    assert core.advance(20 * MS) == []  # woken before the fill is done: nothing changes
    fill.finish()
    out = core.advance(30 * MS)
    assert [c.stamp_ns for c in commands(out)] == [0] and [type(o) for o in out] == [ChunkStarted, Command]


def test_lockstep_overrun_gives_the_oldest_set_a_hold(libero_config):
    core, report, _, _ = make(libero_config, lockstep=True)
    for k in range(MAX_PENDING):
        assert commands(core.on_obs(obs(k * PERIOD_MS), k * PERIOD_MS * MS)) == []
    out = core.on_obs(obs(MAX_PENDING * PERIOD_MS), MAX_PENDING * PERIOD_MS * MS)
    assert hold_reason(out) == HoldReason.OVERRUN and out[0].stamp_ns == 0
    assert report.counts["lockstep_overruns"] == 1


def test_lockstep_stop_gives_every_waiting_set_a_hold(libero_config):
    core, _, _, _ = make(libero_config, lockstep=True)
    core.on_obs(obs(0), 0)
    core.on_obs(obs(50), 50 * MS)
    out = core.on_stop("stop_message", 60 * MS)
    assert [(c.stamp_ns, c.decision.reason) for c in commands(out)] == [(0, HoldReason.STOPPED),
                                                                       (50 * MS, HoldReason.STOPPED)]


def test_lockstep_instruction_gives_older_sets_waiting_obs(libero_config):
    fill = Deferred()
    core, _, _, _ = make(libero_config, lockstep=True, fill=fill)
    core.on_obs(obs(0), 0)
    core.on_plan(plan(0, (0.3, 2)), 10 * MS)  # its fill is pending: the set is still owed a command
    out = core.on_instruction("stack", "pub/9", 20 * MS)
    assert [(c.stamp_ns, c.decision.reason) for c in commands(out)] == [(0, HoldReason.WAITING_OBS)]
    assert requests(core.on_obs(obs(50), 50 * MS)) == [50 * MS]


def test_lockstep_time_jump_flushes_waiting_sets_and_starts_a_new_timeline(libero_config):
    core, report, _, _ = make(libero_config, lockstep=True)
    core.on_obs(obs(5000), 5000 * MS)
    out = core.on_obs(obs(1000), 1000 * MS)  # a simulation reset
    assert [(c.stamp_ns, c.decision.reason) for c in commands(out)] == [(5000 * MS, HoldReason.TIME_JUMP)]
    assert requests(out) == [1000 * MS] and report.counts["time_jumps"] == 1
    assert core.on_plan(plan(5000, (0.3, 2)), 1010 * MS) == []  # the old timeline's plan
    assert report.counts["dropped_plans.other_timeline"] == 1
    out = core.on_plan(plan(1000, (0.3, 2)), 1020 * MS)
    assert [c.stamp_ns for c in commands(out)] == [1000 * MS]


def test_a_stop_survives_a_timeline_jump(libero_config):
    core, _, _, _ = make(libero_config, lockstep=True)
    core.on_obs(obs(5000), 5000 * MS)
    core.on_stop("stop_topic", 5010 * MS)
    out = core.on_obs(obs(1000), 1000 * MS)
    assert hold_reason(out) == HoldReason.STOPPED and core.latch.engaged


# ---- every hold reason the core gives --------------------------------------------------------------------------
CORE_REASONS = {
    HoldReason.STALE_OBS: test_stale_observations_hold_and_drop_the_plan,
    HoldReason.STALE_FEEDBACK: test_stale_feedback_holds,
    HoldReason.OTHER_WRITER: test_another_writer_holds_until_it_is_gone,
    HoldReason.WAITING_OBS: test_resume_releases_the_latch_and_only_later_plans_move,
    HoldReason.WAITING_PLAN: test_wall_clock_runs_a_plan_tick_by_tick_then_asks_for_the_next,
    HoldReason.FILL_PENDING: test_the_wall_clock_holds_while_a_fill_is_pending,
    HoldReason.FILL_ERROR: test_a_failed_fill_holds_and_a_new_plan_is_requested,
    HoldReason.STOPPED: test_a_stop_latches_holds_at_once_and_drops_later_plans,
    HoldReason.OVERRUN: test_lockstep_overrun_gives_the_oldest_set_a_hold,
    HoldReason.TIME_JUMP: test_lockstep_time_jump_flushes_waiting_sets_and_starts_a_new_timeline,
    HoldReason.SHUTDOWN: test_shutdown_holds,
}
SAFETY_OR_OTHER_NODES = {HoldReason.HOLD_REQUESTED, HoldReason.REJECTED_LENGTH, HoldReason.REJECTED_NON_FINITE,
                         HoldReason.FILLER_GONE, HoldReason.NO_COMMAND}


@pytest.mark.parametrize("reason", sorted(CORE_REASONS, key=str))
def test_each_hold_reason_is_reachable_with_its_wire_name(reason, libero_config, monkeypatch):
    seen = []
    hold = SafetyFilter.hold

    def recording_hold(self, why=HoldReason.HOLD_REQUESTED):
        seen.append(why)
        return hold(self, why)

    monkeypatch.setattr(SafetyFilter, "hold", recording_hold)
    CORE_REASONS[reason](libero_config)
    assert reason in seen
    assert f"hold:{reason}" == f"hold:{reason.value}" and isinstance(reason, str)


def test_every_hold_reason_is_covered():
    assert set(CORE_REASONS) | SAFETY_OR_OTHER_NODES == set(HoldReason)


# ---- the safety filter's history -------------------------------------------------------------------------------
def test_a_new_episode_restarts_the_rate_limit_from_the_measured_position(r1lite_config):
    def far(obs, start, end, duration):
        return np.tile(end, (duration, 1))

    core, _, _, _ = make(r1lite_config, lockstep=True, fill=far)
    proprio = np.zeros(14)
    proprio[1] = proprio[8] = 1.0  # within the limits (joint 2 >= 0)
    o = ObsSet(stamp_ns=0, images={}, proprio=proprio)
    core.on_obs(o, 0)
    target = proprio.copy()
    target[0] = 1.0
    out = core.on_plan(Plan((Waypoint(target, 3),), 0), 10 * MS)
    first = commands(out)[0].decision.action
    assert first[0] == pytest.approx(0.04)  # max_step from the measured position
    core.on_instruction("again", "pub/3", 20 * MS)
    assert core.safety.last_command is None and core.safety.counters["clamped_step"] == 1
    out = core.on_obs(ObsSet(stamp_ns=50 * MS, images={}, proprio=proprio), 50 * MS)
    assert requests(out) == [50 * MS]
    out = core.on_plan(Plan((Waypoint(target, 3),), 50 * MS), 60 * MS)
    assert commands(out)[0].decision.action[0] == pytest.approx(0.04)  # from the measured 0 again, not from 0.04


def test_reset_history_forgets_only_the_last_command(r1lite_config):
    f = SafetyFilter.from_robot(r1lite_config)
    proprio = np.zeros(14)
    proprio[1] = proprio[8] = 1.0
    f.observe_obs(0.0)
    f.observe_feedback(proprio, 0.0)
    moved = proprio.copy()
    moved[0] = 0.04
    assert f.check(moved, 0.0).action[0] == pytest.approx(0.04)
    f.reset_history()
    assert f.last_command is None and f.counters["passed"] == 1
    np.testing.assert_array_equal(f.measured, proprio)
    assert not f.check(moved, 0.1).hold  # the watchdog times are kept
