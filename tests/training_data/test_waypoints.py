"""Waypoint selection: the fast DP equals the O(N^3) reference and is minimal; greedy respects every bound."""

from itertools import combinations

import numpy as np
import pytest

from wp_training.data.waypoints import (
    _max_sq_errors,
    gripper_change_frames,
    reference_dp,
    reference_greedy,
    reference_segment_error,
    segment_errors,
    select_waypoints,
    select_waypoints_batch,
)


def random_walk(rng, n, d):
    """Smooth-ish trajectories with bursts of motion: many near-collinear runs, some sharp turns."""
    return np.cumsum(rng.normal(size=(n, d)) * rng.uniform(0.001, 0.05, size=(n, 1)), axis=0)


def cases(seed, count, max_len=36):
    rng = np.random.default_rng(seed)
    for i in range(count):
        n, d = int(rng.integers(1, max_len)), int(rng.integers(1, 6))
        x = random_walk(rng, n, d)
        forced = sorted(set(rng.integers(0, n, size=int(rng.integers(0, 3))).tolist()))
        yield x, forced, float(rng.choice([1e-6, 0.01, 0.05, 0.2])), [None, 3, 8][i % 3]


def is_valid(x, wps, threshold, forced, max_segment):
    wps = list(wps)
    return (wps[0] == 0 and wps[-1] == len(x) - 1 and set(forced) <= set(wps)
            and all(b > a for a, b in zip(wps, wps[1:]))
            and all(max_segment is None or b - a <= max_segment for a, b in zip(wps, wps[1:]))
            and all(reference_segment_error(x, a, b) <= threshold for a, b in zip(wps, wps[1:])))


def test_gram_errors_match_direct_distances():
    rng = np.random.default_rng(1)
    x = random_walk(rng, 50, 7) + 3.0  # offset: the fast path centres internally
    err = _max_sq_errors(x - x.mean(0), 12)
    for p in range(0, 38):
        for k in range(2, 13):
            assert np.sqrt(err[p, k]) == pytest.approx(reference_segment_error(x, p, p + k), abs=1e-10)
    assert np.all(np.isinf(err[45:, 6:]))  # segments past the end


def test_dp_equals_reference():
    for x, forced, thr, max_seg in cases(0, 150):
        fast = select_waypoints(x, thr, forced, "dp", max_seg)
        np.testing.assert_array_equal(fast, reference_dp(x, thr, forced, max_seg))
        assert is_valid(x, fast, thr, forced, max_seg)


def test_dp_is_minimal_by_exhaustive_search():
    for x, forced, thr, max_seg in cases(7, 40, max_len=11):
        n = len(x)
        dp = select_waypoints(x, thr, forced, "dp", max_seg)
        interior = [t for t in range(1, n - 1) if t not in forced]
        base = sorted(set(forced) | {0, n - 1})
        best = None
        for size in range(len(interior) + 1):
            for extra in combinations(interior, size):
                if is_valid(x, sorted(set(base) | set(extra)), thr, forced, max_seg):
                    best = len(set(base) | set(extra))
                    break
            if best is not None:
                break
        assert len(dp) == best


def test_greedy_respects_threshold_and_matches_awe_loop():
    for x, forced, thr, max_seg in cases(3, 150):
        greedy = select_waypoints(x, thr, forced, "greedy", max_seg)
        assert is_valid(x, greedy, thr, forced, max_seg)
        np.testing.assert_array_equal(greedy, reference_greedy(x, thr, forced, max_seg))
        assert len(select_waypoints(x, thr, forced, "dp", max_seg)) <= len(greedy)


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(5)
    xs = [random_walk(rng, int(rng.integers(1, 60)), 4) for _ in range(25)]
    forced = [sorted(set(rng.integers(0, len(x), size=2).tolist())) for x in xs]
    for method in ("dp", "greedy"):
        out = select_waypoints_batch(xs, forced, 0.03, method, 16)
        for x, f, w in zip(xs, forced, out):
            np.testing.assert_array_equal(w, select_waypoints(x, 0.03, f, method, 16))


def test_structure_and_edge_cases():
    line = np.linspace(0, 1, 20)[:, None] * np.array([1.0, 2.0])
    np.testing.assert_array_equal(select_waypoints(line, 1e-6), [0, 19])  # a straight line needs only its ends
    # max_segment 8 forces two extra waypoints; ties go to the earliest predecessor
    np.testing.assert_array_equal(select_waypoints(line, 1e-6, max_segment=8), [0, 3, 11, 19])
    np.testing.assert_array_equal(select_waypoints(line, 1e-6, forced=[5]), [0, 5, 19])
    np.testing.assert_array_equal(select_waypoints(line, 1e-6, [5], "greedy"), [0, 5, 19])
    np.testing.assert_array_equal(select_waypoints(line[:1], 0.1), [0])
    np.testing.assert_array_equal(select_waypoints(line[:2], 0.1), [0, 1])
    corner = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 2]], float)
    np.testing.assert_array_equal(select_waypoints(corner, 0.01), [0, 2, 4])
    assert segment_errors(corner, [0, 2, 4]).tolist() == [0.0, 0.0]
    assert segment_errors(corner, [0, 4]).tolist() == pytest.approx([np.sqrt(2)])  # (2, 0) is sqrt 2 off the diagonal


def test_gripper_change_frames():
    g = np.array([1.0, 1.0, 0.9, 0.2, 0.0, 0.0, 0.7, 1.0])
    np.testing.assert_array_equal(gripper_change_frames(g), [2, 5])
    two = np.stack([g, np.r_[g[:1], g[:-1]]], axis=1)  # second gripper lags by one frame
    np.testing.assert_array_equal(gripper_change_frames(two), [2, 3, 5, 6])
    with pytest.raises(ValueError, match="NaN"):
        gripper_change_frames(np.array([1.0, np.nan]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(threshold=0.0), "threshold must be a finite number > 0"),
    (dict(threshold=np.nan), "threshold must be a finite number > 0"),
    (dict(method="beam"), "unknown waypoint method 'beam'"),
    (dict(max_segment=0), "max_segment must be >= 1"),
])
def test_bad_parameters(kwargs, message):
    args = dict(threshold=0.1, method="dp", max_segment=None) | kwargs
    with pytest.raises(ValueError, match=message):
        select_waypoints(np.zeros((5, 2)), args["threshold"], (), args["method"], args["max_segment"])


def test_bad_trajectories():
    x = np.zeros((6, 3))
    with pytest.raises(ValueError, match=r"trajectory 1: contains NaN or inf \(first frames: \[2\]\)"):
        bad = x.copy()
        bad[2, 1] = np.nan
        select_waypoints_batch([x, bad], [[], []], 0.1)
    with pytest.raises(ValueError, match=r"trajectory 0: expected a non-empty \[N, D\] array"):
        select_waypoints(np.zeros(5), 0.1)
    with pytest.raises(ValueError, match="trajectory 1: has 2 dims, trajectory 0 has 3"):
        select_waypoints_batch([x, np.zeros((4, 2))], [[], []], 0.1)
    with pytest.raises(ValueError, match=r"forced frames \[9\] out of range for 6 frames"):
        select_waypoints(x, 0.1, forced=[9])
    with pytest.raises(ValueError, match="2 trajectories but 1 forced-frame lists"):
        select_waypoints_batch([x, x], [[]], 0.1)
