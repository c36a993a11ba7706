import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wp_policy.safety import SafetyFilter

EPS = 1e-9


@pytest.fixture
def r1(r1lite_config):
    f = SafetyFilter.from_robot(r1lite_config, obs_timeout=0.5, feedback_timeout=0.2)
    home = np.array([0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 50.0] * 2)
    f.observe_feedback(home, 0.0)
    f.observe_obs(0.0)
    return f, home


def test_command_is_rate_limited_from_the_measured_position_then_passes(r1, r1lite_config):
    f, home = r1
    step = np.asarray(r1lite_config.limits.max_step)
    d = f.check(home + 0.01, 0.0)
    assert not d.hold and np.allclose(d.action, home + 0.01)
    d = f.check(home + 1.0, 0.05)  # far away: moves by max_step only
    np.testing.assert_allclose(d.action, np.minimum(home + 1.0, home + 0.01 + step))
    assert f.counters["clamped_step"] == 1 and f.counters["passed"] == 2


def test_limits_clamp(r1, r1lite_config):
    f, home = r1
    lower, upper = np.asarray(r1lite_config.limits.lower), np.asarray(r1lite_config.limits.upper)
    target = home.copy()
    target[6] = 150.0  # gripper stroke beyond 100 mm
    for _ in range(10):
        d = f.check(target, 0.0)
    assert d.action[6] == 100.0 and np.all(d.action <= upper) and np.all(d.action >= lower)
    assert f.counters["clamped_limit"] == 10


@pytest.mark.parametrize("bad, reason", [(np.full(14, np.nan), "rejected_non_finite"),
                                         ([0.0] * 13, "rejected_length"),
                                         ([np.inf] + [0.0] * 13, "rejected_non_finite")])
def test_bad_commands_become_holds(r1, bad, reason):
    f, home = r1
    d = f.check(bad, 0.0)
    assert d.hold and d.reason == reason and f.counters[reason] == 1
    np.testing.assert_allclose(d.action, home)


def test_watchdog_holds_measured_position(r1):
    f, home = r1
    f.check(home + 0.02, 0.1)
    moved = home + 0.03
    f.observe_feedback(moved, 0.4)
    d = f.check(home + 0.04, 0.6)  # last obs at 0.0 -> stale after 0.5 s
    assert d.hold and d.reason == "stale_obs"
    np.testing.assert_allclose(d.action, moved)
    f.observe_obs(0.7)
    d = f.check(home + 0.04, 0.7)  # feedback last at 0.4 -> stale after 0.2 s
    assert d.hold and d.reason == "stale_feedback" and f.counters["holds"] == 2


def test_nothing_is_sent_without_a_measured_position(r1lite_config):
    f = SafetyFilter.from_robot(r1lite_config)
    f.observe_obs(0.0)
    assert f.check(np.zeros(14), 0.0) is None and f.hold() is None
    assert f.counters["no_reference"] == 2
    assert not f.observe_feedback([np.nan] * 14, 0.0) and f.counters["feedback_rejected"] == 1


def test_delta_robot_hold_is_zero_motion_and_keeps_gripper(libero_config):
    f = SafetyFilter.from_robot(libero_config)
    d = f.hold()
    np.testing.assert_array_equal(d.action, [0, 0, 0, 0, 0, 0, -1.0])  # LIBERO: -1 = open
    f.observe_obs(0.0)
    f.observe_feedback(np.zeros(8), 0.0)
    f.check([0.5, 0, 0, 0, 0, 0, 1.0], 0.0)  # close the gripper
    np.testing.assert_array_equal(f.hold().action, [0, 0, 0, 0, 0, 0, 1.0])


def test_invalid_filter_configuration():
    with pytest.raises(ValueError, match="max_step"):
        SafetyFilter([0, 0], [1, 1], [0.1, 0.0], [0, 1])
    with pytest.raises(ValueError, match="lower"):
        SafetyFilter([0, 2], [1, 1], None, [0, 1])
    with pytest.raises(ValueError, match="timeouts"):
        SafetyFilter([0], [1], None, [0], obs_timeout=0.0)


finite = st.floats(-1e3, 1e3, allow_nan=False)
anything = st.one_of(finite, st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")))
vec14 = st.lists(finite, min_size=14, max_size=14)
command = st.one_of(vec14, st.lists(anything, min_size=14, max_size=14), st.lists(finite, min_size=0, max_size=20))
event = st.one_of(
    st.tuples(st.just("cmd"), command),
    st.tuples(st.just("feedback"), st.one_of(vec14, st.lists(anything, min_size=14, max_size=14))),
    st.tuples(st.just("obs"), st.none()),
    st.tuples(st.just("hold"), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(start=vec14, events=st.lists(st.tuples(event, st.floats(0.0, 0.3)), min_size=1, max_size=40))
def test_property_every_output_is_finite_within_limits_and_max_step(r1lite_config, start, events):
    f = SafetyFilter.from_robot(r1lite_config)
    lower, upper = np.asarray(r1lite_config.limits.lower), np.asarray(r1lite_config.limits.upper)
    max_step = np.asarray(r1lite_config.limits.max_step)
    f.observe_feedback(start, 0.0)  # measured position may be anywhere, even outside the limits
    f.observe_obs(0.0)
    now, prev = 0.0, None
    for (kind, value), dt in events:
        now += dt
        if kind == "feedback":
            f.observe_feedback(value, now)
            continue
        if kind == "obs":
            f.observe_obs(now)
            continue
        d = f.hold() if kind == "hold" else f.check(value, now)
        assert d is not None  # a measured position exists, so there is always something safe to send
        assert d.action.shape == (14,) and np.all(np.isfinite(d.action))
        assert np.all(d.action >= lower - EPS) and np.all(d.action <= upper + EPS)
        if prev is not None:
            assert np.all(np.abs(d.action - prev) <= max_step + EPS)
        if kind == "cmd" and (len(value) != 14 or not np.all(np.isfinite(value))):
            assert d.hold  # a malformed command never passes
        prev = d.action
