"""``wp-train --mode ae``: the Waypoint Action Expert (flow matching between two waypoints) as a TrainTask.

YAML ``model:`` section (:class:`AEModelSection`): a ``wp_policy.models`` preset plus overrides; ``data:``
section (:class:`AETaskData`): :class:`~wp_training.datasets.ae_dataset.AEDataConfig` plus the robot and the tokenizer.
Image keys and size come from the model (the dataset follows them). With ``model.vision_cache: <dir>`` written by
``wp-data cache-features`` the dataset reads SigLIP features instead of images and the model skips its (frozen)
vision tower (:mod:`wp_training.engine.feature_cache`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from wp_policy.config_io import ConfigError
from wp_policy.models import AEConfig, ae_config, load_pi05_base, save_pretrained
from wp_policy.transforms import collate
from wp_training.datasets.ae_dataset import AEDataConfig, WaypointAEDataset
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

AE_HEADS = ("proprio_encoder.*", "action_in_proj.*", "action_out_proj.*", "time_mlp_in.*", "time_mlp_out.*")
AE_GROUPS = {**PALIGEMMA_GROUPS, "expert": ("expert.*",), "heads": AE_HEADS}
AE_LORA_TARGETS = LLM_LORA_TARGETS + ("expert.layers.*.self_attn.*_proj", "expert.layers.*.mlp.*_proj")
# Modules whose forward() the AE calls (the joint-attention passes call a layer's norms/projections/MLP directly,
# never GemmaDecoderLayer.forward), so FSDP gathers each unit's weights where they are used.
AE_FSDP_UNITS = ("SiglipEncoderLayer", "GemmaMLP", "Linear")


@dataclass(frozen=True)
class AEModelSection:
    """The ``model:`` section: ``ae_config(preset, ...)`` with the overrides below (0 / empty: the preset's)."""

    preset: str = "pi05"  # a key of wp_policy.models.PRESETS (tiny, pi05)
    image_keys: tuple[str, ...] = ()  # camera model_keys in prefix order
    dtype: Literal["", "float32", "bfloat16"] = ""  # parameter dtype at construction (pi05: bfloat16)
    vocab_size: int = 0
    vision: dict[str, int] = field(default_factory=dict)  # VisionSpec fields, e.g. {width: 64, depth: 2}
    llm: dict[str, int] = field(default_factory=dict)  # GemmaSpec fields of the PaliGemma LM
    expert: dict[str, int] = field(default_factory=dict)  # GemmaSpec fields of the action expert
    num_sampling_steps: int = 0
    relative_dims: tuple[int, ...] = ()  # proprio dims read as end - start (AEConfig.relative_dims)
    vision_cache: str = ""  # directory written by `wp-data cache-features` (needs freeze: [vision])

    def model_config(self) -> AEConfig:
        base = build_model_config(ae_config, self.preset, {})
        fields = {
            "vision": override_spec(base.vision, self.vision, "model.vision"),
            "llm": override_spec(base.llm, self.llm, "model.llm"),
            "expert": override_spec(base.expert, self.expert, "model.expert"),
        }
        for name in ("image_keys", "dtype", "vocab_size", "num_sampling_steps", "relative_dims"):
            if getattr(self, name):
                fields[name] = getattr(self, name)
        return build_model_config(ae_config, self.preset, fields)

    def __post_init__(self):
        self.model_config()  # every size/override error surfaces while parsing the YAML


@dataclass(frozen=True)
class AETaskData(AEDataConfig):
    """The ``data:`` section: AEDataConfig (paths, max_duration, prompt_len, stream) + robot + tokenizer."""

    robot: str = "libero"  # robot config name or YAML path
    tokenizer_path: str = ""  # SentencePiece model (PaliGemma's in production)

    def __post_init__(self):
        super().__post_init__()
        if not self.tokenizer_path:
            raise ValueError("tokenizer_path must name the SentencePiece model")


def build_dataset(model_cfg: AEModelSection, data_cfg: AETaskData, shard: DataShard) -> WaypointAEDataset:
    mc = model_cfg.model_config()
    robot = robot_of(data_cfg)
    images = check_model_images(data_cfg, mc.image_keys, mc.vision.image_size, robot, "ae")
    cfg = dataclasses.replace(data_cfg, stream=shard_stream(data_cfg.stream, shard), relative_dims=mc.relative_dims,
                              **images)
    tokenizer = make_tokenizer(data_cfg.tokenizer_path, mc.vocab_size, robot)
    features = feature_cache.open_for_dataset(model_cfg.vision_cache, cfg.rlds_dir, mc.image_keys)
    return WaypointAEDataset(cfg, robot, tokenizer, rank=shard.rank, world_size=shard.world_size, features=features)


def resolve(model_cfg: AEModelSection, data_cfg: AETaskData, source: str):
    """Model vs robot checks while parsing (action/proprio widths, cameras)."""
    mc = model_cfg.model_config()
    robot = robot_of(data_cfg, source)
    if robot.action.dim > mc.action_dim or robot.proprio.dim > mc.proprio_dim:
        raise ConfigError(f"{source}: robot {robot.robot_type} has action/proprio dims {robot.action.dim}/"
                          f"{robot.proprio.dim}, more than the model's {mc.action_dim}/{mc.proprio_dim}")
    bad = [d for d in mc.relative_dims if d >= robot.proprio.dim]
    if bad:
        raise ConfigError(f"{source}: model.relative_dims {bad} are not proprio dims of robot {robot.robot_type} "
                          f"(0..{robot.proprio.dim - 1})")
    if data_cfg.relative_dims and tuple(data_cfg.relative_dims) != tuple(mc.relative_dims):
        raise ConfigError(f"{source}: data.relative_dims {list(data_cfg.relative_dims)} is filled in from "
                          f"model.relative_dims {list(mc.relative_dims)}; set it under model only")
    check_model_images(data_cfg, mc.image_keys, mc.vision.image_size, robot, source, model_cfg.vision_cache)
    return model_cfg, data_cfg


def make_task() -> ModelTrainTask:
    return ModelTrainTask(
        name="ae",
        model_config_cls=AEModelSection,
        data_config_cls=AETaskData,
        build_model=build_task_model,
        build_dataset=build_dataset,
        collate=collate,
        load_pretrained=load_pi05_base,
        save_model=save_pretrained,
        module_groups=AE_GROUPS,
        lora_targets=AE_LORA_TARGETS,
        lora_also_train=("heads",),  # new projections with no counterpart in a LoRA-frozen base
        fsdp_units=AE_FSDP_UNITS,
        resolve=resolve,
    )
