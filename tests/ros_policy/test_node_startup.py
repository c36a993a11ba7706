"""Bad configuration stops a node at start-up with one clear line and exit code 1 (also through wp-launch: one line
per failing node, naming the setting to change, no traceback); wp-stop fails clearly when nobody listens."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from ros_helpers import Proc, wp_launch

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
        "bad lead": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "plan_lead_s:=-0.5"),
                     "plan_lead_s must be a number of seconds >= 0, got -0.5"),
        "bad noise": (node("filler_node", f"checkpoint:={policy_files.ae}", *files, "noise_scale:=-0.5"),
                      "noise_scale must be a finite number >= 0, got -0.5"),
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


def startup_lines(proc: Proc) -> list[str]:
    return [line for line in proc.lines if "cannot start" in line]


def test_wp_launch_reports_each_startup_failure_in_one_line(policy_files, tmp_path):
    missing = policy_files.policy_yaml(tmp_path / "policy.yaml", "r1lite", vlm_checkpoint="vlm_not_here")
    procs = {  # the planner fails; the filler, started too, is stopped
        "missing checkpoint": (wp_launch("r1lite", "--nodes", "planner,filler", f"policy:={missing}"),
                               [f"vlm_checkpoint: checkpoint weights not found: {tmp_path / 'vlm_not_here'}",
                                "(change vlm_checkpoint:= or vlm_checkpoint in the policy file)"]),
        "bad device": (wp_launch("r1lite", "--nodes", "planner", *policy_files.launch_args(), "device:=gpu"),
                       ["device must be auto, cpu, cuda or cuda:N, got 'gpu'"]),
    }
    for what, (proc, parts) in procs.items():
        assert proc.wait(120) == 1, f"{what}: {proc.output}"
        (line,) = startup_lines(proc)
        assert line.startswith("[wp-launch] ERROR: node 'planner' cannot start (exited with code 1): ")
        assert all(part in line for part in parts), f"{what}: {proc.output}"
        assert "Traceback" not in proc.output and "started final_hold" not in proc.output, proc.output


def test_a_failure_in_every_model_node_is_one_line_each_and_no_final_hold(policy_files, tmp_path):
    """Both nodes refuse the stats file; whichever fails first stops the graph, so the other may or may not get as
    far as failing: each failure that happened is one line, and a filler that never started gets no final hold."""
    proc = wp_launch("r1lite", *policy_files.launch_args(), f"stats:={tmp_path / 'none.json'}")
    assert proc.wait(120) == 1, proc.output
    lines = startup_lines(proc)
    assert 1 <= len(lines) <= 2 and len({line.split("'")[1] for line in lines}) == len(lines), proc.output
    assert all("stats_path: " in line and "(change stats:= or stats_path in the policy file)" in line
               for line in lines), proc.output
    assert "Traceback" not in proc.output and "started final_hold" not in proc.output, proc.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_naming_the_device_setting(policy_files):
    proc = node("planner_node", f"checkpoint:={policy_files.vlm}", f"stats:={policy_files.stats}",
                f"tokenizer:={policy_files.tokenizer}", "device:=cuda")
    assert proc.wait(120) == 1, proc.output
    (line,) = startup_lines(proc)
    assert "cannot start: device: 'cuda' requested but" in line and "use auto (falls back to the CPU) or cpu" in line
    assert "(change device:= or device in the policy file)" in line and "Traceback" not in proc.output


@pytest.mark.parametrize("module", ["planner_node", "filler_node"])
def test_a_bug_at_start_up_keeps_its_one_traceback_and_clean_up_adds_none(module, policy_files):
    """rclpy's shutdown destroys the half-built node: its clean-up must not raise a second error."""
    code = ("from wp_policy.runtime.policy import WaypointPolicy\n"
            "def boom(config):\n    raise RuntimeError('a bug while loading')\n"
            "WaypointPolicy.from_config = boom\n"
            f"from wp_policy.ros.{module} import main\n"
            f"main(['--ros-args', '-p', 'checkpoint:={policy_files.ae}', '-p', 'stats:={policy_files.stats}', "
            f"'-p', 'tokenizer:={policy_files.tokenizer}'])\n")
    proc = Proc([sys.executable, "-c", code])
    assert proc.wait(60) == 1
    assert proc.output.count("Traceback") == 1 and "RuntimeError: a bug while loading" in proc.output, proc.output
    assert "AttributeError" not in proc.output and "during handling" not in proc.output, proc.output


def test_a_bad_robot_yaml_stops_the_nodes_naming_the_key(tmp_path):
    from wp_policy.config_io import load_yaml
    from wp_policy.paths import config_dir

    old = load_yaml(config_dir() / "robots" / "r1lite.yaml")
    del old["gripper"]
    old["gripper_transform"] = "r1lite_stroke"  # a config written before `gripper:`
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    libero = load_yaml(config_dir() / "robots" / "libero.yaml")
    libero["ros"]["commands"][0]["msg_type"] = "std_msgs/Float64MultiArray"
    (tmp_path / "libero_f64.yaml").write_text(yaml.safe_dump(libero))
    procs = {
        "removed key": (node("aggregator_node", f"robot_config:={tmp_path / 'old.yaml'}"),
                        "old.yaml: gripper_transform: replaced by `gripper:`"),
        "bridge command type": (node("libero_bridge_node", f"robot_config:={tmp_path / 'libero_f64.yaml'}",
                                     "use_sim_time:=true"),
                                "the bridge reads sensor_msgs/JointState commands (stamped, with a hold reason); "
                                "ros.commands ['/libero/action'] use another msg_type"),
    }
    for what, (proc, message) in procs.items():
        assert proc.wait(120) == 1, f"{what}: {proc.output}"
        assert "cannot start" in proc.output and message in proc.output, f"{what}: {proc.output}"
        assert "Traceback" not in proc.output, proc.output
