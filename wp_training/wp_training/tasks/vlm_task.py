"""``wp-train --mode vlm``: the Waypoint VLM planner (PaliGemma, CE on waypoint tokens) as a TrainTask.

YAML ``model:`` section (:class:`VLMModelSection`): a ``wp_policy.models`` preset plus overrides, with
``proprio_dim`` taken from ``data.robot`` when unset (it fixes the waypoint block length); ``data:`` section
(:class:`VLMTaskData`): :class:`~wp_training.datasets.vlm_dataset.VLMDataConfig` plus the robot, the tokenizer and
``max_token_len``. ``model.vision_cache`` works as for the AE (:mod:`wp_training.engine.feature_cache`).
``model.proprio_tokens: uncoupled`` selects the one-token-per-gripper waypoint layout (saved in the exported
model's ``waypoint_dims``, which the deployment tokenizer follows).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from wp_policy.config_io import ConfigError
from wp_policy.models import VLMConfig, load_pi05_base, save_pretrained, vlm_config
from wp_policy.transforms import collate
from wp_training.datasets.vlm_dataset import VLMDataConfig, WaypointVLMDataset
from wp_training.engine import feature_cache
from wp_training.tasks.interface import DataShard
from wp_training.tasks.paligemma_base import (
    LLM_LORA_TARGETS,
    PALIGEMMA_GROUPS,
    ModelTrainTask,
    build_model_config,
    build_task_model,
    check_model_images,
    make_tokenizer,
    override_spec,
    robot_of,
    shard_stream,
)


@dataclass(frozen=True)
class VLMModelSection:
    """The ``model:`` section: ``vlm_config(preset, proprio_dim, ...)`` with overrides (0 / empty: the preset's)."""

    preset: str = "pi05"  # a key of wp_policy.models.PRESETS (tiny, pi05)
    proprio_dim: int = 0  # 0: the robot's proprio dim (data.robot)
    num_waypoints: int = 7
    image_keys: tuple[str, ...] = ()
    dtype: Literal["", "float32", "bfloat16"] = ""
    vocab_size: int = 0
    vision: dict[str, int] = field(default_factory=dict)  # VisionSpec fields, e.g. {width: 64, depth: 2}
    llm: dict[str, int] = field(default_factory=dict)  # GemmaSpec fields
    vision_cache: str = ""  # directory written by `wp-data cache-features` (needs freeze: [vision])
    # all: one token per proprio dim (the original layout, e.g. both LIBERO fingers); uncoupled: no token for dims
    # the robot config couples to another (proprio.coupled), i.e. one token per gripper, so fingers cannot disagree
    proprio_tokens: Literal["all", "uncoupled"] = "all"
    waypoint_dims: tuple[int, ...] = ()  # filled from the robot by proprio_tokens: uncoupled; leave empty
    # > 0: a proprio-bin target is a Gaussian over neighbouring bins with this std in bins (0: plain one-hot CE)
    bin_label_sigma: float = 0.0

    def model_config(self) -> VLMConfig:
        base = build_model_config(vlm_config, self.preset, {})
        fields = {
            "vision": override_spec(base.vision, self.vision, "model.vision"),
            "llm": override_spec(base.llm, self.llm, "model.llm"),
            "num_waypoints": self.num_waypoints,
            "waypoint_dims": tuple(self.waypoint_dims),
            "bin_label_sigma": float(self.bin_label_sigma),
        }
        for name in ("image_keys", "dtype", "vocab_size"):
            if getattr(self, name):
                fields[name] = getattr(self, name)
        return build_model_config(lambda p, **f: vlm_config(p, self.proprio_dim or 8, **f), self.preset, fields)

    def __post_init__(self):
        if self.proprio_dim < 0:
            raise ValueError(f"proprio_dim must be >= 0 (0: the robot's), got {self.proprio_dim}")
        self.model_config()


@dataclass(frozen=True)
class VLMTaskData(VLMDataConfig):
    """The ``data:`` section: VLMDataConfig (paths, stride, stream) + robot, tokenizer, token sequence length."""

    robot: str = "libero"
    tokenizer_path: str = ""
    max_token_len: int = 256  # TOKENS length: prompt + M waypoint blocks + "|" EOS; longer samples are errors

    def __post_init__(self):
        super().__post_init__()
        if not self.tokenizer_path:
            raise ValueError("tokenizer_path must name the SentencePiece model")
        if self.max_token_len < 8:
            raise ValueError(f"max_token_len must be >= 8, got {self.max_token_len}")


def build_dataset(model_cfg: VLMModelSection, data_cfg: VLMTaskData, shard: DataShard) -> WaypointVLMDataset:
    mc = model_cfg.model_config()
    robot = robot_of(data_cfg)
    images = check_model_images(data_cfg, mc.image_keys, mc.vision.image_size, robot, "vlm")
    cfg = dataclasses.replace(data_cfg, stream=shard_stream(data_cfg.stream, shard), **images)
    tokenizer = make_tokenizer(data_cfg.tokenizer_path, mc.vocab_size, robot, mc.num_waypoints,
                               data_cfg.max_token_len, mc.waypoint_dims)
    features = feature_cache.open_for_dataset(model_cfg.vision_cache, cfg.rlds_dir, mc.image_keys)
    return WaypointVLMDataset(cfg, robot, tokenizer, rank=shard.rank, world_size=shard.world_size,
                              features=features)


def resolve(model_cfg: VLMModelSection, data_cfg: VLMTaskData, source: str):
    """Fill ``proprio_dim`` and ``waypoint_dims`` from the robot (or check them), and check the cameras."""
    robot = robot_of(data_cfg, source)
    if model_cfg.proprio_dim == 0:
        model_cfg = dataclasses.replace(model_cfg, proprio_dim=robot.proprio.dim)
    elif model_cfg.proprio_dim != robot.proprio.dim:
        raise ConfigError(f"{source}: model.proprio_dim {model_cfg.proprio_dim} != robot {robot.robot_type}'s "
                          f"proprio dim {robot.proprio.dim}")
    dims = robot.proprio.free_dims if model_cfg.proprio_tokens == "uncoupled" else ()
    if model_cfg.proprio_tokens == "uncoupled" and not robot.proprio.coupled:
        raise ConfigError(f"{source}: model.proprio_tokens: uncoupled, but robot {robot.robot_type} declares no "
                          "coupled proprio dims (proprio.coupled in its robot config)")
    if model_cfg.waypoint_dims and tuple(model_cfg.waypoint_dims) != dims:
        raise ConfigError(f"{source}: model.waypoint_dims {list(model_cfg.waypoint_dims)} != {list(dims)} (what "
                          f"model.proprio_tokens: {model_cfg.proprio_tokens} gives); leave waypoint_dims empty")
    model_cfg = dataclasses.replace(model_cfg, waypoint_dims=dims)
    mc = model_cfg.model_config()
    check_model_images(data_cfg, mc.image_keys, mc.vision.image_size, robot, source, model_cfg.vision_cache)
    return model_cfg, data_cfg


def make_task() -> ModelTrainTask:
    return ModelTrainTask(
        name="vlm",
        model_config_cls=VLMModelSection,
        data_config_cls=VLMTaskData,
        build_model=build_task_model,
        build_dataset=build_dataset,
        collate=collate,
        load_pretrained=load_pi05_base,
        save_model=save_pretrained,
        module_groups=PALIGEMMA_GROUPS,
        lora_targets=LLM_LORA_TARGETS,
        # fsdp_units empty: the VLM calls transformers' PaliGemma as a whole, so every SigLIP / Gemma layer
        # (the nn.ModuleList elements) is a unit whose forward() runs
        resolve=resolve,
    )
