"""PolicyConfig: the one policy file (``policy.yaml``) that wp-eval, wp-demo, wp-launch and the ROS launch files read.

Kept free of torch and rclpy on purpose: the launch files resolve a graph's ``policy:=`` argument inside ROS's own
Python (``ros2 launch``), where neither the models' dependencies nor the project venv are importable.
Device *resolution* (``auto`` -> cuda or cpu) needs torch and lives with the models (``wp_policy.runtime.policy``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from wp_policy.config_io import load_config

DEVICE_AUTO = "auto"  # CUDA when torch sees a GPU, otherwise the CPU with a warning
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PATH_FIELDS = ("vlm_checkpoint", "ae_checkpoint", "stats_path", "tokenizer_path")
ROBOT_YAML_SUFFIXES = (".yaml", ".yml")  # a robot value ending so is a file path; otherwise a configs/robots name


def check_device(device: str) -> None:
    """A ValueError unless ``device`` is auto, cpu, cuda or cuda:N (the values every policy consumer accepts)."""
    if not _DEVICE.match(device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


@dataclass(frozen=True)
class PolicyConfig:
    robot: str  # robot config name (libero, r1lite) or YAML path (relative: to this file)
    vlm_checkpoint: str = ""  # directory written by save_pretrained (empty: no planner, e.g. the filler node)
    ae_checkpoint: str = ""  # directory written by save_pretrained (empty: no filler, e.g. the planner node)
    stats_path: str = ""  # q99 stats JSON shared by both models (file, or a directory holding one)
    tokenizer_path: str = ""  # SentencePiece model (PaliGemma's in production)
    device: str = DEVICE_AUTO  # auto, cpu, cuda or cuda:N
    num_waypoints: int = 7  # M, waypoints per plan
    num_flow_steps: int = 10  # Euler steps of the AE sampler
    seed: int = 0  # AE noise seed (combined with the observation stamp, see fill_seed)
    noise_scale: float = 1.0  # AE sampling temperature: std of the flow's starting noise (0: deterministic chunks)
    max_token_len: int = 256  # longest planner prompt (instruction + state + "Action: ") in tokens

    def __post_init__(self):
        for name in ("num_waypoints", "num_flow_steps", "max_token_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise ValueError(f"noise_scale must be a finite number >= 0, got {self.noise_scale}")
        check_device(self.device)
        if not (self.vlm_checkpoint or self.ae_checkpoint):
            raise ValueError("a policy needs at least one of vlm_checkpoint and ae_checkpoint")
        missing = [k for k in ("stats_path", "tokenizer_path") if not getattr(self, k)]
        if missing:
            raise ValueError(f"policy config: {', '.join(missing)} must be set")

    def resolve(self, base: Path) -> PolicyConfig:
        """Relative paths are relative to the config file that named them (also a robot YAML path, so a robot config
        can travel with its policy; a robot *name* stays a name)."""
        fields = [*PATH_FIELDS, *(["robot"] if Path(self.robot).suffix in ROBOT_YAML_SUFFIXES else [])]
        relative = [k for k in fields if getattr(self, k) and not Path(getattr(self, k)).expanduser().is_absolute()]
        return replace(self, **{k: str(base / getattr(self, k)) for k in relative})


def load_policy_config(path: str | Path, overrides: dict | None = None) -> PolicyConfig:
    return load_config(PolicyConfig, path, overrides).resolve(Path(path).resolve().parent)
