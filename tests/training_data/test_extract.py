"""`wp-data extract-waypoints`: index file, waypoint-filtered RLDS and plots on the tiny LIBERO / R1 Lite datasets."""

import json

import numpy as np
import pytest
from rlds_fixtures import libero_episodes, r1lite_episodes

from wp_training.data.extract import (INDEX_FILE, ExtractConfig, WaypointIndex, episode_inputs, plot_episode,
                                 plot_groups, run_extraction, waypoint_figure)
from wp_training.data.rlds_layout import RldsError
from wp_training.data.rlds_reader import read_rlds
from wp_training.data.waypoints import reference_dp
from wp_training.data_cli import main

THRESHOLD = 0.005


@pytest.fixture(scope="module")
def libero_extraction(libero_rlds, tmp_path_factory):
    cfg = ExtractConfig(source_dir=str(libero_rlds), out_dir=str(tmp_path_factory.mktemp("libero_wp")),
                        robot="libero", keys=("state",), threshold=THRESHOLD, workers=0, plot_episodes=(0, 2))
    return cfg, run_extraction(cfg, show_progress=False)


def test_index_file_records_config_and_reference_waypoints(libero_extraction, libero_rlds):
    cfg, result = libero_extraction
    data = json.loads(result.index_path.read_text())
    assert data["format"] == "wp_training.waypoint_indices/1"
    c = data["config"]
    assert c["source_dir"] == str(libero_rlds.resolve()) and c["keys"] == ["state"]
    assert (c["threshold"], c["method"], c["max_segment"], c["gripper_changes"]) == (THRESHOLD, "dp", 32, True)
    assert c["robot_type"] == "libero" and c["split"] == "train"
    for i, (ep, ref) in enumerate(zip(data["episodes"], libero_episodes(5, 40))):
        gripper = ref["action"][:, 6]
        forced = np.flatnonzero(gripper[1:] != gripper[:-1])  # the frame before each open/close switch
        state = ref["observation"]["state"].astype(np.float32)
        assert ep["index"] == i and ep["length"] == len(state)
        assert ep["waypoints"] == reference_dp(state, THRESHOLD, forced, 32).tolist()
        assert set(forced.tolist()) <= set(ep["waypoints"]) and len(forced) == 2
    s = data["summary"]
    assert s["num_episodes"] == 5 and s["num_steps"] == sum(40 + 3 * i for i in range(5))
    assert s["num_waypoints"] == sum(len(e["waypoints"]) for e in data["episodes"])
    assert s["num_pairs"] == s["num_waypoints"] - 5 == s["pairs_within_32"]


def test_filtered_rlds_holds_the_waypoint_steps(libero_extraction):
    _, result = libero_extraction
    index = WaypointIndex.load(result.index_path.parent)
    assert result.filtered_dir.name == "1.0.0" and result.filtered_dir.parent.name == "waypoint_filtered_rlds__libero"
    for i, (ep, ref) in enumerate(zip(read_rlds(result.filtered_dir), libero_episodes(5, 40))):
        w = index.waypoints[i]
        np.testing.assert_array_equal(ep["source_step"], w)
        np.testing.assert_array_equal(ep["duration"], np.append(np.diff(w), 0))
        np.testing.assert_array_equal(ep["observation"]["image"][:, 0, 0, 0], w % 256)  # pixels encode the step
        np.testing.assert_array_equal(ep["observation"]["image"], ref["observation"]["image"][w])
        np.testing.assert_array_equal(ep["observation"]["state"], ref["observation"]["state"][w].astype(np.float32))
        np.testing.assert_array_equal(ep["action"], ref["action"][w].astype(np.float32))
        assert ep["language_instruction"] == ref["language_instruction"] and ep["file_path"] == ref["file_path"]


def test_plots_are_written(libero_extraction):
    _, result = libero_extraction
    assert [p.name for p in result.plots] == ["episode_0.png", "episode_2.png"]
    for p in result.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_plots_put_each_dim_group_on_its_own_axis(libero_config, r1lite_config):
    """The robot's state keys: its proprio groups with dim names; other keys: one axis each; --dims respected."""
    groups = plot_groups(libero_config, ("state",), (8,), ())
    assert [(name, [c for c, _ in lines]) for name, lines in groups] == [
        ("eef position (m)", [0, 1, 2]), ("eef rotation (axis-angle, rad)", [3, 4, 5]),
        ("gripper (finger qpos, m)", [6, 7])]
    assert [label for _, label in groups[0][1]] == ["eef_x", "eef_y", "eef_z"]
    picked = plot_groups(libero_config, ("state",), (8,), (2, 6))  # x columns 0, 1 = state dims 2, 6
    assert picked == [("eef position (m)", ((0, "eef_z"),)), ("gripper (finger qpos, m)", ((1, "finger_left"),))]
    arms = plot_groups(r1lite_config, ("joint_position_arm_left", "joint_position_arm_right"), (6, 6), ())
    assert [(name, len(lines)) for name, lines in arms] == [("joint_position_arm_left", 6),
                                                            ("joint_position_arm_right", 6)]
    assert arms[1][1][0] == (6, "joint_position_arm_right[0]")


def test_the_plot_has_legends_and_marks_gripper_changes(tmp_path, libero_config):
    import matplotlib.image
    from matplotlib import pyplot as plt

    x = np.cumsum(np.random.default_rng(0).normal(size=(30, 8)), axis=0)
    args = (x, np.array([0, 9, 20, 29]), "t", plot_groups(libero_config, ("state",), (8,), ()), [9, 20])
    fig = waypoint_figure(*args)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == [g.name for g in libero_config.proprio.groups]
    labels = [t.get_text() for t in axes[2].get_legend().get_texts()]
    assert labels == ["finger_left", "finger_right", "waypoint", "waypoint frame", "gripper change (forced)"]
    plt.close(fig)
    path = plot_episode(x, args[1], tmp_path / "p.png", *args[2:])
    assert matplotlib.image.imread(path).ndim == 3


def test_r1lite_arm_keys_parallel_workers_and_greedy(r1lite_rlds, tmp_path):
    keys = ("joint_position_arm_left", "joint_position_arm_right")
    common = dict(source_dir=str(r1lite_rlds), robot="r1lite", keys=keys, threshold=0.001, filtered=False)
    serial = run_extraction(ExtractConfig(out_dir=str(tmp_path / "a"), workers=0, chunk_steps=50, **common), False)
    parallel = run_extraction(ExtractConfig(out_dir=str(tmp_path / "b"), workers=2, chunk_steps=50, **common), False)
    a, b = WaypointIndex.load(serial.index_path), WaypointIndex.load(parallel.index_path)
    assert all(np.array_equal(x, y) for x, y in zip(a.waypoints, b.waypoints)) and len(a.waypoints) == 4
    for w, ref in zip(a.waypoints, r1lite_episodes(4, 40)):
        strokes = ref["action"][:, [6, 13]]
        changes = np.flatnonzero(np.any(strokes[1:] != strokes[:-1], axis=1))
        assert set(changes.tolist()) <= set(w.tolist()) and len(changes) == 4  # both grippers close and reopen
        arms = np.concatenate([ref["observation"]["joint_position_arm_left"],
                               ref["observation"]["joint_position_arm_right"]], 1).astype(np.float32)
        np.testing.assert_array_equal(w, reference_dp(arms, 0.001, changes, 32))
    greedy = run_extraction(ExtractConfig(out_dir=str(tmp_path / "g"), workers=0, method="greedy", **common), False)
    assert greedy.summary["num_waypoints"] >= serial.summary["num_waypoints"]
    assert serial.filtered_dir is None and not (tmp_path / "a" / "waypoint_filtered_rlds__galaxea_r1_lite").exists()


def test_cli_extract_and_help(libero_rlds, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["extract-waypoints", "--rlds", str(libero_rlds), "--robot", "libero", "--keys", "state",
                 "--threshold", "0.01", "--method", "greedy", "--max-segment", "none", "--workers", "0",
                 "--no-filtered", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 episodes, 230 steps ->" in printed and str(out / INDEX_FILE) in printed
    config = json.loads((out / INDEX_FILE).read_text())["config"]
    assert (config["method"], config["max_segment"], config["threshold"]) == ("greedy", None, 0.01)
    with pytest.raises(SystemExit) as exit_info:
        main(["extract-waypoints", "--help"])
    assert exit_info.value.code == 0 and "--threshold" in capsys.readouterr().out


def test_cli_reports_bad_input(libero_rlds, tmp_path, capsys):
    rc = main(["extract-waypoints", "--rlds", str(libero_rlds.parent.parent), "--out", str(tmp_path)])
    assert rc == 2 and f"Point at {libero_rlds}" in capsys.readouterr().err
    rc = main(["extract-waypoints", "--rlds", str(libero_rlds), "--keys", "joint_state", "--out", str(tmp_path)])
    assert rc == 2 and "waypoint key(s) ['joint_state'] are not observation vectors" in capsys.readouterr().err
    rc = main(["extract-waypoints", "--rlds", str(libero_rlds), "--threshold", "0", "--out", str(tmp_path)])
    assert rc == 2 and "threshold must be > 0" in capsys.readouterr().err
    rc = main(["extract-waypoints", "--rlds", str(libero_rlds), "--robot", "r1lite", "--out", str(tmp_path)])
    assert rc == 2 and "does not match robot config 'galaxea_r1_lite'" in capsys.readouterr().err
    rc = main(["collect-sim", "--task", "robosuite:Door", "--episodes", "1", "--out", str(tmp_path)])
    assert rc == 2 and "unknown robosuite target(s) ['Door']" in capsys.readouterr().err


def test_nan_in_state_names_the_episode(libero_config):
    episode = libero_episodes(3, 20)[2]  # the writer refuses NaN, so feed the extractor a damaged read directly
    episode["observation"]["state"][5, 0] = np.inf
    with pytest.raises(ValueError, match=r"episode 2: state contains NaN or inf \(first steps: \[5\]\)"):
        episode_inputs(episode, libero_config, ExtractConfig("src", "out"), ("state",), 2)


def test_waypoint_index_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="waypoint index not found .*run `wp-data extract-waypoints`"):
        WaypointIndex.load(tmp_path)
    bad = tmp_path / INDEX_FILE
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        WaypointIndex.load(bad)
    bad.write_text(json.dumps({"episodes": [{"length": 5, "waypoints": [0, 3, 2, 4]}]}))
    with pytest.raises(ValueError, match=r"episode 0: waypoints must increase from 0 to length - 1 \(4\)"):
        WaypointIndex.load(bad)
    bad.write_text(json.dumps({"episodes": [{"waypoints": [0, 4]}]}))
    with pytest.raises(ValueError, match="episode 0: needs 'length'"):
        WaypointIndex.load(bad)


def test_bad_extract_config():
    with pytest.raises(ValueError, match="gripper_level must be in"):
        ExtractConfig("a", "b", gripper_level=1.0)
    with pytest.raises(ValueError, match="max_segment must be >= 1 or null"):
        ExtractConfig("a", "b", max_segment=0)
    with pytest.raises(RldsError):
        run_extraction(ExtractConfig("/nonexistent/rlds", "/tmp/unused"), show_progress=False)
