"""Parameters shared by the planner and filler nodes: declaration, validation, and the PolicyConfig they describe.

Each node declares :data:`COMMON` plus its own table (``name: (default, description)``); values are validated in a
set-parameters callback (so ``-p device:=gpu`` fails at start-up with a message naming the value) and the model
paths are checked before anything is loaded. The parameters that carry a policy-file setting (paths, device,
num_waypoints, ...) default to PolicyConfig's defaults; the launchers fill them from ``policy:=`` (wp_policy.graph).
:func:`load_policy` turns a setting that cannot be used into one line that says which launch argument or policy-file
key to change, and :func:`report_device` reports ``device auto`` running on the CPU (log and /diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from wp_policy.config_io import ConfigError
from wp_policy.graph import POLICY_ARG, POLICY_OVERRIDES
from wp_policy.policy_config import check_device
from wp_policy.ros.diagnostics import Diagnostics
from wp_policy.ros.node_main import reject_unknown_parameters
from wp_policy.ros.qos import QOS_NAMES
from wp_policy.runtime.policy import PolicyConfig, PolicySettingError, WaypointPolicy
from wp_policy.runtime.replan import ReplanConfig


def policy_default(field: str) -> Any:
    """PolicyConfig's default for ``field``: a node without a policy file behaves like a policy file without it."""
    return PolicyConfig.__dataclass_fields__[field].default


COMMON = {  # name: (default, description)
    "robot_config": ("r1lite", "robot config name (configs/robots/<name>.yaml) or path to a robot YAML"),
    "checkpoint": ("", "model checkpoint directory written by save_pretrained (required)"),
    "stats": ("", "q99 normalisation stats JSON shared by the VLM and the AE (required)"),
    "tokenizer": ("", "SentencePiece tokenizer model (required)"),
    "instruction": ("", "task instruction to start with; /wp/instruction replaces it"),
    "device": (policy_default("device"), "torch device: auto (CUDA when available, otherwise the CPU with a "
                                         "warning), cpu, cuda or cuda:N"),
    "cpu_threads": (0, "torch CPU threads (0: torch's default); 1 avoids oversubscribing a small shared CPU"),
    "emulate_latency_ms": (0.0, "latency studies only: pad every model call to at least this long, to run the graph "
                                "as if the model were that slow (0 in deployment)"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
}
READ_ONLY = ("robot_config", "checkpoint", "stats", "tokenizer", "device", "cpu_threads", "diagnostics_period")
_REPLAN_DEFAULT = ReplanConfig()
REPLAN = {  # the ReplanConfig the filler runs (and the LIBERO bridge records); read-only, checked by replan_config
    "replan_mode": (_REPLAN_DEFAULT.mode, "after_last: plan when the last pair has run (the original loop); "
                                          "lookahead: fill ahead and ask for the next plan plan_lead_s early"),
    "pairs_per_plan": (_REPLAN_DEFAULT.pairs_per_plan, "run the first N pairs of each plan, then ask for a new one "
                                                       "(0: all pairs)"),
    "plan_lead_s": (_REPLAN_DEFAULT.plan_lead_s, "lookahead: ask for the next plan once at most this much queued "
                                                 "motion is left; cover the VLM + AE latency"),
    "fill_lead_s": (_REPLAN_DEFAULT.fill_lead_s, "lookahead: also fill pairs that start within this time (cover "
                                                 "the AE latency, so short pairs do not starve the stream)"),
    "pair_start": (_REPLAN_DEFAULT.pair_start, "planned: fill each pair from the previous planned waypoint; "
                                               "measured (after_last only): from the proprio measured when it starts"),
}


def _is_device(value: str) -> bool:
    try:
        check_device(value)
    except ValueError:
        return False
    return True


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device": (_is_device, "must be auto, cpu, cuda or cuda:N"),
    "cpu_threads": (lambda v: v >= 0, "must be >= 0"),
    "emulate_latency_ms": (lambda v: v >= 0, "must be >= 0"),
    "diagnostics_period": (lambda v: v > 0, "must be > 0"),
    "obs_timeout": (lambda v: v > 0, "must be > 0"),
    "feedback_timeout": (lambda v: v > 0, "must be > 0"),
    "replan_retry_s": (lambda v: v > 0, "must be > 0"),
    "num_waypoints": (lambda v: v >= 1, "must be >= 1"),
    "num_flow_steps": (lambda v: v >= 1, "must be >= 1"),
    "noise_scale": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    "max_token_len": (lambda v: v >= 1, "must be >= 1"),
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


def replan_config(values: Mapping[str, Any]) -> ReplanConfig:
    """The node's :data:`REPLAN` parameters as a ReplanConfig; a bad value is a ConfigError naming it."""
    try:
        return ReplanConfig.from_params(values)
    except ValueError as exc:
        raise ConfigError(f"node parameters: {exc}") from None


def policy_config(values: Mapping[str, Any], model: str, **extra) -> PolicyConfig:
    """The PolicyConfig of a node's parameters; ``model`` (``vlm_checkpoint`` or ``ae_checkpoint``) is both the
    PolicyConfig field the node's ``checkpoint`` fills and the launch argument that sets it."""
    if model not in ("vlm_checkpoint", "ae_checkpoint"):
        raise ValueError(f"model must be vlm_checkpoint or ae_checkpoint, got {model!r}")
    for name, launch_arg in (("checkpoint", model), ("stats", "stats"), ("tokenizer", "tokenizer")):
        if not values[name]:
            raise ConfigError(f"parameter {name!r} is empty: pass {launch_arg}:=<path> or {POLICY_ARG}:=<policy.yaml> "
                              f"to wp-launch / ros2 launch (or -p {name}:=<path>)")
    try:
        return PolicyConfig(robot=values["robot_config"], stats_path=values["stats"],
                            tokenizer_path=values["tokenizer"], device=values["device"],
                            **{model: values["checkpoint"]}, **extra)
    except ValueError as exc:
        raise ConfigError(f"node parameters: {exc}") from None


def load_policy(values: Mapping[str, Any], model: str, **extra) -> WaypointPolicy:
    """:func:`policy_config` loaded; a setting that cannot be used is a ConfigError that also says where it is set."""
    try:
        return WaypointPolicy.from_config(policy_config(values, model, **extra))
    except PolicySettingError as exc:
        raise ConfigError(f"{exc} (change {POLICY_OVERRIDES[exc.field]}:= or {exc.field} in the policy file)") \
            from None


def report_device(node: Node, policy: WaypointPolicy, diag: Diagnostics) -> None:
    """``device auto`` without a GPU runs on the CPU: a WARNING in the log and a standing WARN on /diagnostics."""
    if policy.device_warning:
        node.get_logger().warning(f"{policy.device_warning}; set device:=cpu to choose the CPU explicitly")
        diag.standing.append(policy.device_warning)


def apply_cpu_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)
