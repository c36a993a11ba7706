"""`wp-data stats`: statistics of model-space actions and proprio, in the shared stats-file format."""

import json

import numpy as np
import pytest
from rlds_fixtures import libero_episodes, r1lite_episodes

from wp_policy.normalize import load_stats
from wp_training.data.rlds_reader import RldsReader
from wp_training.data.stats import compute_stats, model_space
from wp_training.data_cli import main


def expected(values):
    x = np.concatenate(values).astype(np.float64)
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}


def assert_stats(stats, ref):
    for name, value in ref.items():
        np.testing.assert_allclose(getattr(stats, name), value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_libero_stats_via_cli(libero_rlds, tmp_path, capsys):
    out = tmp_path / "norm_stats" / "dataset_statistics.json"
    assert main(["stats", "--rlds", str(libero_rlds), "--robot", "libero", "--out", str(out)]) == 0
    assert "5 episodes, 230 steps" in capsys.readouterr().out
    raw = json.loads(out.read_text())
    assert set(raw) == {"action", "proprio", "num_transitions", "num_trajectories"}
    assert (raw["num_transitions"], raw["num_trajectories"]) == (230, 5)
    stats = load_stats(out.parent)
    episodes = libero_episodes(5, 40)
    actions = []
    for ep in episodes:
        a = ep["action"].astype(np.float32).astype(np.float64)
        a[:, 6] = 1.0 - np.clip(a[:, 6], 0.0, 1.0)  # LIBERO gripper: -1 open / +1 close -> 1 open / 0 closed
        actions.append(a)
    assert_stats(stats.action, expected(actions))
    assert_stats(stats.proprio, expected([ep["observation"]["state"].astype(np.float32) for ep in episodes]))
    assert set(np.unique(np.concatenate(actions)[:, 6])) == {0.0, 1.0}


def test_r1lite_stats_select_and_scale(r1lite_rlds, r1lite_config):
    stats = compute_stats(RldsReader(r1lite_rlds), r1lite_config)
    episodes = r1lite_episodes(4, 40)
    actions = [ep["action"].astype(np.float32)[:, :14] / np.r_[np.ones(6), 100, np.ones(6), 100] for ep in episodes]
    keys = ("joint_position_arm_left", "gripper_state_left", "joint_position_arm_right", "gripper_state_right")
    proprio = [np.concatenate([ep["observation"][k].astype(np.float32) for k in keys], 1)
               / np.r_[np.ones(6), 100, np.ones(6), 100] for ep in episodes]
    assert_stats(stats.action, expected(actions))
    assert_stats(stats.proprio, expected(proprio))
    assert stats.action.dim == stats.proprio.dim == 14 and stats.num_transitions == sum(40 + 3 * i for i in range(4))


def test_nan_and_mismatched_robot(libero_config, libero_rlds, r1lite_config, tmp_path, capsys):
    ep = libero_episodes(2, 20)[1]
    ep["action"][3, 2] = np.nan
    with pytest.raises(ValueError, match=r"episode 7: action contains NaN or inf \(first steps: \[3\]\)"):
        model_space(ep, libero_config, 7)
    rc = main(["stats", "--rlds", str(libero_rlds), "--robot", "r1lite", "--out", str(tmp_path / "s.json")])
    assert rc == 2 and "state key(s)" in capsys.readouterr().err and not (tmp_path / "s.json").exists()
