"""``--method awe_dp``: AWE's own DP (lucys0/awe ``dp_waypoint_selection``, pos_only) reproduced exactly.

``reference_awe_dp`` is the readable specification (checked here against hand-derived results of AWE's code,
quirks included); the fast path must equal it, plus frame 0, on random trajectories.
"""

import json

import numpy as np
import pytest
from rlds_fixtures import libero_episodes

from wp_training.data.waypoints import (
    reference_awe_dp,
    reference_awe_error,
    segment_errors,
    select_waypoints,
    select_waypoints_batch,
)
from wp_training.data_cli import main


def random_walk(rng, n, d):
    return np.cumsum(rng.normal(size=(n, d)) * rng.uniform(0.001, 0.05, size=(n, 1)), axis=0)


def cases(seed, count, max_len=30):
    """Random walks, a quarter with a stationary stretch (exactly repeated frames: AWE rejects their segments)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        n, d = int(rng.integers(1, max_len)), int(rng.integers(1, 5))
        x = random_walk(rng, n, d)
        if i % 4 == 0 and n > 4:
            a = int(rng.integers(0, n - 2))
            x[a : a + 3] = x[a]
        forced = sorted(set(rng.integers(0, n, size=int(rng.integers(0, 3))).tolist())) if i % 2 else []
        yield x, forced, float(rng.choice([1e-6, 0.003, 0.01, 0.05, 0.2])), [None, 3, 8][i % 3]


def test_reference_reproduces_awe_behaviour():
    zigzag = np.stack([np.arange(9.0), (-1.0) ** np.arange(9)], axis=1)  # no three frames collinear
    # best[1] is overwritten with (inf, []) by AWE's i = 1 pass: below the threshold of any shortcut only every
    # second frame is reachable, and an unreachable last frame leaves just the forced frames
    np.testing.assert_array_equal(reference_awe_dp(zigzag, 0.01), [2, 4, 6, 8])
    np.testing.assert_array_equal(reference_awe_dp(zigzag[:8], 0.01), [7])
    line = np.linspace(0.0, 1.0, 10)[:, None]
    np.testing.assert_array_equal(reference_awe_dp(line, 1e-6), [9])  # frame 0 is never in AWE's list
    np.testing.assert_array_equal(reference_awe_dp(line, 1e-6, forced=[4]), [4, 9])
    np.testing.assert_array_equal(reference_awe_dp(line[:1], 0.1), [0])
    np.testing.assert_array_equal(reference_awe_dp(line[:2], 0.1), [1])
    # a zero-length (sub-)segment is NaN under AWE's metric and never accepted
    assert np.isnan(reference_awe_error(np.array([[0.0], [1.0], [1.0], [1.0]]), 1, 3))
    np.testing.assert_array_equal(reference_awe_dp(np.array([[0.0], [1.0], [1.0], [1.0]]), 0.1), [3])
    # the kept pair (0, 2) is never measured: AWE checks only the segment (1, 2)
    tent = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    np.testing.assert_array_equal(reference_awe_dp(tent, 0.1), [2])
    np.testing.assert_array_equal(select_waypoints(tent, 0.1, method="awe_dp"), [0, 2])
    assert segment_errors(tent, [0, 2]).tolist() == [1.0]  # ten times the threshold
    np.testing.assert_array_equal(select_waypoints(tent, 0.1, method="dp"), [0, 1, 2])


def test_forced_frames_cut_the_measured_segment():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 2.0]])  # a corner at frame 2
    assert reference_awe_error(x, 1, 4) == pytest.approx(np.sqrt(0.8))  # (2, 0) against (1, 0) -> (2, 2)
    assert reference_awe_error(x, 1, 4, forced=[2]) == 0.0  # cut at 2: (1, 2) and (2, 4) are exact
    np.testing.assert_array_equal(reference_awe_dp(x, 0.1, forced=[2]), [2, 4])
    np.testing.assert_array_equal(select_waypoints(x, 0.1, [2], "awe_dp"), [0, 2, 4])


def test_fast_path_equals_reference():
    for x, forced, thr, max_seg in cases(0, 160):
        ref = reference_awe_dp(x, thr, forced, max_seg)
        fast = select_waypoints(x, thr, forced, "awe_dp", max_seg)
        np.testing.assert_array_equal(fast, np.union1d([0], ref), err_msg=f"{len(x)} frames, thr {thr}, {forced}")


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(5)
    xs = [random_walk(rng, int(rng.integers(1, 50)), 3) for _ in range(20)]
    xs[3][5:9] = xs[3][5]
    forced = [sorted(set(rng.integers(0, len(x), size=2).tolist())) for x in xs]
    for max_seg in (None, 12):
        out = select_waypoints_batch(xs, forced, 0.02, "awe_dp", max_seg)
        for x, f, w in zip(xs, forced, out):
            np.testing.assert_array_equal(w, select_waypoints(x, 0.02, f, "awe_dp", max_seg))


def test_awe_sets_exceed_the_threshold_where_dp_never_does():
    rng = np.random.default_rng(11)
    over = 0
    for _ in range(12):
        x = np.cumsum(np.cumsum(rng.normal(size=(60, 3)), axis=0), axis=0) * 1e-3  # smooth, accelerating
        awe = select_waypoints(x, 0.01, method="awe_dp", max_segment=None)
        dp = select_waypoints(x, 0.01, method="dp", max_segment=None)
        assert segment_errors(x, dp).max() <= 0.01
        over += segment_errors(x, awe).max() > 0.01
    assert over > 0


def test_extract_with_awe_dp(libero_rlds, tmp_path, capsys):
    out = tmp_path / "awe"
    assert main(["extract-waypoints", "--rlds", str(libero_rlds), "--robot", "libero", "--keys", "state",
                 "--threshold", "0.005", "--method", "awe_dp", "--workers", "0", "--no-filtered",
                 "--out", str(out)]) == 0
    data = json.loads((out / "waypoint_indices.json").read_text())
    assert data["config"]["method"] == "awe_dp"
    for ep, ref in zip(data["episodes"], libero_episodes(5, 40)):
        gripper = ref["action"][:, 6]
        forced = np.flatnonzero(gripper[1:] != gripper[:-1])
        state = ref["observation"]["state"].astype(np.float32)
        assert ep["waypoints"] == np.union1d([0], reference_awe_dp(state, 0.005, forced, 32)).tolist()
    assert "waypoints" in capsys.readouterr().out

