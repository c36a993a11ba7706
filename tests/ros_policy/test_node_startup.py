"""Bad configuration stops a node at start-up with one clear line and exit code 1; wp-stop fails clearly when nobody
listens."""

from __future__ import annotations

import sys

import pytest
from ros_helpers import Proc

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def node(module: str, *params: str) -> Proc:
    args = [a for p in params for a in ("-p", p)]
    return Proc([sys.executable, "-m", f"wp_policy.ros.{module}", "--ros-args", *args])


def test_bad_parameters_stop_the_nodes_with_a_clear_message(policy_files):
    files = [f"stats:={policy_files.stats}", f"tokenizer:={policy_files.tokenizer}"]
    procs = {
        "no checkpoint": (node("planner_node", *files), "parameter 'checkpoint' is empty: pass vlm_checkpoint:="),
        "bad mode": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "clock_mode:=sometimes"),
                     "clock_mode must be wall or lockstep, got 'sometimes'"),
        "bad pairs": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "pairs_per_plan:=-1"),
                      "pairs_per_plan must be >= 0 (0: every pair of a plan), got -1"),
        "wrong robot": (node("planner_node", f"checkpoint:={policy_files.vlm}", *files, "robot_config:=libero"),
                        "plans 14-D waypoints but robot libero has 8 proprio dims"),
    }
    for what, (proc, message) in procs.items():
        assert proc.wait(120) == 1, f"{what}: {proc.output}"
        assert "cannot start" in proc.output and message in proc.output, f"{what}: {proc.output}"


def test_wp_stop_without_a_graph_fails_clearly():
    stop = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--timeout", "1"])
    resume = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--resume", "--timeout", "1"])
    assert stop.wait(60) == 1 and "NOT CONFIRMED: the filler's /wp/stop service is not available" in stop.output
    assert resume.wait(60) == 1 and "/wp/resume is not available" in resume.output
    bad = Proc([sys.executable, "-m", "wp_policy.ros.stop_cli", "--timeout", "0"])
    assert bad.wait(60) == 2 and "--timeout must be positive" in bad.output


def test_an_ae_with_a_short_horizon_stops_the_filler_at_start_up(policy_files, r1lite_config, tmp_path):
    from wp_policy.models import WaypointActionExpert, ae_config, save_pretrained

    keys = tuple(c.model_key for c in r1lite_config.cameras)
    short = save_pretrained(WaypointActionExpert(ae_config("tiny", image_keys=keys, horizon=16)), tmp_path / "ae16")
    proc = node("filler_node", f"checkpoint:={short}", f"stats:={policy_files.stats}",
                f"tokenizer:={policy_files.tokenizer}")
    assert proc.wait(120) == 1, proc.output
    assert "cannot start" in proc.output and "the AE fills 16-step chunks" in proc.output, proc.output
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("error, one_line", [("ConfigError('bad value in robot.yaml')", True),
                                             ("ValueError('a bug')", False)])
def test_only_configuration_errors_are_one_fatal_line(error, one_line):
    """A known configuration error is one 'cannot start' line; any other exception is a bug and keeps its
    traceback (it used to be reported as a configuration error too)."""
    code = ("from wp_policy.config_io import ConfigError\nfrom wp_policy.ros.node_main import run_node\n"
            f"def factory():\n    raise {error}\nrun_node(factory, name='probe')\n")
    proc = Proc([sys.executable, "-c", code])
    assert proc.wait(60) == 1
    assert ("cannot start: bad value in robot.yaml" in proc.output) is one_line, proc.output
    assert ("Traceback" in proc.output and "ValueError: a bug" in proc.output) is (not one_line), proc.output


def test_a_misspelt_parameter_stops_the_node_with_the_valid_names(policy_files):
    files = [f"stats:={policy_files.stats}", f"tokenizer:={policy_files.tokenizer}"]
    filler = node("filler_node", f"checkpoint:={policy_files.ae}", *files, "obs_timeot:=0.1")
    aggregator = node("aggregator_node", "sync_tolerence:=0.1")
    for proc, name, typo, valid in ((filler, "filler", "obs_timeot", "'obs_timeout'"),
                                    (aggregator, "aggregator", "sync_tolerence", "'sync_tolerance'")):
        assert proc.wait(120) == 1, proc.output
        assert f"cannot start: node {name}: unknown parameter(s) ['{typo}']; valid: [" in proc.output, proc.output
        assert valid in proc.output and "Traceback" not in proc.output
