"""``make demo`` (``python -m wp_policy.demo``): a policy through the simulated ROS graph, results and videos out."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from ros_helpers import PYTHON

from wp_policy.paths import config_dir


def run_demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "wp_policy.demo", "--no-progress", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_config_names_the_shipped_policy():
    from wp_policy.config_io import load_config
    from wp_policy.demo import SHIPPED_POLICY, DemoConfig

    config = load_config(DemoConfig, config_dir() / "demo" / "lift.yaml")
    assert config.policy_config == ""  # the shipped policy
    assert SHIPPED_POLICY.parts[-4:] == ("assets", "policies", "lift_demo", "policy.yaml")
    assert (config.env, config.seed, config.replan.mode) == ("robosuite:Lift", 7, "after_last")


def test_missing_policy_or_bad_values_fail_clearly(tmp_path):
    proc = run_demo("--policy", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "the shipped demo policy is missing (rebuild it with scripts/train_demo_policy.sh)" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
    proc = run_demo("--episodes", "0")
    assert proc.returncode == 2 and "episodes must be >= 1, got 0" in proc.stderr


def test_an_old_replan_key_or_a_bad_video_size_is_refused(tmp_path):
    from wp_policy.config_io import ConfigError, load_config
    from wp_policy.demo import DemoConfig, launch_command
    from wp_policy.runtime import ReplanConfig

    (tmp_path / "demo.yaml").write_text("pairs_per_plan: 2\n")
    with pytest.raises(ConfigError, match=r"demo\.yaml: pairs_per_plan: moved to replan\.pairs_per_plan"):
        load_config(DemoConfig, tmp_path / "demo.yaml")
    replan = ReplanConfig("lookahead", pairs_per_plan=2, plan_lead_s=0.25, fill_lead_s=0.0)
    command = launch_command(DemoConfig(replan=replan), tmp_path / "p.yaml", tmp_path / "g.yaml", tmp_path)
    assert {"replan_mode:=lookahead", "pairs_per_plan:=2", "plan_lead_s:=0.25", "fill_lead_s:=0.0"} <= set(command)
    assert "task_id:=0" in command
    assert "task_id:=-1" in launch_command(DemoConfig(task_id=-1), tmp_path / "p.yaml", tmp_path / "g.yaml", tmp_path)
    with pytest.raises(ValueError, match=r"task_id must be >= -1 \(-1: every task\), got -2"):
        DemoConfig(task_id=-2)
    with pytest.raises(ValueError, match=r"video_size must be an even number of pixels in 64\.\.2048, got 30"):
        DemoConfig(video_size=30)


def test_results_come_from_the_bridges_episode_records(tmp_path):
    """The demo follows the records the bridge appends (no log scraping) and writes results.json once from them."""
    from wp_policy.demo import RESULTS_FILE, DemoConfig, _advance, graph_params, write_results
    from wp_policy.sim.episodes import EPISODE_RECORDS, EpisodeResult, append_record, read_records

    assert graph_params(DemoConfig())["libero_bridge"]["ros__parameters"]["results_file"] == ""  # the demo's file
    assert write_results(tmp_path, {"wall_s": 1.0}) is None  # the bridge never started
    append_record(tmp_path / EPISODE_RECORDS, {"env": "robosuite:Lift", "config": {"trials": 2}, "tasks": ["Lift"],
                                               "episodes": 2})
    result = EpisodeResult("Lift", 0, 7, False, 3, "max_steps", np.zeros((3, 7)))
    append_record(tmp_path / EPISODE_RECORDS, result.to_json() | {"bridge": {"holds": {}}})

    class Bar:
        n, total, postfix = 0, 1, ""

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text):
            self.postfix = text

        def refresh(self):
            pass

    bar = Bar()
    _advance(bar, read_records(tmp_path / EPISODE_RECORDS))
    assert (bar.n, bar.total, bar.postfix) == (1, 2, "Lift t0: max_steps after 3 steps")  # total from the header
    doc = write_results(tmp_path, {"wall_s": 1.0, "policy_config": "p.yaml"})
    assert json.loads((tmp_path / RESULTS_FILE).read_text()) == doc
    assert doc["overall"]["episodes"] == 1 and doc["config"] == {"trials": 2} and doc["demo"]["wall_s"] == 1.0
    assert doc["episodes"][0]["bridge"] == {"holds": {}} and len(doc["episodes"][0]["actions"]) == 3


@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.sim
def test_demo_runs_a_policy_through_the_graph(tmp_path, libero_config, sp_model_path):
    from policy_files import sim_stats, write_tiny_policy

    files = write_tiny_policy(tmp_path / "policy", libero_config, sp_model_path, stats=sim_stats(libero_config))
    policy = files.policy_yaml(tmp_path / "policy" / "policy.yaml", "libero", num_waypoints=2, num_flow_steps=2)
    out = tmp_path / "demo"
    proc = run_demo("--policy", str(policy), "--episodes", "1", "--output-dir", str(out), "--set", "max_steps=6",
                    "--set", "image_size=64", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "graph.log").read_text()
    assert "overall" in proc.stdout and "results:" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["episodes"] == 1 and results["demo"]["wall_s"] > 0
    (episode,) = results["episodes"]
    assert (episode["seed"], episode["steps"]) == (7, 6) and np.asarray(episode["actions"]).shape == (6, 7)
    assert (out / "videos" / "rollout_Lift_t0_failure.mp4").stat().st_size > 0
    log = (out / "graph.log").read_text()
    assert "planning 2 waypoints" in log  # the policy file's settings reach the nodes
    assert "(2 flow steps, seed 0, noise scale 1)" in log
    assert "node 'libero_bridge' finished (exit code 0)" in log


def test_the_libero_demo_config_runs_every_task_with_the_shipped_libero_policy():
    from wp_policy.demo import load_demo
    from wp_policy.paths import config_dir

    config, policy = load_demo(config_dir() / "demo" / "libero_spatial.yaml", {})
    assert (config.env, config.task_id, config.episodes, config.image_size) == ("libero:libero_spatial", -1, 1, 128)
    assert policy.parent.name == "libero_spatial_demo"
