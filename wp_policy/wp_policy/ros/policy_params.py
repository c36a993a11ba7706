"""Parameters shared by the planner and filler nodes: declaration, validation, and the PolicyConfig they describe.

Each node declares :data:`COMMON` plus its own table (``name: (default, description)``); values are validated in a
set-parameters callback (so ``-p device:=gpu`` fails at start-up with a message naming the value) and the model
paths are checked before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from wp_policy.config_io import ConfigError
from wp_policy.ros.node_main import reject_unknown_parameters
from wp_policy.ros.qos import QOS_NAMES
from wp_policy.runtime.policy import PolicyConfig

COMMON = {  # name: (default, description)
    "robot_config": ("r1lite", "robot config name (configs/robots/<name>.yaml) or path to a robot YAML"),
    "checkpoint": ("", "model checkpoint directory written by save_pretrained (required)"),
    "stats": ("", "q99 normalisation stats JSON shared by the VLM and the AE (required)"),
    "tokenizer": ("", "SentencePiece tokenizer model (required)"),
    "instruction": ("", "task instruction to start with; /wp/instruction replaces it"),
    "device": ("cpu", "torch device: cpu, cuda or cuda:N"),
    "cpu_threads": (0, "torch CPU threads (0: torch's default); 1 avoids oversubscribing a small shared CPU"),
    "emulate_latency_ms": (0.0, "latency studies only: pad every model call to at least this long, to run the graph "
                                "as if the model were that slow (0 in deployment)"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
}
READ_ONLY = ("robot_config", "checkpoint", "stats", "tokenizer", "device", "cpu_threads", "diagnostics_period")

_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device": (lambda v: v == "cpu" or v.startswith("cuda"), "must be cpu, cuda or cuda:N"),
    "cpu_threads": (lambda v: v >= 0, "must be >= 0"),
    "emulate_latency_ms": (lambda v: v >= 0, "must be >= 0"),
    "diagnostics_period": (lambda v: v > 0, "must be > 0"),
    "obs_timeout": (lambda v: v > 0, "must be > 0"),
    "feedback_timeout": (lambda v: v > 0, "must be > 0"),
    "plan_lead_s": (lambda v: v >= 0, "must be >= 0"),
    "fill_lead_s": (lambda v: v >= 0, "must be >= 0"),
    "replan_retry_s": (lambda v: v > 0, "must be > 0"),
    "num_waypoints": (lambda v: v >= 1, "must be >= 1"),
    "num_flow_steps": (lambda v: v >= 1, "must be >= 1"),
    "replan_mode": (lambda v: v in ("after_last", "lookahead"), "must be after_last or lookahead"),
    "pairs_per_plan": (lambda v: v >= 0, "must be >= 0 (0: every pair of a plan)"),
    "clock_mode": (lambda v: v in ("wall", "lockstep"), "must be wall or lockstep"),
    "command_qos": (lambda v: v in ("", *QOS_NAMES), f"must be empty or one of {list(QOS_NAMES)}"),
}


def declare(node: Node, params: Mapping[str, tuple[Any, str]], read_only: tuple[str, ...]) -> dict[str, Any]:
    """Declare ``params`` (validated by :data:`_RULES`), refuse any other given parameter, return the values."""
    node.add_on_set_parameters_callback(_validate)
    for name, (default, description) in params.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                  read_only=name in read_only))
    reject_unknown_parameters(node)
    return {name: node.get_parameter(name).value for name in params}



def _validate(params) -> SetParametersResult:
    for p in params:
        rule = _RULES.get(p.name)
        if rule is not None and not rule[0](p.value):
            return SetParametersResult(successful=False, reason=f"{p.name} {rule[1]}, got {p.value!r}")
    return SetParametersResult(successful=True)


def policy_config(values: Mapping[str, Any], model: str, **extra) -> PolicyConfig:
    """The PolicyConfig of a node's parameters; ``model`` (``vlm_checkpoint`` or ``ae_checkpoint``) is both the
    PolicyConfig field the node's ``checkpoint`` fills and the launch argument that sets it."""
    if model not in ("vlm_checkpoint", "ae_checkpoint"):
        raise ValueError(f"model must be vlm_checkpoint or ae_checkpoint, got {model!r}")
    for name, launch_arg in (("checkpoint", model), ("stats", "stats"), ("tokenizer", "tokenizer")):
        if not values[name]:
            raise ConfigError(f"parameter {name!r} is empty: pass {launch_arg}:=<path> to wp-launch / ros2 launch "
                             f"(or -p {name}:=<path>)")
    try:
        return PolicyConfig(robot=values["robot_config"], stats_path=values["stats"],
                            tokenizer_path=values["tokenizer"], device=values["device"],
                            **{model: values["checkpoint"]}, **extra)
    except ValueError as exc:
        raise ConfigError(f"node parameters: {exc}") from None


def apply_cpu_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)
