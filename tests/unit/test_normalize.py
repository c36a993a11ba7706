import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wp_policy.normalize import DatasetStats, Normalizer, NormStats, StatsError, fit_stats, load_stats


def _stats(q01, q99, mean=None, std=None):
    q01, q99 = np.asarray(q01, float), np.asarray(q99, float)
    mean = (q01 + q99) / 2 if mean is None else np.asarray(mean, float)
    std = np.ones_like(q01) if std is None else np.asarray(std, float)
    return NormStats(mean=mean, std=std, min=q01 - 1, max=q99 + 1, q01=q01, q99=q99)


def test_q99_formula_exact():
    n = Normalizer(_stats([0.0, -2.0], [1.0, 2.0]))
    x = np.array([[0.25, 1.0], [5.0, -9.0]])
    y = n.normalize(x)
    np.testing.assert_allclose(y[0], [2 * 0.25 / (1 + 1e-6) - 1, 2 * 3 / (4 + 1e-6) - 1])
    assert y[1].tolist() == [1.0, -1.0]  # clipped
    np.testing.assert_allclose(n.unnormalize(np.array([-1.0, 1.0])), [0.0, 2.0])


def test_constant_dims_map_to_zero_and_back_to_value():
    n = Normalizer(_stats([0.0, 3.0], [1.0, 3.0]))
    y = n.normalize(np.array([0.5, 3.0]))
    assert y[1] == 0.0
    assert n.normalize(np.array([0.5, 7.0]))[1] == 0.0
    assert n.unnormalize(y)[1] == 3.0


def test_mask_false_dims_pass_through_both_ways():
    n = Normalizer(_stats([0, 0, 0], [10, 10, 10]), mask=[True, False, True])
    x = np.array([5.0, 0.37, 10.0])
    y = n.normalize(x)
    assert y[1] == 0.37 and y[0] == pytest.approx(0.0, abs=1e-6)
    assert n.unnormalize(y)[1] == 0.37


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, (5, 4), elements=st.floats(-100, 100)),
    arrays(np.float64, 4, elements=st.floats(-50, 50)),
    arrays(np.float64, 4, elements=st.floats(0.1, 50)),
)
def test_q99_round_trip_inside_range(u, lo, width):
    hi = lo + width
    x = lo + (np.tanh(u) + 1) / 2 * width  # inside [q01, q99]
    n = Normalizer(_stats(lo, hi))
    y = n.normalize(x)
    assert np.all(np.abs(y) <= 1.0)
    np.testing.assert_allclose(n.unnormalize(y), x, atol=1e-5 * (1 + np.abs(x).max()))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, (7, 3), elements=st.floats(-10, 10)))
def test_zscore_round_trip(x):
    n = Normalizer(_stats([-1, -1, -1], [1, 1, 1], mean=[0.5, -2, 0], std=[2, 0.5, 1]), mode="zscore")
    np.testing.assert_allclose(n.unnormalize(n.normalize(x)), x, atol=1e-9)


def test_fit_stats_values():
    x = np.stack([np.arange(101.0), np.full(101, 4.0)], 1)
    s = fit_stats(x)
    np.testing.assert_allclose(s.q01, [1.0, 4.0])
    np.testing.assert_allclose(s.q99, [99.0, 4.0])
    assert s.mean.tolist() == [50.0, 4.0] and s.min.tolist() == [0.0, 4.0] and s.max.tolist() == [100.0, 4.0]


def test_fit_stats_rejects_nan_and_bad_shape():
    with pytest.raises(StatsError, match="NaN or inf"):
        fit_stats(np.array([[1.0], [np.nan]]))
    with pytest.raises(StatsError, match=r"non-empty \[N, D\] array, got shape \(3,\)"):
        fit_stats(np.zeros(3))


def test_normalize_rejects_nan_and_wrong_dims():
    n = Normalizer(_stats([0, 0], [1, 1]))
    with pytest.raises(ValueError, match=r"NaN or inf in dims \[1\]"):
        n.normalize(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"expected last dim 2, got shape \(3,\)"):
        n.unnormalize(np.zeros(3))
    with pytest.raises(StatsError, match="mask has 3 entries but the statistics have 2 dims"):
        Normalizer(_stats([0, 0], [1, 1]), mask=[True, True, False])
    with pytest.raises(ValueError, match="unknown normalisation mode"):
        Normalizer(_stats([0], [1]), mode="minmax")


def _dataset_stats(dim_a=7, dim_p=8):
    return DatasetStats(fit_stats(np.random.default_rng(0).normal(size=(50, dim_a))),
                        fit_stats(np.random.default_rng(1).normal(size=(50, dim_p))), 50, 2)


def test_flat_nested_and_openpi_layouts_load_identically(tmp_path):
    ds = _dataset_stats()
    flat = ds.save(tmp_path / "flat" / "dataset_statistics.json")
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"libero_object_no_noops": ds.to_dict()}))
    openpi = tmp_path / "openpi.json"
    openpi.write_text(json.dumps({"norm_stats": {"actions": ds.action.to_dict(), "state": ds.proprio.to_dict()}}))
    for path in (flat, flat.parent, nested, openpi):
        loaded = load_stats(path)
        np.testing.assert_array_equal(loaded.action.q99, ds.action.q99)
        np.testing.assert_array_equal(loaded.proprio.q01, ds.proprio.q01)
    assert load_stats(flat).num_transitions == 50


def test_nested_with_several_datasets_needs_a_key(tmp_path):
    ds = _dataset_stats()
    path = tmp_path / "multi.json"
    path.write_text(json.dumps({"a": ds.to_dict(), "b": ds.to_dict()}))
    with pytest.raises(StatsError, match=r"several datasets \['a', 'b'\]"):
        load_stats(path)
    assert load_stats(path, dataset_key="b").action.dim == 7
    with pytest.raises(StatsError, match=r"dataset key 'c' not found; available: \['a', 'b'\]"):
        load_stats(path, dataset_key="c")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["action"].pop("q99"), r"action: missing statistic\(s\) \['q99'\]"),
        (lambda d: d.pop("proprio"), r"missing \['proprio'\] statistics"),
        (lambda d: d["proprio"].update(q01=[float("nan")] * 8), "statistic 'q01' contains NaN"),
        (lambda d: d["action"].update(std=[1.0] * 3), "same length"),
        (lambda d: d["action"].update(mean="abc"), "lists of numbers"),
    ],
)
def test_bad_stats_files_name_the_problem(tmp_path, mutate, message):
    data = _dataset_stats().to_dict()
    mutate(data)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StatsError, match=message):
        load_stats(path)


def test_missing_file_invalid_json_and_dim_mismatch(tmp_path):
    with pytest.raises(StatsError, match="statistics file not found"):
        load_stats(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(StatsError, match="invalid JSON"):
        load_stats(tmp_path / "x.json")
    with pytest.raises(StatsError, match="expected exactly one dataset_statistics"):
        load_stats(tmp_path)
    with pytest.raises(StatsError, match="proprio statistics have 8 dims but the robot config expects 14"):
        _dataset_stats().check_dims(7, 14)
