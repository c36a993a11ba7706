"""One policy file everywhere: ``wp-launch r1lite policy:=<policy.yaml>`` gives the running planner and filler every
setting of the file (over the params file), the path arguments override it, and ``device auto`` on a machine
without CUDA runs on the CPU with a warning in the log and on /diagnostics instead of failing."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from ros_helpers import Listener, diagnostics_of, wait_for, wp_launch

from wp_policy.paths import config_dir

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SETTINGS = {"num_waypoints": 2, "num_flow_steps": 3, "seed": 11, "noise_scale": 0.25, "max_token_len": 200}


def node_parameters(listener: Listener, node: str, names: list[str]) -> dict:
    """The live values of ``names`` on ``node``, asked over its parameter service."""
    client = listener.create_client(GetParameters, f"/{node}/get_parameters")
    wait_for(client.service_is_ready, 30, f"{node}'s parameter service")
    future = client.call_async(GetParameters.Request(names=names))
    wait_for(future.done, 10, f"{node}'s parameters")
    listener.destroy_client(client)
    return dict(zip(names, (parameter_value_to_python(v) for v in future.result().values)))


def test_the_policy_file_reaches_the_nodes_and_arguments_override_it(policy_files, rclpy_context, tmp_path):
    folder = tmp_path / "policy"
    folder.mkdir()
    shutil.copy(policy_files.tokenizer, folder / "tok.model")
    policy = folder / "policy.yaml"  # no device: the default, auto
    policy.write_text(yaml.safe_dump({
        "robot": "r1lite", "vlm_checkpoint": str(policy_files.vlm), "ae_checkpoint": str(policy_files.ae),
        "stats_path": "not_here.json",  # would stop both nodes, unless the stats:= argument overrides it
        "tokenizer_path": "tok.model",  # relative: to the policy file
        **SETTINGS}))
    params = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    params["planner"]["ros__parameters"].update(num_waypoints=5, cpu_threads=1, diagnostics_period=0.25)
    params["filler"]["ros__parameters"].update(num_flow_steps=4, cpu_threads=1, diagnostics_period=0.25)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))

    listener = Listener("launch_policy_listener")
    listener.listen(DiagnosticArray, "/diagnostics", depth=1000)
    graph = wp_launch("r1lite", "--nodes", "planner,filler", f"policy:={policy}", f"stats:={policy_files.stats}",
                      f"params_file:={params_file}")
    try:
        wait_for(lambda: (diagnostics_of(listener, "/planner") and diagnostics_of(listener, "/filler"))
                 or graph.popen.poll() is not None, 120, "both nodes on /diagnostics")
        assert graph.popen.poll() is None, graph.output
        common = ["robot_config", "checkpoint", "stats", "tokenizer", "device"]
        planner = node_parameters(listener, "planner", [*common, "num_waypoints", "max_token_len"])
        filler = node_parameters(listener, "filler", [*common, "num_flow_steps", "seed", "noise_scale"])
        tokenizer = str((folder / "tok.model").resolve())
        for values, checkpoint in ((planner, policy_files.vlm), (filler, policy_files.ae)):
            assert {k: values[k] for k in common} == {"robot_config": "r1lite", "checkpoint": str(checkpoint),
                                                      "stats": str(policy_files.stats), "tokenizer": tokenizer,
                                                      "device": "auto"}
        assert (planner["num_waypoints"], planner["max_token_len"]) == (2, 200)  # the file wins over params.yaml
        assert (filler["num_flow_steps"], filler["seed"], filler["noise_scale"]) == (3, 11, 0.25)
        if not torch.cuda.is_available():
            for node in ("/planner", "/filler"):
                wait_for(lambda n=node: any(s.level == DiagnosticStatus.WARN and "device auto:" in s.message
                                            and "running on the CPU" in s.message
                                            for s in diagnostics_of(listener, n)), 10, f"{node}'s CPU warning")
            warnings = [line for line in graph.lines if "[WARN]" in line and "device auto:" in line]
            assert sorted(line.split("]")[0] for line in warnings) == ["[filler", "[planner"], graph.output
    finally:
        code = graph.stop()
        listener.close()
    assert code == 0, graph.output
