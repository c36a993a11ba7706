"""Training run configuration: one frozen dataclass tree per YAML file in ``configs/train/``, loaded via config_io.

The trainer is generic; everything mode-specific lives in the ``model:`` and ``data:`` sections, which the
mode's :class:`~wp_training.tasks.interface.TrainTask` parses into its own dataclasses. Sizes are per GPU: the global
batch is ``batch_size x world_size x grad_accum`` and is checked against ``min_global_batch`` once the world size
is known (:func:`check_global_batch`), because too small a global batch silently fails to converge
(the OpenVLA-OFT memory analysis in docs/training.md asks for >= 16; the Pi0.5 recipe used 64).

Relative paths in a config resolve against the current directory, except ``memory.spec`` which names a file
under the project's ``configs/`` directory (``memory/pi05_ae.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wp_policy.config_io import ConfigError, apply_overrides, from_dict, load_config
from wp_policy.paths import config_dir


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(name: str, value: float) -> None:
    _require(math.isfinite(value), f"{name} must be a finite number, got {value}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + linear warmup + cosine decay (openpi's Pi0.5 defaults, peak LR from the original recipe)."""

    peak_lr: float = 5.0e-5
    end_lr: float = 2.5e-6  # cosine floor reached at num_steps
    warmup_steps: int = 1000
    weight_decay: float = 1.0e-10  # applied to >= 2-D weights only (not biases, norms)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1.0e-8
    clip_grad_norm: float = 1.0

    def __post_init__(self):
        for name in ("peak_lr", "end_lr", "weight_decay", "eps", "clip_grad_norm"):
            _finite(f"optim.{name}", getattr(self, name))
        _require(self.peak_lr > 0, f"optim.peak_lr must be > 0, got {self.peak_lr}")
        _require(0 <= self.end_lr <= self.peak_lr, f"optim.end_lr ({self.end_lr}) must be in [0, peak_lr={self.peak_lr}]")
        _require(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(all(0 <= b < 1 for b in self.betas), f"optim.betas must be in [0, 1), got {list(self.betas)}")
        _require(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _require(self.clip_grad_norm > 0, f"optim.clip_grad_norm must be > 0, got {self.clip_grad_norm}")


@dataclass(frozen=True)
class LoraSettings:
    """Optional LoRA (peft). Patterns are fnmatch globs over module / parameter names, or the task's group names."""

    enabled: bool = False
    rank: int = 32
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()  # Linear modules to adapt; empty: the task's default targets
    also_train: tuple[str, ...] = ()  # parameters trained in full beside the adapters; empty: the task's default

    def __post_init__(self):
        _require(self.rank > 0, f"lora.rank must be > 0, got {self.rank}")
        _finite("lora.alpha", self.alpha)
        _require(self.alpha > 0, f"lora.alpha must be > 0, got {self.alpha}")
        _require(0 <= self.dropout < 1, f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class CheckpointSettings:
    every_steps: int = 1000
    keep_last: int = 3  # older step_* directories are deleted after a successful save

    def __post_init__(self):
        _require(self.every_steps > 0, f"checkpoint.every_steps must be > 0, got {self.every_steps}")
        _require(self.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass(frozen=True)
class LogSettings:
    """metrics.jsonl and TensorBoard are always written; wandb only when a project is named (and importable)."""

    every_steps: int = 50
    wandb_project: str = ""
    wandb_run_name: str = ""

    def __post_init__(self):
        _require(self.every_steps > 0, f"log.every_steps must be > 0, got {self.every_steps}")


@dataclass(frozen=True)
class DistSettings:
    """``backend: auto`` is nccl on GPU and gloo on CPU; the original recipe needed gloo on GPU too (nccl crashed)."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: cuda when available
    find_unused_parameters: bool = False


@dataclass(frozen=True)
class LoaderSettings:
    num_workers: int = 4
    prefetch_factor: int = 2
    pin_memory: bool = True

    def __post_init__(self):
        _require(self.num_workers >= 0, f"loader.num_workers must be >= 0, got {self.num_workers}")
        _require(self.prefetch_factor >= 1, f"loader.prefetch_factor must be >= 1, got {self.prefetch_factor}")


@dataclass(frozen=True)
class MemoryHints:
    """What the memory planner needs beyond the model: the architecture spec and the workload's camera count."""

    spec: str = ""  # file under configs/ (e.g. memory/pi05_ae.yaml) or an absolute path; empty: no activation model
    image_views: int = 2

    def __post_init__(self):
        _require(self.image_views >= 0, f"memory.image_views must be >= 0, got {self.image_views}")

    def spec_path(self) -> Path | None:
        if not self.spec:
            return None
        path = Path(self.spec)
        return path if path.is_absolute() else config_dir() / path


@dataclass(frozen=True)
class TrainConfig:
    mode: str  # "ae", "vlm", or "package.module:attribute" naming a TrainTask
    run_dir: Path  # checkpoints/, metrics.jsonl, tb/ and final_model/ go here
    num_steps: int
    batch_size: int  # per GPU, per micro-step
    grad_accum: int = 1
    min_global_batch: int = 1
    seed: int = 0
    # fp32: no autocast. bf16_mixed: bf16 autocast, fp32 master weights/grads/AdamW (16 B per trainable param).
    # bf16: weights, grads and AdamW states in bf16 under bf16 autocast (8 B per param; original recipe, openpi).
    precision: Literal["fp32", "bf16_mixed", "bf16"] = "bf16_mixed"
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"  # frozen weights' storage (bfloat16: bf16_mixed only)
    gradient_checkpointing: bool = False
    pretrained_path: Path | None = None  # Pi0.5 base safetensors (file or directory), loaded through the task
    freeze: tuple[str, ...] = ()  # task group names (e.g. "vision") or fnmatch globs over parameter names
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    log: LogSettings = field(default_factory=LogSettings)
    dist: DistSettings = field(default_factory=DistSettings)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    memory: MemoryHints = field(default_factory=MemoryHints)
    model: dict[str, Any] = field(default_factory=dict)  # parsed by the task's model config class
    data: dict[str, Any] = field(default_factory=dict)  # parsed by the task's data config class

    def __post_init__(self):
        _require(bool(self.mode.strip()), "mode must not be empty")
        _require(str(self.run_dir).strip() not in ("", "."), f"run_dir must name a directory, got {str(self.run_dir)!r}")
        _require(self.num_steps > 0, f"num_steps must be > 0, got {self.num_steps}")
        _require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        _require(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        _require(self.min_global_batch >= 1, f"min_global_batch must be >= 1, got {self.min_global_batch}")
        _require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _require(
            self.optim.warmup_steps < self.num_steps,
            f"optim.warmup_steps ({self.optim.warmup_steps}) must be < num_steps ({self.num_steps})",
        )
        _require(
            not (self.dist.strategy == "fsdp" and self.frozen_dtype != "float32"),
            "frozen_dtype bfloat16 is not supported with dist.strategy fsdp (FSDP shards need one dtype); use float32",
        )
        _require(
            self.frozen_dtype == "float32" or self.precision == "bf16_mixed",
            f"frozen_dtype bfloat16 needs precision bf16_mixed (its autocast reconciles the dtypes), got "
            f"precision {self.precision}",
        )


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Load and validate a training config; ``overrides`` are dotted keys (``optim.peak_lr``) applied first."""
    return load_config(TrainConfig, path, overrides)


def train_config_from_checkpoint(checkpoint: Path, overrides: dict | None = None) -> TrainConfig:
    """The config a checkpoint was trained with (stored in its trainer state), with ``overrides`` applied."""
    from wp_training.engine.train_state import CheckpointError, read_trainer_state  # imports torch: only when needed

    if not (Path(checkpoint) / "trainer.json").is_file():
        raise CheckpointError(f"{checkpoint}: not a training checkpoint (no trainer.json); pass a "
                              f"checkpoints/step_XXXXXXXX directory, or --config")
    data = apply_overrides(dict(read_trainer_state(Path(checkpoint))["config"]), overrides)
    return from_dict(TrainConfig, data, source=f"{checkpoint}/trainer.json")


def global_batch(cfg: TrainConfig, world_size: int) -> int:
    return cfg.batch_size * world_size * cfg.grad_accum


def check_global_batch(cfg: TrainConfig, world_size: int) -> int:
    """Return the global batch, or raise ConfigError naming min_global_batch and how to reach it."""
    total = global_batch(cfg, world_size)
    if total < cfg.min_global_batch:
        need = math.ceil(cfg.min_global_batch / (cfg.batch_size * world_size))
        raise ConfigError(
            f"min_global_batch: global batch {cfg.batch_size} (batch_size) x {world_size} (processes) x {cfg.grad_accum} "
            f"(grad_accum) = {total} is below min_global_batch={cfg.min_global_batch}; set grad_accum={need} "
            f"(or more GPUs / a larger batch_size)"
        )
    return total


def check_paths(cfg: TrainConfig) -> None:
    """Fail before any work if an input file the run needs is missing (ConfigError naming the field)."""
    if cfg.pretrained_path is not None and not cfg.pretrained_path.exists():
        raise ConfigError(f"pretrained_path: {cfg.pretrained_path} does not exist")
    spec = cfg.memory.spec_path()
    if spec is not None and not spec.is_file():
        raise ConfigError(f"memory.spec: {spec} does not exist")
    if cfg.run_dir.exists() and not cfg.run_dir.is_dir():
        raise ConfigError(f"run_dir: {cfg.run_dir} exists and is not a directory")
