"""Typed model configs and the two presets (``tiny`` for CPU tests, ``pi05`` for the real Pi0.5 sizes).

A config is everything needed to rebuild a model graph: it is saved as YAML next to the weights
(:mod:`wp_policy.models.checkpoint`) and loaded back through :func:`wp_policy.config_io.from_dict`, so a checkpoint
loads without knowing which preset produced it. Presets are plain functions returning configs; any field can be
overridden by keyword (``ae_config("pi05", image_keys=("base_0_rgb", "left_wrist_0_rgb"))``).

Sizes of ``pi05`` (openpi's pi05_base; docs/models.md): SigLIP So400m/14 at 224 (27 layers, width 1152, 256 tokens
per view), Gemma 2B (width 2048, depth 18, mlp 16384, 8 heads, 1 KV head, head_dim 256), Gemma 300M expert
(width 1024, same depth/heads), vocab 257152, bfloat16.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from wp_policy import batch as B
from wp_policy.tokenizer import MAX_DURATION, PALIGEMMA_VOCAB_SIZE, TokenLayout

DType = Literal["float32", "bfloat16", "float16"]
DEFAULT_IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")


@dataclass(frozen=True)
class VisionSpec:
    """SigLIP vision tower (no pooling head: PaliGemma uses every patch token)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    image_size: int = 224

    def __post_init__(self):
        _positive(self, ("width", "depth", "mlp_dim", "num_heads", "patch_size", "image_size"))
        if self.width % self.num_heads:
            raise ValueError(f"vision width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class GemmaSpec:
    """One Gemma tower (the PaliGemma language model or the action expert)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int

    def __post_init__(self):
        _positive(self, ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim"))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")


@dataclass(frozen=True)
class AEConfig:
    """WaypointActionExpert: PaliGemma prefix + Gemma expert, flow matching over a horizon x action_dim chunk."""

    vision: VisionSpec
    llm: GemmaSpec
    expert: GemmaSpec
    kind: Literal["waypoint_ae"] = "waypoint_ae"
    vocab_size: int = PALIGEMMA_VOCAB_SIZE
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS  # camera model_keys, in prefix order
    dtype: DType = "bfloat16"
    horizon: int = B.HORIZON
    action_dim: int = B.MODEL_ACTION_DIM
    proprio_dim: int = B.MODEL_PROPRIO_DIM
    duration_scale: float = float(MAX_DURATION)  # dur_emb = sinusoidal(duration / duration_scale)
    num_sampling_steps: int = 10
    gradient_checkpointing: bool = False
    # proprio dims the AE reads relative to the pair's start: END_PROPRIO carries end - start there and the start's
    # own value is zeroed (START_PROPRIO and the prompt), see wp_policy.transforms.ae_inputs. Empty: absolute start
    # and end (the original inputs).
    relative_dims: tuple[int, ...] = ()

    def __post_init__(self):
        _check_common(self)
        bad = [d for d in self.relative_dims if not 0 <= d < self.proprio_dim]
        if bad or len(set(self.relative_dims)) != len(self.relative_dims):
            raise ValueError(f"relative_dims must be unique proprio dims in 0..{self.proprio_dim - 1}, got "
                             f"{list(self.relative_dims)}")
        if self.expert.depth != self.llm.depth:
            raise ValueError(f"expert depth {self.expert.depth} must equal the llm depth {self.llm.depth}")
        shared = ("num_heads", "num_kv_heads", "head_dim")
        if any(getattr(self.expert, k) != getattr(self.llm, k) for k in shared):
            raise ValueError(
                f"joint attention needs the same heads in both towers: llm {[getattr(self.llm, k) for k in shared]}"
                f" vs expert {[getattr(self.expert, k) for k in shared]} ({'/'.join(shared)})"
            )
        _positive(self, ("horizon", "action_dim", "proprio_dim", "num_sampling_steps"))
        if self.duration_scale <= 0:
            raise ValueError(f"duration_scale must be positive, got {self.duration_scale}")


@dataclass(frozen=True)
class VLMConfig:
    """WaypointVLM: PaliGemma emitting ``(<wp> p_1..p_W <dur> d)`` blocks; ``proprio_dim`` is the robot's real P."""

    vision: VisionSpec
    llm: GemmaSpec
    proprio_dim: int  # robot proprio dims per waypoint (LIBERO 8, R1 Lite 14); fixes the block length P + 3
    kind: Literal["waypoint_vlm"] = "waypoint_vlm"
    vocab_size: int = PALIGEMMA_VOCAB_SIZE
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS
    dtype: DType = "bfloat16"
    num_waypoints: int = 7  # default M for plan()
    gradient_checkpointing: bool = False
    # proprio dims with a token per waypoint block; empty: all proprio_dim (the original layout). Leaving out a dim
    # the robot couples to another (LIBERO's mirrored right finger) gives one token per gripper.
    waypoint_dims: tuple[int, ...] = ()
    # training loss only: the target of a proprio-bin token is a Gaussian over the neighbouring bins with this
    # standard deviation in bins (0: the one-hot target, plain CE). Bins are ordered, so a near miss should cost
    # less than a far one; one-hot CE gives no such signal, and a small planner learns where things are slowly.
    bin_label_sigma: float = 0.0

    def __post_init__(self):
        _check_common(self)
        _positive(self, ("proprio_dim", "num_waypoints"))
        if not math.isfinite(self.bin_label_sigma) or self.bin_label_sigma < 0:
            raise ValueError(f"bin_label_sigma must be a finite number >= 0 (0: plain CE), got {self.bin_label_sigma}")
        dims = list(self.waypoint_dims)
        if dims and (dims != sorted(set(dims)) or not 0 <= dims[0] <= dims[-1] < self.proprio_dim):
            raise ValueError(f"waypoint_dims must be increasing dims of 0..{self.proprio_dim - 1}, got {dims}")

    @property
    def waypoint_width(self) -> int:
        """Proprio tokens per waypoint block (W)."""
        return len(self.waypoint_dims) or self.proprio_dim

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout(self.vocab_size)


ModelConfig = AEConfig | VLMConfig
CONFIG_CLASSES = {"waypoint_ae": AEConfig, "waypoint_vlm": VLMConfig}


def _positive(cfg, names) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")


def _check_common(cfg) -> None:
    TokenLayout(cfg.vocab_size)  # raises when the vocabulary cannot hold the waypoint tokens
    if not cfg.image_keys or len(set(cfg.image_keys)) != len(cfg.image_keys):
        raise ValueError(f"image_keys must be non-empty and unique, got {list(cfg.image_keys)}")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


TINY_VISION = VisionSpec(width=32, depth=1, mlp_dim=64, num_heads=2, patch_size=56)  # 16 tokens per view
TINY_LLM = GemmaSpec(width=64, depth=2, mlp_dim=128, num_heads=2, num_kv_heads=1, head_dim=16)
TINY_EXPERT = GemmaSpec(width=32, depth=2, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=16)
TINY_VOCAB = 1024  # waypoint layout ids 604..895 sit above a 400-id SentencePiece vocabulary

SO400M_14 = VisionSpec(width=1152, depth=27, mlp_dim=4304, num_heads=16, patch_size=14)
GEMMA_2B = GemmaSpec(width=2048, depth=18, mlp_dim=16384, num_heads=8, num_kv_heads=1, head_dim=256)
GEMMA_300M = GemmaSpec(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256)

@dataclasses.dataclass(frozen=True)
class Preset:
    """The towers and settings a model size shares between the AE and the planner."""

    vision: VisionSpec
    llm: GemmaSpec
    expert: GemmaSpec  # the AE's action expert
    settings: dict  # further config fields, e.g. vocabulary size and dtype


PRESETS: dict[str, Preset] = {
    "tiny": Preset(TINY_VISION, TINY_LLM, TINY_EXPERT,
                   {"vocab_size": TINY_VOCAB, "dtype": "float32", "image_keys": DEFAULT_IMAGE_KEYS[:2]}),
    "pi05": Preset(SO400M_14, GEMMA_2B, GEMMA_300M, {}),
}


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {list(PRESETS)}")
    return PRESETS[name]


def ae_config(preset: str = "pi05", **overrides) -> AEConfig:
    """Action Expert config for ``preset`` with field ``overrides``."""
    p = _preset(preset)
    return dataclasses.replace(AEConfig(p.vision, p.llm, p.expert, **p.settings), **overrides)


def vlm_config(preset: str = "pi05", proprio_dim: int = 8, **overrides) -> VLMConfig:
    """Planner config for ``preset``; ``proprio_dim`` is the robot's real proprio width (LIBERO 8, R1 Lite 14)."""
    p = _preset(preset)
    return dataclasses.replace(VLMConfig(p.vision, p.llm, proprio_dim, **p.settings), **overrides)


__all__ = [
    "AEConfig", "VLMConfig", "VisionSpec", "GemmaSpec", "ModelConfig", "CONFIG_CLASSES", "PRESETS",
    "ae_config", "vlm_config", "torch_dtype", "DEFAULT_IMAGE_KEYS",
]
